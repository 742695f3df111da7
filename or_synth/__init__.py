"""or_synth: operating-room scene synthesis from 4D-OR scene graphs, and its evaluation."""

__version__ = "0.1.0"
