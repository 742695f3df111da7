"""Sequence entry point: ``python -m or_synth.sequence pipeline=DIR_OR_NAME graphs=FILE_OR_SPLIT take=N scans=A:B``.

One take's consecutive scene graphs -> a temporally coherent sequence of frames per camera, written in 4D-OR's
layout with an animated video per camera and a contact strip; a rerun resumes from the last complete frame. The
options are in ``configs/sequence.yaml``; the job is :mod:`or_synth.sampling.sequence`.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from or_synth import cli
from or_synth.sampling.sequence import SequenceRefused, sequence

__all__ = ["SequenceRefused", "load_config", "main", "sequence"]


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The sequence config with command-line style overrides."""
    return cli.load_config("sequence", overrides)


@cli.command("sequence")
def main(cfg: DictConfig) -> None:
    result = sequence(cfg)
    shares = ", ".join(f"camera {c} {100 * s:.0f} %" for c, s in result["regenerated_share"].items())
    print(f"sequence: {result['frames']} frames x {len(result['cameras'])} cameras in {result['folder']}")
    print(f"  regenerated per frame (mean share of the view): {shares}")
    print(f"  videos in {result['folder']}/videos/, contact strip {result['folder']}/strip.png")


if __name__ == "__main__":
    main()
