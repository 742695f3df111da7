"""Graph consistency: does an image show the graph it was conditioned on, as the relation classifier sees it?

Scores come in two units: per image (each view on its own) and per scan (the probabilities of a scan's views
averaged first: a relation hidden in one camera is visible in another). Predicates are scored by F1 each and
by their macro average over the predicates present in the scored graphs; role-typed triples by micro precision /
recall / F1 over every (image, triple) pair. A score is meaningless alone, so :func:`consistency_report` sets it
beside the ceiling (the classifier on real images of the same graphs) and the floor (the same generated images
scored against the graphs of other scans: what an image that ignores its graph gets), and chance.

Where boxes exist (:mod:`or_synth.evaluation.pairs`), :func:`pair_consistency_report` scores relations per
(subject, object) pair the same way, with one more reference: the pair head on blank images with the same boxes
and labels (``labels_only``), what the labels alone predict.

How sure (evidence.md): the floor averages several derangements; per scan, model, ceiling, floor and the
label-blind "always present" scorer get intervals from one paired bootstrap over scans
(:mod:`or_synth.evaluation.intervals`), and the floor that counts is the higher of the derangement floor and
"always present". Threshold-free numbers sit beside F1: each predicate's average precision of the per-scan
probabilities, so a scorer's calibration shift on generated images is not read as a missing relation. The
per-scan counts themselves (``arrays``) let a benchmark pair rows of different evaluations on the same scans
(the model against its null-graph control, say).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from or_synth.data import PREDICATES
from or_synth.data.derangements import derangement
from or_synth.evaluation.image_sets import ImageSet
from or_synth.evaluation.intervals import BOOTSTRAP_RESAMPLES, ScanCounts, always_present, paired_bootstrap
from or_synth.evaluation.pairs import PairSet
from or_synth.evaluation.relation_classifier import RelationClassifier, RelationLabels

THRESHOLD = 0.5


def per_scan(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(G, C) means of the rows of ``values`` (N, C) that share a group id (ids 0..G-1)."""
    count = int(groups.max()) + 1 if len(groups) else 0
    sums = torch.zeros(count, values.shape[1], dtype=torch.float64).index_add_(0, groups, values.double())
    return sums / torch.bincount(groups, minlength=count).clamp(min=1)[:, None]


def f1_table(probabilities: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-class counts and F1 at the 0.5 threshold; classes absent from both get F1 NaN."""
    predicted = probabilities.numpy() >= THRESHOLD
    truth = targets.numpy() >= 0.5
    tp = (predicted & truth).sum(0)
    fp = (predicted & ~truth).sum(0)
    fn = (~predicted & truth).sum(0)
    f1 = np.where(tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    return {"tp": tp, "fp": fp, "fn": fn, "f1": f1, "support": truth.sum(0)}


def micro_prf(probabilities: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    table = f1_table(probabilities, targets)
    tp, fp, fn = (int(table[k].sum()) for k in ("tp", "fp", "fn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def macro_f1(probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean F1 over the classes present in ``targets`` (a class nobody shows cannot be scored)."""
    table = f1_table(probabilities, targets)
    present = table["support"] > 0
    return round(float(np.mean(table["f1"][present])), 4) if present.any() else float("nan")


def add_predicate_rows(out: dict, probabilities: torch.Tensor, targets: torch.Tensor, unit: str) -> None:
    """Each predicate's F1 and support in ``unit`` into ``out["predicates"][name]``."""
    table = f1_table(probabilities, targets)
    for i, name in enumerate(PREDICATES):
        row = out.setdefault("predicates", {}).setdefault(name, {})
        row[f"f1_per_{unit}"] = None if np.isnan(table["f1"][i]) else round(float(table["f1"][i]), 4)
        row[f"support_per_{unit}"] = int(table["support"][i])


def relation_scores(
    predictions: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], groups: torch.Tensor
) -> dict:
    """Predicate macro-F1 and triple P/R/F1, per image and per scan, plus the per-predicate F1 table."""
    out: dict = {}
    for unit in ("image", "scan"):
        if unit == "scan":
            probs = {k: per_scan(predictions[k], groups).float() for k in ("predicates", "triples")}
            truth = {k: per_scan(v, groups).round().float() for k, v in targets.items()}
        else:
            probs, truth = predictions, targets
        out[f"predicate_macro_f1_per_{unit}"] = macro_f1(probs["predicates"], truth["predicates"])
        out[f"triples_per_{unit}"] = micro_prf(probs["triples"], truth["triples"])
        add_predicate_rows(out, probs["predicates"], truth["predicates"], unit)
    return out


def pair_scores(probabilities: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> dict:
    """Pair-level predicate macro-F1 and (pair, predicate) fact P/R/F1, per view (each image's pair on its
    own) and per scan (a pair's probabilities averaged over the views that show both nodes), with the
    per-predicate table."""
    out: dict = {}
    for unit in ("view", "scan"):
        if unit == "scan" and len(groups):
            probs, truth = per_scan(probabilities, groups).float(), per_scan(targets, groups).round().float()
        else:
            probs, truth = probabilities, targets
        out[f"predicate_macro_f1_per_{unit}"] = macro_f1(probs, truth)
        out[f"facts_per_{unit}"] = micro_prf(probs, truth)
        add_predicate_rows(out, probs, truth, unit)
    return out


def graph_targets(labels: RelationLabels, images: ImageSet) -> dict[str, torch.Tensor]:
    return {"predicates": labels.predicates(images.records), "triples": labels.triple_targets(images.records)}


def chance_levels(targets: torch.Tensor) -> dict[str, float]:
    """Macro-F1 of a random guesser at each present predicate's prevalence p (F1 = p) and of "always present"
    (2p / (1 + p))."""
    p = targets.double().mean(0).numpy()
    present = p > 0
    return {
        "random": round(float(p[present].mean()), 4),
        "always": round(float((2 * p / (1 + p))[present].mean()), 4),
    }


def floor_donor_rows(groups: torch.Tensor, seed: int) -> list[int]:
    """For every image, the row whose graph the floor scores it against: the first view of another scan (a
    derangement over scans), all views of a scan moved together so per-scan averaging still sees one graph."""
    n_scans = int(groups.max()) + 1
    donor = torch.as_tensor(derangement(n_scans, seed))[groups] if n_scans > 1 else groups
    first_row = {int(g): i for i, g in reversed(list(enumerate(groups.tolist())))}
    return [first_row[int(d)] for d in donor]


def mean_scores(scorings: Sequence[dict]) -> dict:
    """The mean of several scorings of one shape (the floor over derangements): numbers averaged (None where
    every scoring has None), anything else taken from the first."""
    first = scorings[0]
    if len(scorings) == 1:
        return first
    if isinstance(first, dict):
        return {k: mean_scores([s[k] for s in scorings]) for k in first}
    if isinstance(first, int | float) and not isinstance(first, bool) or first is None:
        values = [v for v in scorings if v is not None]
        if not values:
            return None
        mean = float(np.mean(values))
        return round(mean, 4) if any(isinstance(v, float) for v in values) else round(mean, 2)
    return first


def scan_keys(images: ImageSet) -> list[str]:
    """``take/scan`` of each scan group of ``images`` (:meth:`ImageSet.scan_groups` order)."""
    keys: dict[tuple[int, str], None] = {}
    for record in images.records:
        keys.setdefault(record.key, None)
    return [f"{take}/{scan}" for take, scan in keys]


def average_precision(probabilities: torch.Tensor, truth: torch.Tensor, present: np.ndarray) -> dict:
    """Each present predicate's average precision (threshold-free) and their macro mean; a predicate true in
    every row has no negatives to rank and is left out (AP would be 1 whatever the scores)."""
    from torchmetrics.functional.classification import binary_average_precision

    per_predicate = {}
    for c in np.flatnonzero(present):
        target = truth[:, c].round().long()
        if int(target.sum()) == len(target):
            continue
        per_predicate[PREDICATES[c]] = round(
            float(binary_average_precision(probabilities[:, c].float(), target)), 4
        )
    macro = round(float(np.mean(list(per_predicate.values()))), 4) if per_predicate else None
    return {"macro": macro, "per_predicate": per_predicate}


def scan_evidence(
    keys: list[str],
    probabilities: dict[str, torch.Tensor],
    truth: torch.Tensor,
    floor_truths: Sequence[torch.Tensor],
    *,
    seed: int,
    resamples: int,
    arrays: dict | None,
) -> dict:
    """Per scan: the paired bootstrap of model, ceiling, floor (over its derangements), "always present" and the
    floor that counts, with the differences a claim rests on; the average precisions; and, into ``arrays``, the
    per-scan counts (``<row>/tp`` ...) that let a benchmark pair this evaluation with another on the same scans.

    Args:
        probabilities: row name (``model``, ``ceiling``) -> (S, C) per-scan probabilities.
        truth: (S, C) the scans' predicates; ``floor_truths``: those of each derangement's donor scans.
    """
    present = truth.numpy().sum(0) > 0
    counts = {
        name: ScanCounts.from_scores(keys, p.numpy(), truth.numpy()) for name, p in probabilities.items()
    }
    floors = [ScanCounts.from_scores(keys, probabilities["model"].numpy(), t.numpy()) for t in floor_truths]
    always = always_present(keys, truth.numpy())
    differences = [("model", "floor_that_counts")]
    if "ceiling" in counts:
        differences.append(("ceiling", "model"))
    bootstrap = paired_bootstrap(
        {**counts, "floor": floors, "always_present": always},
        present,
        differences=differences,
        best_of={"floor_that_counts": ("floor", "always_present")},
        resamples=resamples,
        seed=seed,
    )
    ap = {name: average_precision(p, truth, present) for name, p in probabilities.items()}
    ap["floor"] = mean_scores([average_precision(probabilities["model"], t, present) for t in floor_truths])
    if arrays is not None:
        arrays["keys"] = np.array(keys)
        arrays["truth"] = truth.numpy().round().astype(np.int8)
        arrays["present"] = present
        for name, p in probabilities.items():
            arrays[f"{name}/probabilities"] = p.numpy().astype(np.float32)
            arrays.update(counts[name].arrays(name))
        for k, floor in enumerate(floors):
            arrays.update(floor.arrays(f"floor_{k}"))
        arrays.update(always.arrays("always_present"))
    return {
        "bootstrap": bootstrap,
        "average_precision": ap,
        "predicates_scored": [PREDICATES[c] for c in np.flatnonzero(present)],
    }


def combined_report(scores: dict[str, dict], units: tuple[str, str]) -> dict:
    """One report of the model and its references (``scores``: name -> a scoring with a per-predicate table):
    their summaries, the per-predicate table across them, and where a ceiling exists, the model's share of it and
    how far it got from the floor to it."""
    report: dict = {who: _summary(scored) for who, scored in scores.items()}
    report["predicates"] = {
        p: {who: scored["predicates"][p] for who, scored in scores.items()} for p in PREDICATES
    }
    if "ceiling" in report:
        for unit in units:
            key = f"predicate_macro_f1_per_{unit}"
            m, f, c = (report[who][key] for who in ("model", "floor", "ceiling"))
            report[f"model_over_ceiling_per_{unit}"] = round(m / c, 4) if c else None
            report[f"model_above_floor_fraction_per_{unit}"] = round((m - f) / (c - f), 4) if c != f else None
    return report


def consistency_report(
    classifier: RelationClassifier,
    generated: ImageSet,
    real: ImageSet | None,
    *,
    seed: int = 0,
    derangements: int = 1,
    resamples: int = BOOTSTRAP_RESAMPLES,
    generated_predictions: dict[str, torch.Tensor] | None = None,
    real_predictions: dict[str, torch.Tensor] | None = None,
    arrays: dict | None = None,
) -> dict:
    """Model, ceiling (real images of the same graphs and cameras, when given), floor (shuffled graphs, the mean
    over ``derangements`` derangements seeded ``seed``, ``seed + 1``, ...) and chance; per-predicate table;
    per-camera scores (multi-view consistency); per scan, paired-bootstrap intervals and average precisions
    (``per_scan_evidence``), with the per-scan counts written into ``arrays`` when it is given."""
    if derangements < 1:
        raise ValueError(f"derangements must be >= 1, got {derangements}")
    labels = RelationLabels(classifier.triples)
    groups = generated.scan_groups()
    targets = graph_targets(labels, generated)
    preds = generated_predictions or classifier.predict(generated.images, generated.cameras)
    model = relation_scores(preds, targets, groups)

    donors = [floor_donor_rows(groups, seed + k) for k in range(derangements)]
    floors = [relation_scores(preds, {k: v[rows] for k, v in targets.items()}, groups) for rows in donors]
    scores = {"model": model, "floor": mean_scores(floors)}
    real_preds = None
    if real is not None:
        if [r.key for r in real.records] != [r.key for r in generated.records] or not torch.equal(
            real.cameras, generated.cameras
        ):
            raise ValueError("the real set must list the same (scan, camera) views as the generated set")
        real_preds = real_predictions or classifier.predict(real.images, real.cameras)
        scores["ceiling"] = relation_scores(real_preds, targets, groups)
    report = combined_report(scores, ("image", "scan"))
    scan_probabilities = {"model": per_scan(preds["predicates"], groups).float()}
    if real_preds is not None:
        scan_probabilities["ceiling"] = per_scan(real_preds["predicates"], groups).float()
    report["per_scan_evidence"] = scan_evidence(
        scan_keys(generated),
        scan_probabilities,
        per_scan(targets["predicates"], groups).round().float(),
        [per_scan(targets["predicates"][rows], groups).round().float() for rows in donors],
        seed=seed,
        resamples=resamples,
        arrays=arrays,
    )
    report["floor_derangements"] = derangements
    report["chance"] = {
        "per_image": chance_levels(targets["predicates"]),
        "per_scan": chance_levels(per_scan(targets["predicates"], groups).round()),
    }

    def per_camera(predictions: dict[str, torch.Tensor]) -> dict[int, float]:
        return {
            int(c): relation_scores(
                {k: predictions[k][generated.cameras == c] for k in ("predicates", "triples")},
                {k: v[generated.cameras == c] for k, v in targets.items()},
                torch.unique(groups[generated.cameras == c], return_inverse=True)[1],
            )["predicate_macro_f1_per_image"]
            for c in sorted(set(generated.cameras.tolist()))
        }

    report["per_camera"] = per_camera(preds)
    report["view_agreement"] = view_agreement(preds["predicates"], groups)
    if (
        real_preds is not None
    ):  # what real views of the same scans reach: the per-camera ceilings and agreement
        report["per_camera_ceiling"] = per_camera(real_preds)
        report["view_agreement_real"] = view_agreement(real_preds["predicates"], groups)
    report["n_images"] = len(generated)
    report["n_scans"] = int(groups.max()) + 1
    report["n_triples_in_vocabulary"] = len(labels.triples)
    return report


def pair_scan_counts(
    probabilities: torch.Tensor, targets: torch.Tensor, pairs: PairSet, records, keys: list[str]
) -> ScanCounts:
    """Per scan, the (tp, fp, fn) of each predicate summed over the scan's pairs (each pair's probabilities
    averaged over the views that show it, as ``pair_scores`` does per scan). Scans without a pair count 0."""
    groups = pairs.groups(records)
    probs, truth = per_scan(probabilities, groups).numpy(), per_scan(targets, groups).round().numpy()
    group_scan = np.zeros(int(groups.max()) + 1 if len(groups) else 0, dtype=np.int64)
    index = {k: i for i, k in enumerate(keys)}
    for row, group in zip(pairs.image_index.tolist(), groups.tolist(), strict=True):
        take, scan = records[row].key
        group_scan[group] = index[f"{take}/{scan}"]
    rows = ScanCounts.from_scores([str(g) for g in range(len(group_scan))], probs, truth)
    sums = [np.zeros((len(keys), probs.shape[1]), dtype=np.int64) for _ in range(3)]
    for total, part in zip(sums, (rows.tp, rows.fp, rows.fn), strict=True):
        np.add.at(total, group_scan, part)
    return ScanCounts.from_rows(keys, *sums)


def pair_consistency_report(
    classifier: RelationClassifier,
    generated: ImageSet,
    generated_pairs: PairSet,
    real: ImageSet | None = None,
    real_pairs: PairSet | None = None,
    *,
    seed: int = 0,
    derangements: int = 1,
    resamples: int = BOOTSTRAP_RESAMPLES,
    batch_size: int = 128,
    generated_probabilities: torch.Tensor | None = None,
    real_probabilities: torch.Tensor | None = None,
    arrays: dict | None = None,
) -> dict:
    """Pair-level graph consistency: model, ceiling (real images with their own boxes), floor (each scan's
    pairs scored against the relations another scan states between nodes of the same labels, the same
    derangements over scans as the image-level floor, averaged), ``labels_only`` (blank images, same boxes and
    labels) and chance; per-predicate table; per scan, a paired bootstrap of them all (``per_scan_evidence``),
    the per-scan counts written into ``arrays`` when given."""
    if not len(generated_pairs):
        raise ValueError(
            f"{generated.source}: no image has two visible nodes with boxes, so there is no pair to score"
        )
    records = generated.records
    probs = generated_probabilities
    if probs is None:
        probs = classifier.predict(
            generated.images, generated.cameras, batch_size, pairs=generated_pairs, records=records
        )["pairs"]
    groups = generated_pairs.groups(records)
    targets = generated_pairs.targets(records)
    donor_targets = [
        generated_pairs.targets(
            records, [records[row] for row in floor_donor_rows(generated.scan_groups(), seed + k)]
        )
        for k in range(derangements)
    ]
    blank = classifier.predict_blank(generated_pairs, records)
    scores = {
        "model": pair_scores(probs, targets, groups),
        "floor": mean_scores([pair_scores(probs, t, groups) for t in donor_targets]),
        "labels_only": pair_scores(blank, targets, groups),
    }
    keys = scan_keys(generated)
    counts = {
        "model": pair_scan_counts(probs, targets, generated_pairs, records, keys),
        "labels_only": pair_scan_counts(blank, targets, generated_pairs, records, keys),
        "always_present": pair_scan_counts(torch.ones_like(targets), targets, generated_pairs, records, keys),
    }
    if real is not None and real_pairs is not None and len(real_pairs):
        real_probs = real_probabilities
        if real_probs is None:
            real_probs = classifier.predict(
                real.images, real.cameras, batch_size, pairs=real_pairs, records=real.records
            )["pairs"]
        real_targets = real_pairs.targets(real.records)
        scores["ceiling"] = pair_scores(real_probs, real_targets, real_pairs.groups(real.records))
        counts["ceiling"] = pair_scan_counts(real_probs, real_targets, real_pairs, real.records, keys)
    floors = [pair_scan_counts(probs, t, generated_pairs, records, keys) for t in donor_targets]
    report = combined_report(scores, ("view", "scan"))
    if "ceiling" in scores:
        report["n_real_pairs"] = len(real_pairs)
    present = (counts["model"].support.sum(0) > 0) | (
        counts.get("ceiling", counts["model"]).support.sum(0) > 0
    )
    differences = [("model", "floor_that_counts"), ("model", "labels_only")]
    if "ceiling" in counts:
        differences.append(("ceiling", "model"))
    report["per_scan_evidence"] = {
        "bootstrap": paired_bootstrap(
            {**counts, "floor": floors}, counts["model"].support.sum(0) > 0, differences=differences,
            best_of={"floor_that_counts": ("floor", "always_present")}, resamples=resamples, seed=seed,
        ),
        "predicates_scored": [PREDICATES[c] for c in np.flatnonzero(present)],
    }  # fmt: skip
    if arrays is not None:
        arrays["keys"] = np.array(keys)
        for name, part in counts.items():
            arrays.update(part.arrays(name))
        for k, floor in enumerate(floors):
            arrays.update(floor.arrays(f"floor_{k}"))
    report["floor_derangements"] = derangements
    report["chance"] = {
        "per_view": chance_levels(targets),
        "per_scan": chance_levels(per_scan(targets, groups).round()),
    }
    report["box_source"] = generated_pairs.source
    report["n_pairs"] = len(generated_pairs)
    report["n_pairs_with_a_relation"] = int((targets.sum(1) > 0).sum())
    report["n_images_with_pairs"] = int(torch.unique(generated_pairs.image_index).numel())
    return report


def view_agreement(probabilities: torch.Tensor, groups: torch.Tensor) -> float | None:
    """Multi-view consistency: over scans with 2+ views, the mean fraction of view pairs whose predicted
    predicate sets are identical (1 = every camera sees the same relations)."""
    predicted = (probabilities >= THRESHOLD).numpy()
    fractions = []
    for g in torch.unique(groups).tolist():
        rows = predicted[(groups == g).numpy()]
        if len(rows) < 2:
            continue
        same = [(rows[i] == rows[j]).all() for i in range(len(rows)) for j in range(i + 1, len(rows))]
        fractions.append(float(np.mean(same)))
    return round(float(np.mean(fractions)), 4) if fractions else None


def _summary(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k != "predicates"}
