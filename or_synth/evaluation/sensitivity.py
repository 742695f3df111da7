"""Relation sensitivity: when the graph is edited (a predicate changed, subject and object swapped, a node
removed), does the regenerated image change the way the edit says, as the relation classifier sees it?

Reads the folders ``python -m or_synth.edit`` writes (``edit.json``, ``graphs.json``, ``before_cam{c}.png``,
``after_cam{c}.png`` and ``full_cam{c}.png``). For every camera of every edit, the labels the edit adds (in the
after graph, not the before one) should become more likely and the labels it removes less likely. Reported per
image kind (``after``: the edited region inpainted; ``full``: the after graph regenerated everywhere):

- ``direction_accuracy``: the fraction of changed labels whose probability moved the right way (chance 0.5);
- ``flip_rate``: the fraction that crossed the 0.5 threshold the right way (what a thresholded reading sees);
- ``unchanged_stability``: the fraction of labels the edit did NOT change whose thresholded answer stayed put.
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


def relation_sensitivity(classifier: RelationClassifier, root: str | Path) -> dict:
    labels = RelationLabels(classifier.triples)
    names = [f"predicate {p}" for p in PREDICATES] + [f"triple {t}" for t in classifier.triples]
    size = (classifier.image_size, classifier.image_size)
    moved = {k: [] for k in KINDS}
    flipped = {k: [] for k in KINDS}
    stable = {k: [] for k in KINDS}
    per_edit = []
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
            "folder": folder.name,
            "changed_labels": [names[i] for i in torch.nonzero(changed).flatten().tolist()],
        }
        for camera in sorted(summary["cameras"], key=int):
            images = {}
            for kind in ("before", *KINDS):
                file = folder / f"{kind}_cam{camera}.png"
                if not file.is_file():
                    raise ImageSetError(
                        f"{folder}: {file.name} is missing (camera {camera} of edit {summary['edit']!r})"
                    )
                images[kind] = read_image(file, size)
            probs = classifier.predict(
                torch.stack(list(images.values())), torch.full((len(images),), int(camera))
            )
            p = torch.cat([probs["predicates"], probs["triples"]], dim=1)  # (3, L): before, after, full
            for k, kind in enumerate(KINDS, start=1):
                change = (p[k] - p[0])[changed] * delta[changed]
                moved[kind] += (change > 0).tolist()
                right_way = ((p[k] >= 0.5) == (delta > 0)) & ((p[0] >= 0.5) != (p[k] >= 0.5))
                flipped[kind] += right_way[changed].tolist()
                stable[kind] += ((p[k] >= 0.5) == (p[0] >= 0.5))[~changed].tolist()
        per_edit.append(row)
    if not any(moved[k] for k in KINDS):
        raise ImageSetError(
            f"{root}: none of the edits changes a label the classifier knows (its predicates and "
            f"{len(classifier.triples)} triples), so sensitivity cannot be measured"
        )
    result = {
        kind: {
            "direction_accuracy": round(float(np.mean(moved[kind])), 4),
            "flip_rate": round(float(np.mean(flipped[kind])), 4),
            "unchanged_stability": round(float(np.mean(stable[kind])), 4) if stable[kind] else None,
            "changed_labels": len(moved[kind]),
        }
        for kind in KINDS
    }
    result["chance_direction_accuracy"] = 0.5
    result["edits"] = per_edit
    return result
