"""Graph consistency: does each generated image show its graph? The relation classifier's predicate macro-F1
against the conditioning graphs, beside the ceiling (real images of the same graphs and cameras), the floor
(graphs deranged over scans) and chance; and the same per (subject, object) pair where boxes exist.

The scores are :func:`or_synth.evaluation.consistency.consistency_report` and ``pair_consistency_report``.
"""

from __future__ import annotations

from or_synth.evaluation.cards import classifier_quality, consistency_card, weak_predicate_warnings
from or_synth.evaluation.consistency import consistency_report, pair_consistency_report
from or_synth.evaluation.context import Evaluation, EvaluationError
from or_synth.evaluation.registry import Metric, Need

TRAINING_GRAPHS_NOTE = (
    "scored on TRAINING-split graphs the generator was trained on (allow_training_graphs=true)"
)


def scored_fields(run: Evaluation) -> dict:
    """The fields of a consistency card: the common ones, the classifier, the split and N real."""
    return {
        **run.common,
        "weights_hash": run.classifier_digest,
        "split": run.split,
        "n_real": len(run.ceiling().views),
        "training_graphs": run.on_training_graphs,
    }


def training_note(run: Evaluation) -> list[str]:
    return [TRAINING_GRAPHS_NOTE] if run.on_training_graphs else []


def score_graph_consistency(run: Evaluation) -> None:
    ceiling = run.ceiling()
    arrays: dict = {}
    report = consistency_report(
        run.classifier,
        run.generated,
        ceiling.views,
        seed=run.seed,
        derangements=int(run.cfg.floor_derangements),
        resamples=int(run.cfg.bootstrap_resamples),
        generated_predictions=run.generated_predictions,
        real_predictions=ceiling.predictions,
        arrays=arrays,
    )
    run.arrays["graph_consistency"] = arrays
    run.cards["graph_consistency"] = consistency_card(
        "graph_consistency (predicate macro-F1; model / ceiling / floor)",
        report,
        ("scan", "image"),
        implementation="or_synth.evaluation.consistency.consistency_report",
        classifier_quality=classifier_quality(run.cfg.classifier),
        warnings=training_note(run) + weak_predicate_warnings(report),
        **scored_fields(run),
    )
    run.details["graph_consistency"] = report


def check_pairs(run: Evaluation) -> None:
    """Asked for by name, pair consistency without boxes is an error; beside graph consistency, a note."""
    if run.pairs is None and "pair_consistency" not in run.optional:
        raise EvaluationError(f"pair_consistency cannot be measured: {run.no_pairs}")


def score_pair_consistency(run: Evaluation) -> None:
    if run.pairs is None:  # scored beside graph consistency where boxes exist: say why not here
        run.details["graph_consistency"]["pairs"] = {"measured": False, "why": run.no_pairs}
        return
    ceiling = run.ceiling()
    arrays: dict = {}
    report = pair_consistency_report(
        run.classifier,
        run.generated,
        run.pairs,
        ceiling.views,
        ceiling.pairs,
        seed=run.seed,
        derangements=int(run.cfg.floor_derangements),
        resamples=int(run.cfg.bootstrap_resamples),
        batch_size=run.batch_size,
        generated_probabilities=run.generated_predictions["pairs"],
        real_probabilities=ceiling.predictions["pairs"],
        arrays=arrays,
    )
    run.arrays["pair_consistency"] = arrays
    run.cards["pair_consistency"] = consistency_card(
        "pair_consistency (pair-level predicate macro-F1; model / ceiling / floor / labels only)",
        report,
        ("scan", "view"),
        implementation="or_synth.evaluation.consistency.pair_consistency_report",
        n_pairs=report["n_pairs"],
        n_real_pairs=report.get("n_real_pairs"),
        boxes=report["box_source"],
        classifier_quality=classifier_quality(run.cfg.classifier).get("validation", {}).get("pairs", {}),
        warnings=training_note(run) + weak_predicate_warnings(report, what="pairs"),
        **scored_fields(run),
    )
    run.details["pair_consistency"] = report


_CONSISTENCY_NEEDS = {
    Need.GENERATED,
    Need.CLASSIFIER,
    Need.CLASSIFIER_PASS,
    Need.REAL_COUNTERPARTS,
    Need.HELD_OUT_GRAPHS,
}
GRAPH_CONSISTENCY = Metric(
    "graph_consistency",
    score_graph_consistency,
    cards=("graph_consistency",),
    needs=frozenset(_CONSISTENCY_NEEDS),
    summary="relation-classifier predicate F1 against the conditioning graphs, beside ceiling, floor and chance; "
    "per predicate, per camera, per scan",
)
PAIR_CONSISTENCY = Metric(
    "pair_consistency",
    score_pair_consistency,
    cards=("pair_consistency",),
    needs=frozenset({*_CONSISTENCY_NEEDS, Need.PAIRS}),
    summary="the same per (subject, object) pair, in the boxes of the layout each image was drawn from",
    requires=("graph_consistency",),
    scored_with="graph_consistency",
    check=check_pairs,
)
