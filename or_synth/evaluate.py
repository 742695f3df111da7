"""Evaluation entry point: ``python -m or_synth.evaluate samples=MANIFEST metrics=[...] classifier=DIR out=DIR``.

Scores the images listed in a ``manifest.jsonl`` of ``or_synth.sample`` / ``or_synth.generate`` against the real
images of ``dataset_root`` and writes ``out/metrics.json`` plus one metric card per number (``out/cards/``). The
metrics (``configs/evaluate.yaml``; :data:`or_synth.evaluation.METRICS`): ``fid``, ``kid``, ``classifier_fd``,
``graph_consistency``, ``pair_consistency``, ``memorisation``, ``relation_sensitivity`` (on ``edits=DIR``) and
``action_recognition``. Every input is checked before the first feature is extracted; reference features are
cached under ``cache_dir``. A thin wrapper: the suite is :func:`or_synth.evaluation.evaluate`; user errors end
with one line and exit 2 (:mod:`or_synth.cli`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from or_synth.cli import command
from or_synth.evaluation import EvaluationError, evaluate

__all__ = ["EvaluationError", "evaluate", "main"]


@command("evaluate")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the first-use render says what it does
    document = evaluate(cfg)
    for name, value in document["metrics"].items():
        print(f"{name}: {value}")
    for warning in document["warnings"]:
        print(f"warning: {warning}")
    print(f"metrics: {Path(cfg.out) / 'metrics.json'}  cards: {Path(cfg.out) / 'cards'}")


if __name__ == "__main__":
    main()
