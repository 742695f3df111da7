"""The evaluation suite as one call: :func:`evaluate` scores the images a ``manifest.jsonl`` lists with the
metrics ``cfg.metrics`` names (:data:`~or_synth.evaluation.metrics.METRICS`) and writes ``out/metrics.json``
plus one card per number (``out/cards/``). ``python -m or_synth.evaluate`` is a thin wrapper around it.

1. :func:`~or_synth.evaluation.context.prepare`: every input the metrics need, checked before any work;
2. the relation classifier's one pass over the generated images, when a metric reads it;
3. each metric in registry order (timed);
4. :func:`~or_synth.evaluation.cards.write_document`: ``metrics.json`` and the cards.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from or_synth.data.io import atomic_path
from or_synth.evaluation.cards import write_document
from or_synth.evaluation.context import prepare
from or_synth.evaluation.metrics import METRICS
from or_synth.evaluation.registry import Metric, Need


def evaluate(cfg: DictConfig, metrics: Mapping[str, Metric] = METRICS) -> dict:
    """Run the metrics ``cfg.metrics`` on ``cfg.samples`` (``configs/evaluate.yaml``); returns what
    ``metrics.json`` holds: ``metrics`` (each card's value), ``cards``, ``details``, ``warnings``,
    ``timings_seconds`` and the ``config``.

    Args:
        metrics: the registry ``cfg.metrics`` names metrics of (an extended one, to try a new metric).

    Raises:
        EvaluationError, ImageSetError, FileNotFoundError, ValueError: a request that cannot be scored as asked,
            before anything is written.
    """
    started = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    run = prepare(cfg, metrics)
    if run.uses(Need.CLASSIFIER_PASS):
        run.classify_generated()
    for metric in run.metrics:
        with run.timed(metric.name):
            metric.score(run)
    run.timings["total"] = round(time.perf_counter() - started, 2)
    config = OmegaConf.to_container(cfg, resolve=True)
    document = write_document(run.out, run.cards, run.details, run.timings, config)
    for name, arrays in run.arrays.items():
        write_arrays(Path(run.out) / f"per_scan_{name}.npz", arrays)
    return document


def write_arrays(path: Path, arrays: dict) -> None:
    """The per-scan arrays of one metric as a compressed ``.npz``, atomically (a benchmark pairs evaluations
    on them: :func:`or_synth.evaluation.intervals.paired_bootstrap`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
