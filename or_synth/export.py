"""Training-set export: ``python -m or_synth.export pipeline=DIR_OR_NAME graphs=train out=DIR [key=value ...]``.

Scene graphs into a complete synthetic dataset in 4D-OR's on-disk layout (read by ``FourDORDataset``, ``python -m
or_synth.data.summary`` and the official 4D-OR loader unchanged), with ``manifest.jsonl`` and ``dataset_card.md``.
Resumable; ``accelerate launch -m or_synth.export ...`` shards the scans over processes. ``python -m
or_synth.generate`` is the same command under its old name. The options are in ``configs/export.yaml``; the job is
:mod:`or_synth.sampling.export`.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from or_synth import cli
from or_synth.sampling import ExportRefused, export

__all__ = ["ExportRefused", "export", "load_config", "main"]


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The export config with command-line style overrides."""
    return cli.load_config("export", overrides)


@cli.command("export")
def main(cfg: DictConfig) -> None:
    result = export(cfg)
    if result["process_index"] == 0:  # under accelerate, the main process reports
        scans, cameras = result["scans"], len(result["cameras"])
        print(
            f"export: {scans} scans x {cameras} cameras in {result['out']} ({result['generated']} scans drawn now)"
        )


if __name__ == "__main__":
    main()
