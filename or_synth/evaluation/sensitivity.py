"""Relation sensitivity: when the graph is edited (a predicate changed, subject and object swapped, a node
removed), does the regenerated image change the way the edit says, as the relation classifier sees it?

Reads the folders ``python -m or_synth.edit`` writes (``edit.json``, ``graphs.json``, ``before_cam{c}.png``,
``after_cam{c}.png`` and ``full_cam{c}.png``). For every camera of every edit, the labels the edit adds (in the
after graph, not the before one) should become more likely and the labels it removes less likely. Reported per
image kind (``after``: the edited region inpainted; ``full``: the after graph regenerated everywhere):

- ``direction_accuracy``: the fraction of changed labels whose probability moved the right way (chance 0.5);
- ``flip_rate``: the fraction that crossed the 0.5 threshold the right way (what a thresholded reading sees);
- ``unchanged_stability``: the fraction of labels the edit did NOT change whose thresholded answer stayed put;
- ``mean_probability_change``: the changed labels' probability change, signed so that > 0 is the edit's way.

Beside them the **null edit** (``null_cam{c}.png``: the same region re-inpainted under the unchanged graph) read
on the same labels: what inpainting alone moves. ``after_minus_null`` is the edit's effect beyond it, each
statistic with a 95 % interval from resampling edits (paired: the same edits for both), and ``by_edit_kind``
stratifies by the edit (predicate, role, swap, remove, add).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from or_synth.data import PREDICATES, read_image
from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import Vocabulary
from or_synth.evaluation.image_sets import ImageSetError
from or_synth.evaluation.relation_classifier import RelationClassifier, RelationLabels

KINDS = ("after", "full")


def edit_folders(root: str | Path) -> list[Path]:
    """``root`` itself when it is one edit's folder, else every subfolder holding an ``edit.json``."""
    root = Path(root)
    if (root / "edit.json").is_file():
        return [root]
    folders = sorted(p.parent for p in root.glob("*/edit.json"))
    if not folders:
        raise ImageSetError(f"no edit.json in {root} or its subfolders: pass the out folder of or_synth.edit")
    return folders


def _labels(labels: RelationLabels, record) -> torch.Tensor:
    return torch.cat([labels.predicates([record]), labels.triple_targets([record])], dim=1)[0]


def relation_sensitivity(
    classifier: RelationClassifier, root: str | Path, *, resamples: int = 2000, seed: int = 0
) -> dict:
    labels = RelationLabels(classifier.triples)
    names = [f"predicate {p}" for p in PREDICATES] + [f"triple {t}" for t in classifier.triples]
    size = (classifier.image_size, classifier.image_size)
    per_edit = []
    values = []  # per edit: {image kind: {"change", "flipped", "stable"}: lists over its changed labels x cameras}
    for folder in edit_folders(root):
        summary = json.loads((folder / "edit.json").read_text())
        graphs = json.loads((folder / "graphs.json").read_text())
        vocabulary = Vocabulary()
        before = parse_scan(graphs["before"], vocabulary, file=folder / "graphs.json")
        after = parse_scan(graphs["after"], vocabulary, file=folder / "graphs.json", position=1)
        delta = _labels(labels, after) - _labels(labels, before)  # +1 added, -1 removed, 0 unchanged
        changed = delta != 0
        row = {
            "edit": summary["edit"],
            "edit_kind": str(summary["edit"]).split()[0],
            "folder": folder.name,
            "changed_labels": [names[i] for i in torch.nonzero(changed).flatten().tolist()],
        }
        mine = {kind: {"flipped": [], "change": [], "stable": []} for kind in (*KINDS, NULL)}
        for camera in sorted(summary["cameras"], key=int):
            images = {}
            kinds = [*KINDS, *([NULL] if (folder / f"{NULL}_cam{camera}.png").is_file() else [])]
            for kind in ("before", *kinds):
                file = folder / f"{kind}_cam{camera}.png"
                if not file.is_file():
                    raise ImageSetError(
                        f"{folder}: {file.name} is missing (camera {camera} of edit {summary['edit']!r})"
                    )
                images[kind] = read_image(file, size)
            probs = classifier.predict(
                torch.stack(list(images.values())), torch.full((len(images),), int(camera))
            )
            p = torch.cat([probs["predicates"], probs["triples"]], dim=1)  # before, then each kind
            for k, kind in enumerate(kinds, start=1):
                change = (p[k] - p[0])[changed] * delta[changed]  # > 0: the way the edit says
                mine[kind]["change"] += change.tolist()
                right_way = ((p[k] >= 0.5) == (delta > 0)) & ((p[0] >= 0.5) != (p[k] >= 0.5))
                mine[kind]["flipped"] += right_way[changed].tolist()
                mine[kind]["stable"] += ((p[k] >= 0.5) == (p[0] >= 0.5))[~changed].tolist()
        per_edit.append(row)
        values.append(mine)
    if not any(v[kind]["change"] for v in values for kind in KINDS):
        raise ImageSetError(
            f"{root}: none of the edits changes a label the classifier knows (its predicates and "
            f"{len(classifier.triples)} triples), so sensitivity cannot be measured"
        )
    rng = np.random.default_rng(seed)
    draws = rng.integers(
        0, len(values), size=(resamples, len(values))
    )  # edits resampled, shared by every row
    result = {kind: _summary(values, kind, draws) for kind in (*KINDS, NULL)}
    result["after_minus_null"] = _difference(values, "after", NULL, resamples, seed)
    by_kind = {}
    for edit_kind in sorted({r["edit_kind"] for r in per_edit}):
        chosen = [v for v, r in zip(values, per_edit, strict=True) if r["edit_kind"] == edit_kind]
        local = rng.integers(0, len(chosen), size=(resamples, len(chosen)))
        by_kind[edit_kind] = {
            "n_edits": len(chosen),
            **{kind: _summary(chosen, kind, local) for kind in ("after", NULL)},
            "after_minus_null": _difference(chosen, "after", NULL, resamples, seed),
        }
    result["by_edit_kind"] = by_kind
    result["chance_direction_accuracy"] = 0.5
    result["n_edits"] = len(values)
    result["edits"] = per_edit
    return result


NULL = "null"  # the null edit: the region re-inpainted under the unchanged graph (the control)
STATISTICS = {"direction_accuracy": "moved", "flip_rate": "flipped", "mean_probability_change": "change"}
# "moved" (the change went the edit's way) is read off "change" (> 0), not stored beside it.


def _pooled(values: list[dict], kind: str, key: str, index=None) -> float:
    chosen = values if index is None else [values[i] for i in index]
    if key == "moved":
        pooled = [x > 0 for v in chosen for x in v[kind]["change"]]
    else:
        pooled = [x for v in chosen for x in v[kind][key]]
    return float(np.mean(pooled)) if pooled else float("nan")


def _interval(samples: np.ndarray) -> list[float] | None:
    samples = samples[np.isfinite(samples)]
    return [round(float(q), 4) for q in np.quantile(samples, [0.025, 0.975])] if samples.size else None


def _summary(values: list[dict], kind: str, draws: np.ndarray) -> dict | None:
    """One image kind's statistics pooled over every changed label x camera, each with a 95 % interval from
    resampling whole edits (labels of one edit are not independent)."""
    if not any(v[kind]["change"] for v in values):
        return None
    out = {}
    for name, key in STATISTICS.items():
        out[name] = round(_pooled(values, kind, key), 4)
        out[f"{name}_ci95"] = _interval(np.array([_pooled(values, kind, key, d) for d in draws]))
    stable = [x for v in values for x in v[kind]["stable"]]
    out["unchanged_stability"] = round(float(np.mean(stable)), 4) if stable else None
    out["changed_labels"] = sum(len(v[kind]["change"]) for v in values)
    return out


def _difference(values: list[dict], a: str, b: str, resamples: int, seed: int) -> dict | None:
    """``a`` minus ``b`` on the edits that have both, paired (the same resampled edits for both)."""
    paired = [v for v in values if v[a]["change"] and v[b]["change"]]
    if not paired:
        return None
    local = np.random.default_rng(seed).integers(0, len(paired), size=(resamples, len(paired)))
    out = {"n_edits": len(paired)}
    for name, key in STATISTICS.items():
        value = _pooled(paired, a, key) - _pooled(paired, b, key)
        samples = np.array([_pooled(paired, a, key, d) - _pooled(paired, b, key, d) for d in local])
        ci = _interval(samples)
        out[name] = {
            "value": round(value, 4),
            "ci95": ci,
            "excludes_0": bool(ci and (ci[0] > 0 or ci[1] < 0)),
        }
    return out
