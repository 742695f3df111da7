"""The operating room as a 3D floor plan: room size, furniture footprints and six ceiling cameras.

World frame: metres, x along the operating table (head end at -x), y across it, z up, origin on the floor
under the table centre. Cameras follow OpenCV's convention (x right, y down, z forward), like 4D-OR's
Kinects, which hang from the ceiling around the room (``../shared/docs/4dor_format.md`` §1.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from or_synth.data.vocabulary import CAMERAS

ROOM_X = (-3.2, 3.2)
ROOM_Y = (-2.6, 2.6)
ROOM_HEIGHT = 3.0

# Furniture: footprint size (x, y) and height in metres. The Patient lies along x on the operating table.
FURNITURE_SIZE: dict[str, tuple[float, float, float]] = {
    "operating_table": (2.0, 0.62, 0.85),
    "anesthesia_equipment": (0.6, 0.55, 1.45),
    "instrument_table": (1.0, 0.55, 0.9),
    "secondary_table": (0.8, 0.6, 0.85),
}
TABLE_TOP = FURNITURE_SIZE["operating_table"][2]
# The operated knee (right leg, bent, 4D-OR's takes are knee replacements) in table coordinates.
KNEE = np.array([0.38, 0.12, TABLE_TOP + 0.33])

# Camera positions on the ceiling (x, y, z) and where they look: around the table, from different sides.
_CAMERA_RIG: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    1: ((-2.7, -2.1, 2.75), (0.1, 0.0, 0.8)),
    2: ((2.8, -2.0, 2.75), (0.2, 0.0, 0.8)),
    3: ((2.7, 2.1, 2.75), (0.2, 0.0, 0.8)),
    4: ((-2.6, 2.2, 2.75), (0.0, 0.0, 0.8)),
    5: ((0.6, -2.45, 2.8), (0.3, 0.1, 0.7)),
    6: ((-0.3, 2.45, 2.8), (0.2, -0.1, 0.7)),
}
HORIZONTAL_FOV_DEG = 64.0
CAMERA_JITTER = 0.08  # metres; the default of configs/render/config.yaml


@dataclass(frozen=True)
class Camera:
    """A pinhole camera. ``rotation`` maps world to camera axes; ``position`` is the centre in the world."""

    camera_id: int
    width: int
    height: int
    intrinsics: np.ndarray  # (3, 3)
    rotation: np.ndarray  # (3, 3) world -> camera
    position: np.ndarray  # (3,)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 3) camera coordinates (z = depth along the optical axis)."""
        return (points - self.position) @ self.rotation.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) world points -> ((..., 2) pixel coordinates, (...,) depth)."""
        cam = self.to_camera(points)
        z = cam[..., 2]
        safe = np.where(z > 1e-3, z, 1e-3)
        k = self.intrinsics
        u = k[0, 0] * cam[..., 0] / safe + k[0, 2]
        v = k[1, 1] * cam[..., 1] / safe + k[1, 2]
        return np.stack([u, v], axis=-1), z

    def calibration(self) -> dict:
        """Calibration in 4D-OR's ``camera0{c}.json`` form (``value0``; §1.2), plus plain matrices.

        4D-OR stores ``K[r][c]`` as ``m{c}{r}``, uses ``fov_x/fov_y`` as focal lengths in pixels and a
        camera -> world pose (translation in millimetres, rotation as a quaternion). Our colour camera is the
        depth camera, so ``color2depth_transform`` is the identity.
        """
        k = self.intrinsics
        cam_to_world = self.rotation.T
        qx, qy, qz, qw = _quaternion(cam_to_world)
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = self.rotation
        world_to_camera[:3, 3] = -self.rotation @ self.position
        return {
            "value0": {
                "color_parameters": {
                    "intrinsics_matrix": {f"m{c}{r}": float(k[r, c]) for r in range(3) for c in range(3)},
                    "fov_x": float(k[0, 0]),
                    "fov_y": float(k[1, 1]),
                    "c_x": float(k[0, 2]),
                    "c_y": float(k[1, 2]),
                    "width": self.width,
                    "height": self.height,
                    "radial_distortion": {f"m{i}0": 0.0 for i in range(6)},
                    "tangential_distortion": {"m00": 0.0, "m10": 0.0},
                },
                "camera_pose": {
                    "translation": {f"m{i}0": float(v * 1000.0) for i, v in enumerate(self.position)},
                    "rotation": {"x": qx, "y": qy, "z": qz, "w": qw},
                },
                "color2depth_transform": {
                    "translation": {"m00": 0.0, "m10": 0.0, "m20": 0.0},
                    "rotation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
                },
            },
            "or_synth": {
                "units": "metres (camera_pose translation above: millimetres, as in 4D-OR)",
                "intrinsics": k.tolist(),
                "world_to_camera": world_to_camera.tolist(),
            },
        }


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World -> camera rotation (rows: camera x right, y down, z forward) for a camera looking at target."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


TAKE_RIG_SEED = 1_000_003  # a take's camera mount is drawn from (seed, take, this)


def take_cameras(
    width: int, height: int, seed: int, take: int, jitter: float = CAMERA_JITTER
) -> dict[int, Camera]:
    """The six cameras of take ``take``, mounted as the renderer mounts them for ``(seed, take)``: every writer of
    a take's calibration (render, export, sequence) and every layout drawn for it use the same rig."""
    return make_cameras(width, height, np.random.default_rng([int(seed), int(take), TAKE_RIG_SEED]), jitter)


def make_cameras(
    width: int, height: int, rng: np.random.Generator | None = None, jitter: float = CAMERA_JITTER
) -> dict[int, Camera]:
    """The six ceiling cameras of one take; ``rng`` jitters their poses a little (each take is re-mounted)."""
    focal = (width / 2) / np.tan(np.radians(HORIZONTAL_FOV_DEG) / 2)
    intrinsics = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    cameras = {}
    for camera_id in CAMERAS:
        position, target = (np.array(v, dtype=float) for v in _CAMERA_RIG[camera_id])
        if rng is not None:
            position = position + rng.uniform(-jitter, jitter, 3) * np.array([1, 1, 0.5])
            target = target + rng.uniform(-jitter, jitter, 3)
        cameras[camera_id] = Camera(camera_id, width, height, intrinsics, look_at(position, target), position)
    return cameras


def _quaternion(matrix: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix -> quaternion (x, y, z, w)."""
    m = matrix
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    return float(x), float(y), float(z), float(w)
