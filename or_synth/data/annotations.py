"""Extra per-image annotations of rendered datasets (``datasets/synthetic_or``): 2D boxes and instance masks.

4D-OR itself has no 2D boxes (``../shared/docs/4dor_format.md`` §4). The renderer writes, per take:

- ``instance_masks/camera0{c}_colorimage-{id}.png``: uint8 label map with the image's stem; pixel value =
  4D-OR object key (node index + 1), 0 = room (floor, walls), 255 = clutter that belongs to no node;
- ``or_synth_annotations/{scan}.json``: ``{"take_idx", "scan", "phase", "scene_graph": <4D-OR scan entry>,
  "cameras": {"<c>": {"frame_id", "boxes": {"<key>": [x0, y0, x1, y1]}, "pixels": {"<key>": n}}}}`` with
  half-open pixel boxes.

Later stages read these here, without importing the renderer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from or_synth.data.errors import DatasetFormatError
from or_synth.data.images import take_dir

MASK_DIR = "instance_masks"
ANNOTATION_DIR = "or_synth_annotations"
ROOM_LABEL = 0
CLUTTER_LABEL = 255


def mask_path(root: str | Path, take: int, camera: int, frame_id: str) -> Path:
    return take_dir(Path(root), take) / MASK_DIR / f"camera0{camera}_colorimage-{frame_id}.png"


def annotation_path(root: str | Path, take: int, scan: str) -> Path:
    return take_dir(Path(root), take) / ANNOTATION_DIR / f"{scan}.json"


@dataclass(frozen=True)
class ViewAnnotation:
    """One camera's annotation of a scan.

    Attributes:
        camera: camera id (1..6).
        frame_id: the colour frame id (as in the frame list).
        boxes: node index (0-based) -> ``(x0, y0, x1, y1)`` half-open pixel box; visible nodes only.
        pixels: node index -> number of visible pixels.
    """

    camera: int
    frame_id: str
    boxes: dict[int, tuple[int, int, int, int]]
    pixels: dict[int, int]


@dataclass(frozen=True)
class ScanAnnotation:
    take: int
    scan: str
    phase: str | None
    scene_graph: dict
    views: dict[int, ViewAnnotation]


def read_scan_annotation(root: str | Path, take: int, scan: str) -> ScanAnnotation:
    """Boxes and metadata of one rendered scan.

    Raises:
        DatasetFormatError: the file is missing or malformed (naming take and scan).
    """
    path = annotation_path(root, take, scan)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        views = {
            int(c): ViewAnnotation(
                camera=int(c),
                frame_id=str(view["frame_id"]),
                boxes={int(k) - 1: tuple(v) for k, v in view["boxes"].items()},
                pixels={int(k) - 1: int(v) for k, v in view["pixels"].items()},
            )
            for c, view in document["cameras"].items()
        }
        return ScanAnnotation(
            take=int(document["take_idx"]),
            scan=str(document["scan"]),
            phase=document.get("phase"),
            scene_graph=document["scene_graph"],
            views=views,
        )
    except FileNotFoundError:
        raise DatasetFormatError("no 2D annotation for this scan", file=path, take=take, scan=scan) from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(f"malformed annotation: {exc}", file=path, take=take, scan=scan) from None


def read_instance_mask(root: str | Path, take: int, camera: int, frame_id: str) -> np.ndarray:
    """(H, W) uint8 label map: object key (node + 1), 0 room, 255 clutter."""
    path = mask_path(root, take, camera, frame_id)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")).copy()
    except FileNotFoundError:
        raise DatasetFormatError(
            "instance mask is missing", file=path, take=take, field=f"camera {camera}"
        ) from None


def node_boxes(labels: np.ndarray, num_nodes: int) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Each visible node's box ``[x0, y0, x1, y1)`` and pixel count, keyed by its 4D-OR object key."""
    counts = np.bincount(labels.ravel(), minlength=256)
    boxes, pixels = {}, {}
    for key in range(1, num_nodes + 1):
        if counts[key] == 0:
            continue
        mask = labels == key
        rows = np.flatnonzero(mask.any(1))
        cols = np.flatnonzero(mask.any(0))
        boxes[str(key)] = [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]
        pixels[str(key)] = int(counts[key])
    return boxes, pixels
