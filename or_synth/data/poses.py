"""4D-OR's named 3D human poses, its camera calibration, and poses projected into a camera.

- ``annotations/{scan}.json``: ``{"labels": [{"humanName", "jointName", "point3d": {"location": {"x", "y", "z"}}}]}``
  in the human pose tool's frame; world millimetres = ``x 25, z + 1000, negate y, swap y and z``
  (4D-OR ``helpers/utils.py:coord_transform_human_pose_tool_to_OR_4D``; ``../shared/docs/4dor_format.md`` §4).
  ``humanName`` "Patient" is the Patient; the other names, sorted, are ``human_0, human_1, ...`` of that scan.
- ``camera0{c}.json``: ``value0.color_parameters`` (``fov_x``/``fov_y`` are the focal lengths in pixels, ``c_x``,
  ``c_y``) and the colour camera's pose ``camera_pose @ color2depth_transform`` (camera -> world, millimetres)
  (§1.2). Lens distortion is not applied (the boxes it moves are a few pixels at 2048 x 1536).
- ``2D_keypoint_annotations.json``: ``{"{scan}_{camera}": [{"keypoints": [x, y, v] * 14}, ...]}``.

:func:`person_boxes` turns a scan's poses into a box per person node in a camera: the layout of cameras that have
no panoptic mask (3, 4, 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from or_synth.data.errors import DatasetFormatError
from or_synth.data.images import take_dir
from or_synth.data.io import read_json

JOINTS: tuple[str, ...] = (
    "head", "neck", "leftshoulder", "rightshoulder", "lefthip", "righthip", "leftelbow", "rightelbow",
    "leftwrist", "rightwrist", "leftknee", "rightknee", "leftfoot", "rightfoot",
)  # fmt: skip
KEYPOINTS_FILE = "2D_keypoint_annotations.json"
PATIENT = "Patient"


def pose_path(root: str | Path, take: int, scan: str) -> Path:
    return take_dir(Path(root), take) / "annotations" / f"{scan}.json"


def tool_to_world(points: np.ndarray) -> np.ndarray:
    """(N, 3) pose-tool coordinates -> (N, 3) 4D-OR world millimetres."""
    out = np.asarray(points, dtype=float) * 25
    out[:, 2] += 1000
    out[:, 1] *= -1
    return out[:, [0, 2, 1]]


def world_to_tool(points: np.ndarray) -> np.ndarray:
    """The inverse of :func:`tool_to_world`."""
    out = np.asarray(points, dtype=float)[:, [0, 2, 1]].copy()
    out[:, 1] *= -1
    out[:, 2] -= 1000
    return out / 25


def pose_document(people: dict[str, np.ndarray]) -> dict:
    """``annotations/{scan}.json`` of named people, each (14, 3) world millimetres in :data:`JOINTS` order."""
    labels = []
    for name, joints in people.items():
        for joint, (x, y, z) in zip(JOINTS, world_to_tool(joints), strict=True):
            labels.append({"humanName": name, "jointName": joint,
                           "point3d": {"location": {"x": float(x), "y": float(y), "z": float(z)}}})  # fmt: skip
    return {"labels": labels}


def read_poses(root: str | Path, take: int, scan: str) -> dict[str, np.ndarray] | None:
    """A scan's people as 4D-OR object names (``Patient``, ``human_k``) -> (14, 3) world millimetres (NaN for a
    joint not given); None when the scan has no pose file (4D-OR lacks some)."""
    path = pose_path(root, take, scan)
    if not path.is_file():
        return None
    document = read_json(path, what="3D pose annotation", take=take)
    try:
        by_name: dict[str, np.ndarray] = {}
        for entry in document["labels"]:
            joint = JOINTS.index(entry["jointName"]) if entry["jointName"] in JOINTS else None
            if joint is None:
                continue
            location = entry["point3d"]["location"]
            point = tool_to_world(np.array([[location["x"], location["y"], location["z"]]]))[0]
            by_name.setdefault(str(entry["humanName"]), np.full((len(JOINTS), 3), np.nan))[joint] = point
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(f"malformed pose entry: {exc}", file=path, take=take, scan=scan) from None
    # 4D-OR's object names: the Patient by name, the others human_k in sorted name order
    # (compute_instance_labels.py:L210-230).
    others = sorted(name for name in by_name if name != PATIENT)
    named = {f"human_{k}": by_name[name] for k, name in enumerate(others)}
    if PATIENT in by_name:
        named["Patient"] = by_name[PATIENT]
    return named


@dataclass(frozen=True)
class Calibration:
    """One colour camera: (3, 3) intrinsics, (4, 4) world (mm) -> camera, and the image size."""

    intrinsics: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world millimetres -> ((N, 2) pixels, (N,) depth in mm)."""
        homogeneous = np.concatenate([points, np.ones((len(points), 1))], 1)
        camera = (homogeneous @ self.world_to_camera.T)[:, :3]
        z = camera[:, 2]
        safe = np.where(z > 1e-6, z, 1e-6)
        k = self.intrinsics
        return np.stack(
            [k[0, 0] * camera[:, 0] / safe + k[0, 2], k[1, 1] * camera[:, 1] / safe + k[1, 2]], 1
        ), z


def _pose_matrix(pose: dict) -> np.ndarray:
    t, q = pose["translation"], pose["rotation"]
    x, y, z, w = (float(q[a]) for a in ("x", "y", "z", "w"))
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = [float(t["m00"]), float(t["m10"]), float(t["m20"])]
    return matrix


def read_calibration(root: str | Path, take: int, camera: int) -> Calibration:
    """``camera0{c}.json`` of a take (4D-OR ``helpers/utils.py:L50-95``)."""
    path = take_dir(Path(root), take) / f"camera0{camera}.json"
    document = read_json(path, what="camera calibration", take=take)
    try:
        value = document["value0"]
        colour = value["color_parameters"]
        intrinsics = np.array([[float(colour["fov_x"]), 0.0, float(colour["c_x"])],
                               [0.0, float(colour["fov_y"]), float(colour["c_y"])], [0.0, 0.0, 1.0]])  # fmt: skip
        camera_to_world = _pose_matrix(value["camera_pose"]) @ _pose_matrix(value["color2depth_transform"])
        return Calibration(
            intrinsics, np.linalg.inv(camera_to_world), int(colour["width"]), int(colour["height"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(f"malformed calibration: {exc}", file=path, take=take) from None


def keypoints_2d(people: dict[str, np.ndarray], calibration: Calibration) -> list[dict]:
    """The people of one view in ``2D_keypoint_annotations.json``'s shape: visibility 2 in the image, 0 outside
    (or behind the camera); people with no joint in the image are left out."""
    persons = []
    for joints in people.values():
        uv, z = calibration.project(np.nan_to_num(joints))
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < calibration.width) & (uv[:, 1] >= 0)
        inside &= (uv[:, 1] < calibration.height) & ~np.isnan(joints).any(1)
        if not inside.any():
            continue
        flat = [v for (u, w), seen in zip(uv, inside, strict=True) for v in (round(float(u), 1), round(float(w), 1), 2 if seen else 0)]  # fmt: skip
        persons.append({"keypoints": flat})
    return persons


# A person's silhouette is wider than their joints: the box grows by this share of its size on each side.
BOX_MARGIN = 0.15


def person_boxes(
    people: dict[str, np.ndarray], object_names: Sequence[str], calibration: Calibration
) -> dict[int, tuple[int, int, int, int]]:
    """Node index -> half-open pixel box ``(x0, y0, x1, y1)`` of each person node whose projected joints fall in
    the image (clipped to it, grown by :data:`BOX_MARGIN`); nodes by 4D-OR object name (``Patient``, ``human_k``)."""
    boxes = {}
    for node, name in enumerate(object_names):
        joints = people.get(name)
        if joints is None:
            continue
        joints = joints[~np.isnan(joints).any(1)]
        uv, z = calibration.project(joints)
        uv = uv[z > 0]
        if len(uv) == 0:
            continue
        (x0, y0), (x1, y1) = uv.min(0), uv.max(0)
        mx, my = BOX_MARGIN * (x1 - x0) + 2, BOX_MARGIN * (y1 - y0) + 2
        x0, x1 = max(0, int(x0 - mx)), min(calibration.width, int(np.ceil(x1 + mx)))
        y0, y1 = max(0, int(y0 - my)), min(calibration.height, int(np.ceil(y1 + my)))
        if x1 > x0 and y1 > y0:
            boxes[node] = (x0, y0, x1, y1)
    return boxes


def box_label_map(
    boxes: dict[int, tuple[int, int, int, int]],
    size: tuple[int, int],
    depth_order: Sequence[int] | None = None,
) -> np.ndarray:
    """(H, W) node label map of boxes (node + 1 inside, 0 elsewhere), painted far to near when ``depth_order``
    (nodes, far first) is given so a nearer person covers a farther one."""
    labels = np.zeros(size, dtype=np.uint8)
    for node in depth_order if depth_order is not None else sorted(boxes):
        if node in boxes:
            x0, y0, x1, y1 = boxes[node]
            labels[y0:y1, x0:x1] = node + 1
    return labels
