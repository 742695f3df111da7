"""Relation sensitivity: on ``edits=DIR`` (``python -m or_synth.edit`` outputs), does the regenerated image
change the way the graph edit says? (:func:`or_synth.evaluation.sensitivity.relation_sensitivity`)"""

from __future__ import annotations

from or_synth.evaluation.cards import make_card
from or_synth.evaluation.context import Evaluation
from or_synth.evaluation.image_sets import PREPROCESSING
from or_synth.evaluation.registry import Metric, Need
from or_synth.evaluation.sensitivity import relation_sensitivity

MIN_EDITS = 20  # fewer edits than this: the card calls the estimate rough


def score_relation_sensitivity(run: Evaluation) -> None:
    report = relation_sensitivity(
        run.classifier, run.cfg.edits, resamples=int(run.cfg.bootstrap_resamples), seed=run.seed
    )
    n_edits = len(report["edits"])
    run.cards["relation_sensitivity"] = make_card(
        "relation_sensitivity (changed labels moving the way the edit says; chance 0.5)",
        {key: report[key] for key in ("after", "full", "null", "after_minus_null", "by_edit_kind")},
        implementation="or_synth.evaluation.sensitivity.relation_sensitivity",
        environment=run.environment,
        edits=str(run.cfg.edits),
        n_edits=n_edits,
        classifier_hash=run.classifier_digest,
        weights_hash=run.classifier_digest,
        preprocessing=PREPROCESSING,
        warnings=[] if n_edits >= MIN_EDITS else [f"only {n_edits} edit(s): a rough estimate"],
    )
    run.details["relation_sensitivity"] = report


RELATION_SENSITIVITY = Metric(
    "relation_sensitivity",
    score_relation_sensitivity,
    cards=("relation_sensitivity",),
    needs=frozenset({Need.CLASSIFIER, Need.EDITS}),
    summary="on graph edits, whether the regenerated images' relations move the way the edit says",
)
