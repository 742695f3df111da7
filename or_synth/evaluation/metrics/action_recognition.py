"""Downstream action recognition: does adding synthetic images (of TRAINING graphs) to real ones help a
main-action classifier on real held-out takes? Seeds, bootstrap intervals, a ratio sweep, low-data regimes,
matched compute and an oracle (:func:`or_synth.evaluation.action_recognition.downstream_study`)."""

from __future__ import annotations

import math
import sys

import torch

from or_synth.data import MAIN_ACTIONS, SPLIT_TAKES, main_action
from or_synth.evaluation.action_recognition import LabelledImages, downstream_study
from or_synth.evaluation.cards import make_card
from or_synth.evaluation.context import Evaluation, EvaluationError
from or_synth.evaluation.image_sets import ImageSet, load_generated, load_real_views
from or_synth.evaluation.registry import Metric, Need


def labelled(images: ImageSet) -> LabelledImages:
    """The images with their scan's main action (the label), scan groups and takes."""
    labels = torch.tensor([MAIN_ACTIONS.index(main_action(r.predicates)) for r in images.records])
    takes = torch.tensor([r.take for r in images.records])
    return LabelledImages(images.images, labels, images.scan_groups(), takes)


def synthetic_training_set(run: Evaluation) -> ImageSet:
    """The synthetic images the study trains on (``action_recognition.samples``, default ``samples``): refused
    when any shows a held-out take, which the downstream model is tested on."""
    settings = run.cfg.action_recognition
    for key in ("steps", "batch_size", "real_train_scans"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EvaluationError(f"action_recognition.{key} must be a whole number >= 1, got {value!r}")
    if not list(settings.seeds) or not all(isinstance(x, int) and x >= 0 for x in settings.seeds):
        raise EvaluationError(
            f"action_recognition.seeds must be a non-empty list of seeds >= 0, got {settings.seeds}"
        )
    for key in ("ratios", "fractions"):
        values = list(settings[key])
        if not values or not all(isinstance(x, int | float) and math.isfinite(x) and x >= 0 for x in values):
            raise EvaluationError(f"action_recognition.{key} must be non-negative numbers, got {values}")
    if any(not 0 < float(x) <= 1 for x in settings.fractions):
        raise EvaluationError(
            f"action_recognition.fractions must be in (0, 1], got {list(settings.fractions)}"
        )
    synthetic = load_generated(settings.samples) if settings.samples else run.generated
    held_out = sorted(synthetic.takes - set(SPLIT_TAKES["train"]))
    if held_out:
        raise EvaluationError(
            f"{synthetic.source}: synthetic training images must come from TRAINING-split graphs (or new ones), "
            f"never from the held-out takes {held_out} the downstream model is tested on"
        )
    return synthetic


def score_action_recognition(run: Evaluation) -> None:
    settings, synthetic = run.cfg.action_recognition, run.inputs["action_recognition"]
    size, cameras = synthetic.size[0], sorted(set(synthetic.cameras.tolist()))
    real_train = load_real_views(run.root, "train", cameras, size, limit=int(settings.real_train_scans))
    real_test = [load_real_views(run.root, s, cameras, size) for s in ("validation", "test")]
    test = LabelledImages.concat([labelled(t) for t in real_test])  # offsets the scan ids of each part
    extra = None
    warnings = []
    if settings.extra_real_root:
        extra = labelled(load_real_views(settings.extra_real_root, "train", cameras, size))
    else:
        warnings.append(
            "no oracle control: set action_recognition.extra_real_root to a render of the training takes"
        )
    study = downstream_study(
        labelled(real_train), labelled(synthetic), test, extra,
        seeds=list(settings.seeds), ratios=list(settings.ratios), fractions=list(settings.fractions),
        steps=int(settings.steps), batch_size=int(settings.batch_size),
        log=(lambda line: print(line, file=sys.stderr, flush=True)) if run.cfg.progress else None,
    )  # fmt: skip
    run.cards["action_recognition"] = make_card(
        "action_recognition (main-action macro-F1 on real held-out takes)",
        [
            {k: row.get(k) for k in ("fraction", "arm", "ratio", "mean", "ci95")}
            | {"gain": (row.get("gain_over_real_only") or {}).get("mean")}
            for row in study["rows"]
        ],
        implementation="or_synth.evaluation.action_recognition.downstream_study",
        **{**run.common, "samples": synthetic.source, "n_generated": len(synthetic)},
        split="train -> validation+test",
        n_real=len(real_train),
        seeds=list(settings.seeds),
        warnings=warnings,
    )
    run.details["action_recognition"] = study


ACTION_RECOGNITION = Metric(
    "action_recognition",
    score_action_recognition,
    cards=("action_recognition",),
    needs=frozenset({Need.GENERATED}),
    summary="real-only vs real + synthetic main-action recognition on real held-out takes",
    check=synthetic_training_set,
)
