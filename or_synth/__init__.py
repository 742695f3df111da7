"""or_synth: operating-room scene synthesis from 4D-OR scene graphs, and its evaluation."""

import warnings

# torch_geometric calls torch.jit.script at import time, which torch >= 2.10 deprecates with a FutureWarning on
# every command's start; it is not ours to fix and says nothing to a user of or_synth.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"
