"""Layout-predictor targets from rendered annotations: node boxes, visibility, mask crops; the mean-box
baseline and paired IoU."""

from __future__ import annotations

import torch

from or_synth.data.layout_targets import LayoutTargets, MeanBoxBaseline, node_targets, paired_box_iou


def test_node_targets_crop_each_mask_to_its_box():
    labels = torch.zeros(8, 10, dtype=torch.uint8)
    labels[2:6, 4:8] = 1  # node 0 fills its box
    labels[0:4, 0:2] = 3  # node 2: the left column of its box only
    labels[0:4, 2:4] = 255  # clutter inside node 2's box
    boxes, visible, crops = node_targets(labels, {0: (4, 2, 8, 6), 2: (0, 0, 4, 4)}, num_nodes=3, mask_size=4)
    assert visible.tolist() == [True, False, True]
    assert torch.allclose(boxes[0], torch.tensor([0.4, 0.25, 0.8, 0.75]))
    assert boxes[1].eq(0).all() and crops[1].eq(0).all()
    assert crops[0].eq(255).all()
    assert crops[2][:, :2].eq(255).all() and crops[2][:, 2:].eq(0).all()


def test_paired_iou_and_the_mean_box_baseline():
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    assert torch.allclose(paired_box_iou(a, b), torch.tensor([1.0, 0.25]))
    # Two views (cameras 1 and 2) of one two-node graph; node 1 is invisible in camera 2.
    targets = LayoutTargets(
        graphs=[None],
        graph_index=torch.tensor([0, 0, 0]),
        cameras=torch.tensor([1, 2, 1]),
        node_ptr=torch.tensor([0, 2, 4, 6]),
        boxes=torch.tensor(
            [[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 1.0, 1.0], [0.2, 0.2, 0.4, 0.4], [0, 0, 0, 0]]
            + [[0.2, 0.2, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]]
        ),
        visible=torch.tensor([True, True, True, False, True, True]),
        crops=torch.zeros(6, 4, 4, dtype=torch.uint8),
    )
    classes = torch.tensor([7, 9, 7, 9, 7, 9])
    baseline = MeanBoxBaseline(targets, classes)
    predicted = baseline.predict(targets, classes)
    assert torch.allclose(predicted[0], torch.tensor([0.1, 0.1, 0.3, 0.3]))  # class 7, camera 1
    assert torch.allclose(predicted[2], torch.tensor([0.2, 0.2, 0.4, 0.4]))  # class 7, camera 2
    # Class 9 was never seen by camera 2: its mean over all cameras.
    assert torch.allclose(predicted[3], torch.tensor([0.5, 0.5, 0.95, 0.95]))
    assert torch.equal(targets.rows(torch.tensor([2, 0])), torch.tensor([4, 5, 0, 1]))
