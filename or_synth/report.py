"""Report entry point: the page a supervisor opens at the end of a run.

    python -m or_synth.report run=DIR [out=reports name=NAME merge=[DIR2] edits=DIR training_runs=[RUN]]
    python -m or_synth.report compare A B [out=reports name=NAME]

``run=DIR`` takes an evaluation output, a samples folder or a training run and writes ``out/<name>/index.html``
(self-contained, opens offline) with metrics, cards, figures, configs, environment and hashes beside it
(:func:`or_synth.reports.build_report`). ``compare A B`` puts two evaluations (or report folders) side by side
and refuses, with the reason, every number whose cards differ in what makes them comparable
(:func:`or_synth.reports.build_comparison`). Hydra takes no positional arguments: ``compare A B`` becomes
``compare=[A,B]`` before Hydra parses. A thin wrapper (:mod:`or_synth.cli`) around :func:`report`, which tests
call with a composed config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from or_synth import cli
from or_synth.cli import command
from or_synth.reports import ReportError, build_comparison, build_report


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    return cli.load_config("report", overrides)


def report(cfg: DictConfig) -> Path:
    """The bundle of ``cfg.run``, or the comparison of ``cfg.compare``; returns the folder holding index.html."""
    if cfg.compare:
        if len(cfg.compare) != 2:
            raise ReportError(f"compare takes two folders, got {len(cfg.compare)}: {list(cfg.compare)}")
        return build_comparison(cfg)
    return build_report(cfg)


def quoted(path: str) -> str:
    """A path as a Hydra quoted string, so any character in it survives the override grammar."""
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


def positional_compare(argv: list[str]) -> list[str]:
    """``compare A B rest...`` -> ``compare=['A','B'] rest...`` (Hydra parses only key=value)."""
    if len(argv) < 2 or argv[1] != "compare":
        return argv
    folders = [a for a in argv[2:4] if "=" not in a]
    if len(folders) != 2:
        cli.fail(
            f"compare takes two folders, got {len(folders)}: python -m or_synth.report compare A B [out=DIR name=NAME]"
        )
    return [argv[0], f"compare=[{quoted(folders[0])},{quoted(folders[1])}]", *argv[4:]]


@command("report", argv=positional_compare)
def main(cfg: DictConfig) -> None:
    folder = report(cfg)
    print(f"report: {folder / 'index.html'}")


if __name__ == "__main__":
    main()
