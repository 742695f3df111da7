"""A view's layout: the node label map (node index + 1, 0 room, 255 clutter) of one (scan, camera), from whatever
the dataset has.

- A rendered dataset: its ``instance_masks/`` (:mod:`or_synth.data.annotations`).
- Real 4D-OR: MM-OR's panoptic maps for cameras 1, 2, 5 (:mod:`or_synth.data.panoptic`); for the other cameras, and
  frames whose panoptic map is missing, the named 3D human poses projected through the camera's calibration give
  each person node a box (:mod:`or_synth.data.poses`); objects there stay graph-only (absent from the map).
- Nothing of these: no layout (``None``); the generator trains that view graph-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch_geometric.data import Data

from or_synth.data.annotations import mask_path, read_instance_mask
from or_synth.data.images import color_image_path
from or_synth.data.panoptic import (
    PANOPTIC_CAMERAS,
    node_label_map,
    panoptic_path,
    read_panoptic,
)
from or_synth.data.poses import box_label_map, person_boxes, read_calibration, read_poses
from or_synth.data.vocabulary import Vocabulary


def names_and_roles(graph: Data, vocabulary: Vocabulary | None = None) -> tuple[list[str], list[str]]:
    """A PyG scene graph's node class names and roles (the vocabulary's strings)."""
    vocabulary = vocabulary or Vocabulary()
    names = [vocabulary.object_classes[int(c)] for c in graph.node_class]
    roles = [vocabulary.roles[int(r)] for r in graph.node_role]
    return names, roles


@dataclass
class RealLayouts:
    """Layouts of real 4D-OR views: panoptic maps where they exist, projected person boxes elsewhere.

    Attributes:
        strict: an unknown panoptic id or a labelled role the graph lacks is an error (False: clutter, noted).
        poses: fall back to the 3D poses where a view has no panoptic map.
        notes: what was not matched, one line per view (``take T scan S camera C: ...``).
    """

    root: Path
    strict: bool = True
    poses: bool = True
    notes: list[str] = field(default_factory=list)

    def view(self, graph: Data, camera: int, frame_id: str) -> np.ndarray | None:
        names, roles = names_and_roles(graph)
        return self.view_of(int(graph.take), graph.scan, names, roles, camera, frame_id)

    def view_of(
        self, take: int, scan: str, names: list[str], roles: list[str], camera: int, frame_id: str
    ) -> np.ndarray | None:
        """The node label map of one view of a scan whose nodes are ``names`` / ``roles`` (None: no layout)."""
        path = panoptic_path(self.root, take, camera, frame_id)
        if camera in PANOPTIC_CAMERAS and path.is_file():
            labels, notes = node_label_map(
                read_panoptic(self.root, take, camera, frame_id, scan=scan), names, roles,
                image_size=image_size(self.root, take, camera, frame_id), strict=self.strict, file=path, take=take,
                scan=scan, camera=camera,
            )  # fmt: skip
            self.notes += [f"take {take} scan {scan} camera {camera}: {note}" for note in notes]
            return labels
        if not self.poses:
            return None
        people = read_poses(self.root, take, scan)
        if not people:
            return None
        calibration = read_calibration(self.root, take, camera)
        boxes = person_boxes(people, names, calibration)
        if not boxes:
            return None

        def depth(node: int) -> float:
            joints = people[names[node]]
            return float(np.mean(calibration.project(joints[~np.isnan(joints).any(1)])[1]))

        # Far to near, so the nearer person's box covers the farther one's.
        order = sorted(boxes, key=lambda node: -depth(node))
        return box_label_map(boxes, (calibration.height, calibration.width), order)


def image_size(root: Path, take: int, camera: int, frame_id: str) -> tuple[int, int] | None:
    """(H, W) of a colour image from its header (no decoding), None when it is not there."""
    path = color_image_path(Path(root), take, camera, frame_id)
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (FileNotFoundError, OSError):
        return None


def view_layout(
    root: str | Path, graph: Data, camera: int, frame_id: str, real: RealLayouts | None = None
) -> np.ndarray | None:
    """The node label map of one view (see the module docstring), or None when the dataset has no layout there."""
    take = int(graph.take)
    if mask_path(root, take, camera, frame_id).is_file():
        return read_instance_mask(root, take, camera, frame_id)
    return (real or RealLayouts(Path(root))).view(graph, camera, frame_id)
