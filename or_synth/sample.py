"""Sampling entry point: ``python -m or_synth.sample pipeline=DIR_OR_NAME graphs=FILE_OR_SPLIT [key=value ...]``.

Images of 4D-OR scene graphs from a saved pipeline, in ``out/images/`` with one line per image in
``out/manifest.jsonl``; a rerun resumes. ``layout=auto`` (the default) gives a pipeline with a layout input the
renderer's layout of each graph; ``none``, ``masks``, ``render`` and ``predicted`` choose (the manifest's
``layout`` says which). The options are in ``configs/sample.yaml``; the job is :mod:`or_synth.sampling.plan`.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from or_synth import cli
from or_synth.sampling import SampleRefused, prepare, run_plan, sample

__all__ = ["SampleRefused", "load_config", "main", "sample"]


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The sample config with command-line style overrides, e.g. ``["pipeline=/tmp/p", "steps=2"]``."""
    return cli.load_config("sample", overrides)


@cli.command("sample")
def main(cfg: DictConfig) -> None:
    result = run_plan(prepare(cfg))
    done = f"{result['generated']} new image(s), {result['skipped']} already done"
    print(f"sample: {done}; {result['images']} image(s) listed in {result['manifest']}")


if __name__ == "__main__":
    main()
