"""4D-OR's panoptic segmentations (released with MM-OR) as the generator's per-node layouts.

Real 4D-OR has no instance masks, but MM-OR's ``4D-OR_panoptic_segmentations.zip`` labels cameras 1, 2 and 5:
``export_holistic_take{T}_processed/segmentation_export_{c}/camera0{c}_colorimage-{id}.png``, the colour image's
stem, one grayscale label per pixel, instance ids unused (``../shared/docs/4dor_format.md`` §4, MM-OR
``panoptic_segmentation/datasets/or_dataset.py:L15-40``). :func:`node_label_map` turns such a map into the label map
every layout consumer reads (node index + 1, 0 room, 255 clutter: :mod:`or_synth.data.annotations`):

- objects by class (instrument table, anaesthesia equipment, operating table, patient, secondary table);
- people by clinical role, matched to the graph's human nodes through ``human_idx_to_name`` (``human_k`` is no
  identity in 4D-OR; the role is);
- the tool labels (drill, hammer, saw, cementer) into the graph's ``instrument`` node;
- things the graph vocabulary has no node for (drape, robot, monitor, C-arm, unrelated people, ...) -> clutter;
- background and the known artefact ids (14, 19, 20, 22, 23, ignored by MM-OR) -> room.

A node the map does not show is absent from that view, as an occluded node is today. Two people of one role
cannot be told apart without instance ids, so their pixels become clutter (and are listed). An unknown id, a map
whose aspect differs from the colour image's, or a labelled role or class the graph lacks is a
:class:`DatasetFormatError` naming file, take, scan and camera; with ``strict=False`` those pixels become clutter
and the problem is returned in the notes instead.

:func:`panoptic_from_node_labels` is the inverse the renderer uses to write a stand-in in the real format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from or_synth.data.annotations import CLUTTER_LABEL, ROOM_LABEL
from or_synth.data.errors import DatasetFormatError
from or_synth.data.images import take_dir

PANOPTIC_CAMERAS: tuple[int, ...] = (1, 2, 5)

# MM-OR's label ids for 4D-OR (or_dataset.py:L15-40).
PANOPTIC_LABELS: dict[int, str] = {
    0: "background",
    1: "instrument_table",
    2: "ae",
    3: "ot",
    4: "mps_station",
    5: "patient",
    6: "drape",
    7: "anest",
    8: "circulator",
    9: "assistant_surgeon",
    10: "head_surgeon",
    11: "mps",
    12: "nurse",
    13: "drill",
    15: "hammer",
    16: "saw",
    17: "tracker",
    18: "mako_robot",
    24: "monitor",
    25: "c_arm",
    26: "unrelated_person",
    27: "student",
    28: "secondary_table",
    29: "cementer",
}
ARTEFACT_IDS: frozenset[int] = frozenset({14, 19, 20, 22, 23})  # known artefacts MM-OR ignores: room here
# Label id -> the 4D-OR object class of the node it belongs to.
CLASS_OF_ID: dict[int, str] = {
    1: "instrument_table",
    2: "anesthesia_equipment",
    3: "operating_table",
    5: "Patient",
    28: "secondary_table",
}
# Label id -> the clinical role (``human_idx_to_name``) of the person node it belongs to.
ROLE_OF_ID: dict[int, str] = {
    7: "anaesthetist",
    8: "circulating-nurse",
    9: "assistant-surgeon",
    10: "head-surgeon",
}
# The tools MM-OR labels all belong to 4D-OR's one virtual ``instrument`` node.
TOOL_IDS: dict[int, str] = {13: "Drilling", 15: "Hammering", 16: "Sawing", 29: "Cementing"}
CLUTTER_IDS: frozenset[int] = frozenset({4, 6, 11, 12, 17, 18, 24, 25, 26, 27})
UNRELATED_PERSON = 26  # the id the stand-in gives a person without a known role


def panoptic_path(root: str | Path, take: int, camera: int, frame_id: str) -> Path:
    return (
        take_dir(Path(root), take)
        / f"segmentation_export_{camera}"
        / f"camera0{camera}_colorimage-{frame_id}.png"
    )


def has_panoptic(root: str | Path, take: int) -> bool:
    """True when the take has MM-OR's panoptic folders (any of cameras 1, 2, 5)."""
    folder = take_dir(Path(root), take)
    return any((folder / f"segmentation_export_{c}").is_dir() for c in PANOPTIC_CAMERAS)


def read_panoptic(
    root: str | Path, take: int, camera: int, frame_id: str, *, scan: str | None = None
) -> np.ndarray:
    """(H, W) uint8 MM-OR label map of one image.

    Raises:
        DatasetFormatError: the camera has no panoptic maps (only 1, 2, 5 do) or this image's map is missing.
    """
    path = panoptic_path(root, take, camera, frame_id)
    where = {"file": path, "take": take, "scan": scan, "field": f"camera {camera}"}
    if camera not in PANOPTIC_CAMERAS:
        raise DatasetFormatError(
            f"4D-OR's panoptic segmentations cover cameras {', '.join(map(str, PANOPTIC_CAMERAS))} only",
            **where,
        )
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")).copy()
    except FileNotFoundError:
        raise DatasetFormatError(
            "panoptic mask is missing (MM-OR's 4D-OR_panoptic_segmentations.zip, unpacked into the take folder)",
            **where,
        ) from None


def node_label_map(
    panoptic: np.ndarray,
    object_names: Sequence[str],
    roles: Sequence[str],
    *,
    image_size: tuple[int, int] | None = None,
    strict: bool = True,
    file: str | Path | None = None,
    take: int | None = None,
    scan: str | None = None,
    camera: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The node label map (node index + 1, 0 room, 255 clutter) of a panoptic map, at the map's size.

    Args:
        object_names / roles: the scan's nodes in graph order (4D-OR class names; roles as in
            :class:`~or_synth.data.scene_graph.SceneGraphRecord`).
        image_size: (H, W) of the colour image: the map must have its aspect (MM-OR resizes maps nearest).
        strict: raise on an unknown id or a labelled class / role the graph lacks; False: clutter + a note.

    Returns:
        ``(labels, notes)``: notes list what was not matched (ambiguous roles always; the errors when not strict).
    """
    where = {
        "file": file,
        "take": take,
        "scan": scan,
        "field": None if camera is None else f"camera {camera}",
    }
    if panoptic.ndim != 2:
        raise DatasetFormatError(
            f"a panoptic mask is one grayscale label map, got shape {panoptic.shape}", **where
        )
    if image_size is not None:
        height, width = panoptic.shape
        if height * image_size[1] != width * image_size[0]:
            raise DatasetFormatError(
                f"panoptic mask is {width} x {height} but the colour image is {image_size[1]} x {image_size[0]} "
                "(a different aspect: not the image's mask)",
                **where,
            )
    by_class = {
        name: k for k, name in enumerate(object_names) if name in CLASS_OF_ID.values() or name == "instrument"
    }
    by_role: dict[str, list[int]] = {}
    for k, (name, role) in enumerate(zip(object_names, roles, strict=True)):
        if name.startswith("human_"):
            by_role.setdefault(role, []).append(k)
    key_of = np.full(256, CLUTTER_LABEL, dtype=np.uint8)
    key_of[ROOM_LABEL] = ROOM_LABEL
    for artefact in ARTEFACT_IDS:
        key_of[artefact] = ROOM_LABEL
    notes: list[str] = []

    def unmatched(label: int, what: str) -> None:
        message = f"label {label} ({PANOPTIC_LABELS.get(label, 'unknown')}): {what}"
        if strict:
            raise DatasetFormatError(
                message + " (strict=false turns its pixels into clutter and lists it)", **where
            )
        notes.append(message)

    for label in np.unique(panoptic).tolist():
        if label == 0 or label in ARTEFACT_IDS or label in CLUTTER_IDS:
            continue
        if label in CLASS_OF_ID:
            node = by_class.get(CLASS_OF_ID[label])
            if node is None:
                unmatched(label, f"the scene graph has no {CLASS_OF_ID[label]} node")
            else:
                key_of[label] = node + 1
        elif label in ROLE_OF_ID:
            nodes = by_role.get(ROLE_OF_ID[label], [])
            if len(nodes) == 1:
                key_of[label] = nodes[0] + 1
            elif not nodes:
                unmatched(label, f"the scene graph has no person with role {ROLE_OF_ID[label]}")
            else:  # no instance ids: two people of one role cannot be told apart
                notes.append(
                    f"label {label} ({PANOPTIC_LABELS[label]}): {len(nodes)} people have role {ROLE_OF_ID[label]}; "
                    "their pixels are clutter"
                )
        elif label in TOOL_IDS:
            node = by_class.get("instrument")
            if node is None:
                unmatched(label, "the scene graph has no instrument node")
            else:
                key_of[label] = node + 1
        else:
            unmatched(
                label,
                f"unknown label id (known: {sorted(PANOPTIC_LABELS)} and artefacts {sorted(ARTEFACT_IDS)})",
            )
    return key_of[panoptic], notes


def panoptic_from_node_labels(
    labels: np.ndarray, object_names: Sequence[str], roles: Sequence[str], predicates: set[str]
) -> np.ndarray:
    """The MM-OR label map of a node label map (the renderer's stand-in in the real format).

    People by role (a person without a known role is an ``unrelated_person``), objects by class, the instrument
    as the tool of the scan's surgical action (unlabelled, i.e. background, when none is drawn: MM-OR labels only
    those tools), clutter as background.
    """
    class_ids = {name: label for label, name in CLASS_OF_ID.items()}
    role_ids = {role: label for label, role in ROLE_OF_ID.items()}
    tool = next((label for label, action in TOOL_IDS.items() if action in predicates), 0)
    id_of = np.zeros(256, dtype=np.uint8)
    for k, (name, role) in enumerate(zip(object_names, roles, strict=True)):
        if name in class_ids:
            id_of[k + 1] = class_ids[name]
        elif name == "instrument":
            id_of[k + 1] = tool
        elif name.startswith("human_"):
            id_of[k + 1] = role_ids.get(role, UNRELATED_PERSON)
    return id_of[labels]
