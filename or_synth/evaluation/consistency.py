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
"""

from __future__ import annotations

import numpy as np
import torch

from or_synth.data import PREDICATES
from or_synth.evaluation.image_sets import ImageSet
from or_synth.evaluation.pairs import PairSet
from or_synth.evaluation.relation_classifier import RelationClassifier, RelationLabels

THRESHOLD = 0.5


def derangement(n: int, seed: int) -> np.ndarray:
    """A random permutation without fixed points (Sattolo's algorithm: one n-cycle)."""
    rng, perm = np.random.default_rng(seed), np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


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
    generated_predictions: dict[str, torch.Tensor] | None = None,
    real_predictions: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Model, ceiling (real images of the same graphs and cameras, when given), floor (shuffled graphs) and
    chance; per-predicate table; per-camera scores (multi-view consistency)."""
    labels = RelationLabels(classifier.triples)
    groups = generated.scan_groups()
    targets = graph_targets(labels, generated)
    preds = generated_predictions or classifier.predict(generated.images, generated.cameras)
    model = relation_scores(preds, targets, groups)

    donor_rows = floor_donor_rows(groups, seed)
    scores = {
        "model": model,
        "floor": relation_scores(preds, {k: v[donor_rows] for k, v in targets.items()}, groups),
    }
    if real is not None:
        if [r.key for r in real.records] != [r.key for r in generated.records] or not torch.equal(
            real.cameras, generated.cameras
        ):
            raise ValueError("the real set must list the same (scan, camera) views as the generated set")
        real_preds = real_predictions or classifier.predict(real.images, real.cameras)
        scores["ceiling"] = relation_scores(real_preds, targets, groups)
    report = combined_report(scores, ("image", "scan"))
    report["chance"] = {
        "per_image": chance_levels(targets["predicates"]),
        "per_scan": chance_levels(per_scan(targets["predicates"], groups).round()),
    }
    report["per_camera"] = {
        int(c): relation_scores(
            {k: preds[k][generated.cameras == c] for k in ("predicates", "triples")},
            {k: v[generated.cameras == c] for k, v in targets.items()},
            torch.unique(groups[generated.cameras == c], return_inverse=True)[1],
        )["predicate_macro_f1_per_image"]
        for c in sorted(set(generated.cameras.tolist()))
    }
    report["view_agreement"] = view_agreement(preds["predicates"], groups)
    report["n_images"] = len(generated)
    report["n_scans"] = int(groups.max()) + 1
    report["n_triples_in_vocabulary"] = len(labels.triples)
    return report


def pair_consistency_report(
    classifier: RelationClassifier,
    generated: ImageSet,
    generated_pairs: PairSet,
    real: ImageSet | None = None,
    real_pairs: PairSet | None = None,
    *,
    seed: int = 0,
    batch_size: int = 128,
    generated_probabilities: torch.Tensor | None = None,
    real_probabilities: torch.Tensor | None = None,
) -> dict:
    """Pair-level graph consistency: model, ceiling (real images with their own boxes), floor (each scan's
    pairs scored against the relations another scan states between nodes of the same labels, the same
    derangement over scans as the image-level floor), ``labels_only`` (blank images, same boxes and labels) and
    chance; per-predicate table."""
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
    donors = [records[row] for row in floor_donor_rows(generated.scan_groups(), seed)]
    scores = {
        "model": pair_scores(probs, targets, groups),
        "floor": pair_scores(probs, generated_pairs.targets(records, donors), groups),
        "labels_only": pair_scores(classifier.predict_blank(generated_pairs, records), targets, groups),
    }
    if real is not None and real_pairs is not None and len(real_pairs):
        real_probs = real_probabilities
        if real_probs is None:
            real_probs = classifier.predict(
                real.images, real.cameras, batch_size, pairs=real_pairs, records=real.records
            )["pairs"]
        scores["ceiling"] = pair_scores(
            real_probs, real_pairs.targets(real.records), real_pairs.groups(real.records)
        )
    report = combined_report(scores, ("view", "scan"))
    if "ceiling" in scores:
        report["n_real_pairs"] = len(real_pairs)
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
