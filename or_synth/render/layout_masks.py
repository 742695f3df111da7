"""Instance masks of any scene graph from the renderer's 3D layout: a layout source for graphs without images.

The graph is placed in the room once, exactly as ``python -m or_synth.render from_json=...`` places it, and
that one scene is projected into each requested camera, so the label maps of the views agree. Values as in
a rendered dataset's ``instance_masks/``: node index + 1, 0 room (floor, walls), 255 clutter.

The scene of ``(seed, take, scan)`` is the renderer's own: with the default ``camera_jitter`` and
``layout_tries`` the maps equal the masks that ``render from_json=FILE seed=SEED`` writes at that size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from or_synth.data.errors import DatasetFormatError
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import CAMERAS
from or_synth.render.layout import check_drawable
from or_synth.render.painter import render_view
from or_synth.render.pipeline import JSON_LAYOUT_TRIES, ScanJob, scan_scene
from or_synth.render.room import CAMERA_JITTER


def check_renderable(record: SceneGraphRecord, *, file: str | Path | None = None) -> None:
    """Raise :class:`DatasetFormatError` (naming file, take, scan, field) when :func:`layout_masks` cannot
    draw the graph: the renderer's own :func:`~or_synth.render.layout.check_drawable`, plus a take that can
    seed it."""
    if record.take < 0:  # takes seed the scene and the cameras; numpy seeds are non-negative
        raise DatasetFormatError(
            f"take must be >= 0 to be drawn, got {record.take}",
            file=file,
            take=record.take,
            scan=record.scan,
            field="take_idx",
        )
    check_drawable(record, file=file)


def layout_masks(
    record: SceneGraphRecord,
    cameras: Sequence[int] = CAMERAS,
    image_size: tuple[int, int] = (128, 128),
    seed: int = 0,
    *,
    file: str | Path | None = None,
    camera_jitter: float = CAMERA_JITTER,
    layout_tries: int = JSON_LAYOUT_TRIES,
) -> np.ndarray:
    """Label maps of one graph in the given cameras, from one 3D placement shared by all of them.

    Args:
        record: the scene graph (a data-layer :class:`SceneGraphRecord`).
        cameras: camera ids in 1..6, in the order of the output.
        image_size: ``(H, W)`` of every map.
        seed: non-negative; the scene derives from ``(seed, take, scan)`` and the cameras from
            ``(seed, take)``, as in the renderer. Same arguments, same maps.
        file: named in errors (the graph's relationships file).
        camera_jitter: metres the take's cameras move from the rig (the renderer's default).
        layout_tries: placements tried, keeping the one whose CloseTo pairs fit the graph best.

    Returns:
        (V, H, W) uint8: node index + 1, 0 room, 255 clutter (V = ``len(cameras)``).

    Raises:
        DatasetFormatError: the renderer cannot draw the graph (naming file, take, scan and field).
        ValueError: a camera outside 1..6, a negative seed or a bad image size.
    """
    unknown = [c for c in cameras if c not in CAMERAS]
    if unknown or not cameras:
        raise ValueError(f"cameras must be a non-empty list of 4D-OR cameras 1..6, got {list(cameras)}")
    height, width = (int(v) for v in image_size)
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive (H, W), got {tuple(image_size)}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0 (it seeds numpy's generators), got {seed}")
    check_renderable(record, file=file)
    job = ScanJob(
        root="",  # nothing is written
        take=record.take,
        scan_index=int(record.scan),
        phase=None,
        record=record,
        seed=int(seed),
        rare_action_boost=0.0,
        image_size=(height, width),
        jpeg_quality=(0, 0),
        camera_jitter=float(camera_jitter),
        layout_tries=int(layout_tries),
    )
    _, scene, style, views, rng, _ = scan_scene(job)
    # Labels come from the rasterised face ids before any noise: no draw from rng changes them, so a camera's
    # map does not depend on which other cameras were asked for.
    return np.stack([render_view(scene, views[c], style, rng, noise=False)[1] for c in cameras])
