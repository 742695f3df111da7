"""Files in 4D-OR's on-disk layout (``../shared/docs/4dor_format.md`` §1), plus the renderer's extras.

Per take ``export_holistic_take{T}_processed/``:

- ``colorimage/camera0{c}_colorimage-{id}.jpg``: the six views (4D-OR);
- ``timestamp_to_pcd_and_frames_list.json``: entry ``i`` = ``[key, {"pcd": "00000i", "color_c": id}]``;
  frame ids are *not* scan ids, as in 4D-OR (§1.1);
- ``camera0{c}.json``: calibration in 4D-OR's ``value0`` form (§1.2);
- ``instance_masks/camera0{c}_colorimage-{id}.png`` (extra): label map, pixel = object key (node + 1), 0 room,
  255 clutter; same stem as the image, like 4D-OR's panoptic ``segmentation_export_{c}`` masks (§4);
- ``or_synth_annotations/{scan}.json`` (extra): the scan's graph, phase, and per camera the frame id and
  each node's 2D box ``[x0, y0, x1, y1)`` and pixel count. Read it with :mod:`or_synth.data.annotations`.

At the root: ``relationships_{split}.json``, ``phases/phase_to_frames_{take}.json`` and
``or_synth_render.json`` (the manifest that makes rendering resumable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from or_synth.data.annotations import ANNOTATION_DIR, MASK_DIR, annotation_path, mask_path, node_boxes
from or_synth.data.images import FRAME_LIST, color_image_path, take_dir
from or_synth.data.io import atomic_path, atomic_write_json
from or_synth.data.panoptic import PANOPTIC_CAMERAS, panoptic_path
from or_synth.data.poses import KEYPOINTS_FILE, keypoints_2d, read_calibration, read_poses
from or_synth.render.room import Camera

__all__ = [
    "ANNOTATION_DIR",
    "MASK_DIR",
    "annotation_path",
    "atomic_write_json",
    "frame_id",
    "frame_list",
    "mask_path",
    "node_boxes",
    "write_image",
    "write_mask",
    "write_take_files",
]


def frame_id(take: int, scan_index: int, camera: int) -> str:
    """The colour frame id of a scan's camera: a running frame counter, never the scan id."""
    return f"{1000 + 3 * scan_index + camera + 30 * take:06d}"


def frame_list(take: int, num_scans: int) -> list:
    """4D-OR's ``timestamp_to_pcd_and_frames_list.json`` for scans ``0..num_scans-1``."""
    return [
        [
            str(1_600_000_000_000 + 1000 * i),
            {"pcd": f"{i:06d}", **{f"color_{c}": frame_id(take, i, c) for c in range(1, 7)}},
        ]
        for i in range(num_scans)
    ]


def write_take_files(
    root: Path,
    take: int,
    num_scans: int,
    cameras: dict[int, Camera],
    phases: dict | None,
    *,
    real_format: bool = False,
) -> None:
    """The per-take files that do not depend on any scan's content: frame list, calibration, phases."""
    folder = take_dir(root, take)
    extras = (
        ("annotations", *(f"segmentation_export_{c}" for c in PANOPTIC_CAMERAS))
        if real_format
        else (MASK_DIR, ANNOTATION_DIR)
    )
    for sub in ("colorimage", *extras):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / FRAME_LIST, frame_list(take, num_scans))
    for camera_id, camera in cameras.items():
        atomic_write_json(folder / f"camera0{camera_id}.json", camera.calibration())
    if phases is not None:
        (root / "phases").mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / "phases" / f"phase_to_frames_{take}.json", phases)


def write_image(root: Path, take: int, scan_index: int, camera: int, rgb: np.ndarray, quality: int) -> Path:
    path = color_image_path(root, take, camera, frame_id(take, scan_index, camera))
    _atomic_save(Image.fromarray(rgb, "RGB"), path, format="JPEG", quality=int(quality))
    return path


def write_mask(root: Path, take: int, scan_index: int, camera: int, labels: np.ndarray) -> Path:
    path = mask_path(root, take, camera, frame_id(take, scan_index, camera))
    _atomic_save(Image.fromarray(labels, "L"), path, format="PNG", compress_level=1)
    return path


def write_panoptic(root: Path, take: int, scan_index: int, camera: int, labels: np.ndarray) -> Path:
    """MM-OR's panoptic label map of one image (``segmentation_export_{c}/``, the image's stem)."""
    path = panoptic_path(root, take, camera, frame_id(take, scan_index, camera))
    _atomic_save(Image.fromarray(labels, "L"), path, format="PNG", compress_level=1)
    return path


def write_keypoints(root: Path, take: int, num_scans: int) -> Path:
    """The take's ``2D_keypoint_annotations.json`` (``"{scan}_{camera}"`` -> people), projected from the 3D poses
    through the take's calibration, as 4D-OR's keypoints are 2D views of the same people."""
    calibrations = {c: read_calibration(root, take, c) for c in range(1, 7)}
    document = {}
    for i in range(num_scans):
        people = read_poses(root, take, f"{i:06d}")
        if not people:
            continue
        for camera, calibration in calibrations.items():
            document[f"{i:06d}_{camera}"] = keypoints_2d(people, calibration)
    path = take_dir(root, take) / KEYPOINTS_FILE
    atomic_write_json(path, document)
    return path


def _atomic_save(image: Image.Image, path: Path, **kwargs) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, **kwargs)
