"""Real 4D-OR layouts: MM-OR's panoptic label ids -> per-node label maps, the 3D poses' frame, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from or_synth.data import DatasetFormatError
from or_synth.data.annotations import CLUTTER_LABEL
from or_synth.data.panoptic import node_label_map, panoptic_from_node_labels
from or_synth.data.poses import Calibration, box_label_map, person_boxes, tool_to_world, world_to_tool

NAMES = ["Patient", "human_0", "human_1", "instrument", "instrument_table", "operating_table"]
ROLES = ["Patient", "head-surgeon", "circulating-nurse", "not-a-person", "not-a-person", "not-a-person"]


def strip(*labels: int) -> np.ndarray:
    """A 3 x 4 map with one label per column-pair cell, row-major."""
    return np.array(labels, dtype=np.uint8).reshape(3, 4)


def test_classes_roles_tools_clutter_and_artefacts_map_to_nodes():
    panoptic = strip(0, 5, 10, 8, 13, 1, 3, 6, 18, 14, 16, 0)
    labels, notes = node_label_map(panoptic, NAMES, ROLES)
    # patient 1, head surgeon 2, circulator 3, drill -> instrument 4, tables 5 and 6; drape and robot clutter;
    # artefact 14 room.
    assert labels.tolist() == [[0, 1, 2, 3], [4, 5, 6, CLUTTER_LABEL], [CLUTTER_LABEL, 0, 4, 0]]
    assert notes == []


@pytest.mark.parametrize(
    ("label", "reason"),
    [(21, "unknown label id"), (9, "no person with role assistant-surgeon"), (28, "no secondary_table node")],
)
def test_unmatched_labels_are_an_error_naming_the_view_or_a_listed_skip(label, reason):
    panoptic = strip(0, 5, 10, label, 0, 0, 0, 0, 0, 0, 0, 0)
    where = {"file": "seg.png", "take": 4, "scan": "000010", "camera": 2}
    with pytest.raises(DatasetFormatError, match=reason) as caught:
        node_label_map(panoptic, NAMES, ROLES, **where)
    assert "file seg.png, take 4, scan 000010, field camera 2" in str(caught.value)
    labels, notes = node_label_map(panoptic, NAMES, ROLES, strict=False, **where)
    assert labels[0, 3] == CLUTTER_LABEL and labels[0, 1] == 1
    assert len(notes) == 1 and reason in notes[0]


def test_two_people_of_one_role_become_clutter_and_are_listed():
    roles = ["Patient", "circulating-nurse", "circulating-nurse", *ROLES[3:]]
    labels, notes = node_label_map(strip(8, 5, *[0] * 10), NAMES, roles)
    assert labels[0, 0] == CLUTTER_LABEL and labels[0, 1] == 1
    assert "2 people have role circulating-nurse" in notes[0]


def test_a_mask_of_another_aspect_than_its_image_is_refused():
    with pytest.raises(DatasetFormatError, match="different aspect"):
        node_label_map(np.zeros((30, 30), np.uint8), NAMES, ROLES, image_size=(1536, 2048))
    labels, _ = node_label_map(np.zeros((384, 512), np.uint8), NAMES, ROLES, image_size=(1536, 2048))
    assert labels.shape == (384, 512)


def test_the_stand_in_writer_is_the_inverse_for_every_node_the_map_can_name():
    nodes = np.arange(len(NAMES) + 1, dtype=np.uint8).repeat(2).reshape(1, -1)  # room + every node
    panoptic = panoptic_from_node_labels(nodes, NAMES, ROLES, {"Sawing", "CloseTo"})
    assert panoptic[0, 2 * 4] == 16  # the instrument is the saw while someone saws
    back, notes = node_label_map(panoptic, NAMES, ROLES)
    assert np.array_equal(back, nodes) and notes == []
    # Without a surgical action MM-OR labels no tool: the instrument's pixels are background.
    idle = panoptic_from_node_labels(nodes, NAMES, ROLES, {"CloseTo"})
    assert idle[0, 2 * 4] == 0


def test_pose_tool_frame_is_4d_ors_transform_and_inverts():
    # 4D-OR's coord_transform_human_pose_tool_to_OR_4D: x 25, z + 1000, negate y, swap y and z.
    assert tool_to_world(np.array([[1.0, 2.0, 3.0]])).tolist() == [[25.0, 1075.0, -50.0]]
    points = np.random.default_rng(0).normal(0, 1000, (20, 3))
    assert np.allclose(tool_to_world(world_to_tool(points)), points)


def test_person_boxes_cover_the_projected_joints_and_paint_far_to_near():
    calibration = Calibration(np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]), np.eye(4), 64, 48)
    near = np.array([[0.0, 0.0, 2000.0], [100.0, 100.0, 2000.0]])  # (x, y, depth) in camera = world here
    far = np.array([[-200.0, -100.0, 4000.0], [0.0, 0.0, 4000.0]])
    boxes = person_boxes({"human_0": near, "human_1": far}, ["human_0", "human_1", "instrument"], calibration)
    assert set(boxes) == {0, 1}
    x0, y0, x1, y1 = boxes[0]
    assert x0 <= 32 < 37 <= x1 and y0 <= 24 < 29 <= y1
    labels = box_label_map(boxes, (48, 64), depth_order=[1, 0])
    assert labels[24, 32] == 1  # the near person covers the far one where they overlap
