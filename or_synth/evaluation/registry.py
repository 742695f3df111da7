"""What a metric of the evaluation suite is: a :class:`Metric` record over one ``score_<metric>(run)`` function,
saying what the metric needs (:class:`Need`) and which cards it writes.

The suite (:func:`or_synth.evaluation.suite.evaluate`) reads only these records: it provides every input the
chosen metrics need and checks all of them before any feature is extracted
(:func:`or_synth.evaluation.context.prepare`), then calls each ``score`` in registry order; a score function
reads the shared :class:`~or_synth.evaluation.context.Evaluation` and puts its cards and details into it. The
registry itself (:data:`or_synth.evaluation.metrics.METRICS`) lists the records of the metric modules in
``or_synth/evaluation/metrics/``: a new metric is one function and one record there, and one line in the
registry; no other metric changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from or_synth.evaluation.context import Evaluation


class Need(StrEnum):
    """An input the evaluation context provides (checked before any work) for the metrics that name it."""

    GENERATED = "generated"  # the images samples= lists (+ dataset_root= and the reference split)
    CLASSIFIER = "classifier"  # the pinned relation classifier (classifier=), at the generated images' size
    CLASSIFIER_PASS = "classifier_pass"  # its outputs on the generated images: one pass every metric shares
    INCEPTION = "inception"  # the standard FID Inception feature space (inception_weights=)
    PAIRS = "pairs"  # the generated images' (subject, object) boxes, or why there are none
    REAL_COUNTERPARTS = "real_counterparts"  # the real view of every generated one (the ceiling's input)
    HELD_OUT_GRAPHS = "held_out_graphs"  # refused on the generator's training graphs (allow_training_graphs=)
    EDITS = "edits"  # edits=DIR: the outputs of python -m or_synth.edit


@dataclass(frozen=True)
class Metric:
    """One metric: how it is scored, what it needs and which cards it writes.

    Attributes:
        name: what ``metrics=[...]`` calls it.
        score: ``score_<name>(run)``: reads the :class:`~or_synth.evaluation.context.Evaluation`, writes
            ``run.cards[card]`` for its cards and ``run.details[name]``.
        cards: the cards it writes (a card may be left out where its metric says why, in the details).
        needs: the inputs the context must provide.
        summary: one line: what the number says.
        requires: metrics that must be scored before it (added to the run when it is asked for).
        scored_with: a metric beside which this one is scored too, where its inputs exist (pair consistency
            beside graph consistency wherever boxes exist); asked for by name, missing inputs are an error.
        check: metric-specific checks of the inputs, run with the others before any work; what it returns is
            kept in ``run.inputs[name]`` for ``score``.
    """

    name: str
    score: Callable[[Evaluation], None]
    cards: tuple[str, ...]
    needs: frozenset[Need]
    summary: str
    requires: tuple[str, ...] = ()
    scored_with: str | None = None
    check: Callable[[Evaluation], Any] | None = None


def registry(*metrics: Metric) -> dict[str, Metric]:
    """Metrics by name, in the order given (the order they are scored and their cards listed in)."""
    by_name: dict[str, Metric] = {}
    for metric in metrics:
        if metric.name in by_name:
            raise ValueError(f"two metrics are called {metric.name!r}")
        by_name[metric.name] = metric
    order = list(by_name)
    for metric in metrics:
        unknown = [m for m in (*metric.requires, metric.scored_with) if m is not None and m not in by_name]
        if unknown:
            raise ValueError(f"metric {metric.name!r} refers to unknown metric {unknown[0]!r}")
        later = [m for m in metric.requires if order.index(m) > order.index(metric.name)]
        if later:
            raise ValueError(f"metric {metric.name!r} requires {later[0]!r}, which is listed after it")
    return by_name
