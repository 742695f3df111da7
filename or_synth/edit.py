"""Graph edits entry point: ``python -m or_synth.edit pipeline=DIR_OR_NAME graphs=FILE_OR_SPLIT scan=TAKE/SCAN
edit="..."``.

Applies one edit (grammar: :mod:`or_synth.data.edits`) to one scan's graph and draws, per camera, the before and
the after image with the same seed, only the edited region regenerated when there is a layout. The options are in
``configs/edit.yaml``; the job is :mod:`or_synth.sampling.edits`.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from or_synth import cli
from or_synth.sampling import edit

__all__ = ["edit", "load_config", "main"]


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The edit config with command-line style overrides."""
    return cli.load_config("edit", overrides)


@cli.command("edit")
def main(cfg: DictConfig) -> None:
    result = edit(cfg)
    print(f"edit: before/after pairs in {result['folder']}")


if __name__ == "__main__":
    main()
