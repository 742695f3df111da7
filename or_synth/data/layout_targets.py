"""Training targets of the layout predictor: per (scan, camera) view, every node's box, visibility and mask.

Read from a rendered dataset's extras (:mod:`or_synth.data.annotations`): the per-camera node boxes of
``or_synth_annotations/{scan}.json`` and the ``instance_masks/`` label maps (node index + 1). A node without a box
in a camera is not visible there. Each visible node's mask target is its instance mask cropped to exactly its true
box's pixels and resized to M x M (antialiased bilinear: soft where the mask's edge falls inside a cell), at the
rendered resolution; cropping first keeps pixels outside the box from bleeding into the border cells. Boxes are normalised by the rendered width and height,
so they do not depend on the size a model is trained or sampled at.

Also here: the per-class mean-box baseline the predictor is measured against, and the paired box IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data, InMemoryDataset
from tqdm import tqdm

from or_synth.data.annotations import annotation_path, node_boxes, read_instance_mask, read_scan_annotation
from or_synth.data.errors import DatasetFormatError
from or_synth.data.images import frame_index
from or_synth.data.layout_maps import RealLayouts
from or_synth.data.panoptic import PANOPTIC_CAMERAS, has_panoptic


@dataclass
class LayoutTargets:
    """Every configured camera view of every scan of a split, with per-node targets.

    Attributes:
        graphs: the split's scene graphs, one per scan.
        graph_index: (V,) row of ``graphs`` each view shows. cameras: (V,) camera id of each view.
        node_ptr: (V + 1,) view v's nodes are rows ``node_ptr[v]:node_ptr[v + 1]`` below, in graph node order.
        boxes: (P, 4) normalised ``(x0, y0, x1, y1)`` of each node (zeros where not visible).
        visible: (P,) bool, the node has a box in that camera.
        crops: (P, M, M) uint8 mask targets (0..255 for 0..1; zeros where not visible).
    """

    graphs: list[Data]
    graph_index: torch.Tensor
    cameras: torch.Tensor
    node_ptr: torch.Tensor
    boxes: torch.Tensor
    visible: torch.Tensor
    crops: torch.Tensor

    def __len__(self) -> int:
        return int(self.graph_index.shape[0])

    def rows(self, views: torch.Tensor) -> torch.Tensor:
        """Node rows of ``views`` (indices into this set), in the order ``Batch.from_data_list`` lists them."""
        starts, ends = self.node_ptr[views], self.node_ptr[views + 1]
        return torch.cat([torch.arange(int(s), int(e)) for s, e in zip(starts, ends, strict=True)])

    def batch(self, views: torch.Tensor) -> tuple[Batch, torch.Tensor, torch.Tensor]:
        """(graphs as one PyG batch, their cameras (B,), their node rows) of the given view indices."""
        graphs = Batch.from_data_list([self.graphs[int(g)] for g in self.graph_index[views]])
        return graphs, self.cameras[views], self.rows(views)

    def crops_float(self, rows: torch.Tensor) -> torch.Tensor:
        return self.crops[rows].float() / 255


def collect_targets(graphs, graph_index, cameras, counts, boxes, visible, crops) -> LayoutTargets:
    """A :class:`LayoutTargets` of per-view lists (each view's node count, boxes, visibility and crops)."""
    return LayoutTargets(
        graphs=graphs,
        graph_index=torch.tensor(graph_index, dtype=torch.long),
        cameras=torch.tensor(cameras, dtype=torch.long),
        node_ptr=torch.tensor([0, *np.cumsum(counts).tolist()], dtype=torch.long),
        boxes=torch.cat(boxes),
        visible=torch.cat(visible),
        crops=torch.cat(crops),
    )


def require_annotations(dataset) -> bool:
    """True for a rendered dataset (per-node boxes and instance masks), False for real 4D-OR with MM-OR's panoptic
    maps; a clear error when the dataset has neither."""
    graph = InMemoryDataset.get(dataset, 0)
    path = annotation_path(dataset.dataset_root, int(graph.take), graph.scan)
    if path.is_file():
        return True
    if has_panoptic(dataset.dataset_root, int(graph.take)):
        return False
    raise FileNotFoundError(
        f"{path} is missing and take {int(graph.take)} has no panoptic segmentation_export_{{1,2,5}}/ folders: the "
        "layout stage trains on a rendered dataset's per-node boxes and instance masks, or on real 4D-OR's "
        "panoptic maps (MM-OR's 4D-OR_panoptic_segmentations.zip, unpacked into each take folder)"
    )


def load_layout_targets(
    dataset, mask_size: int, *, limit: int | None = None, progress: bool = True
) -> LayoutTargets:
    """Read the targets of every view of ``dataset`` (a :class:`~or_synth.data.FourDORDataset` of a rendered
    dataset; its images are not read).

    Raises:
        FileNotFoundError: the dataset has no ``or_synth_annotations`` (names the missing file).
        DatasetFormatError: a later annotation or instance mask is missing or malformed.
    """
    if not require_annotations(dataset):
        return _panoptic_targets(dataset, mask_size, limit=limit, progress=progress)
    root, cameras = dataset.dataset_root, list(dataset.cameras)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    graphs, graph_index, view_cameras, counts = [], [], [], []
    boxes, visible, crops = [], [], []
    for i in tqdm(range(count), desc=f"reading {dataset.split} layouts", disable=not progress, leave=False):
        graph = InMemoryDataset.get(dataset, i)
        take, scan, n = int(graph.take), graph.scan, int(graph.num_nodes)
        graphs.append(graph)
        annotation = read_scan_annotation(root, take, scan)
        for camera in cameras:
            view = annotation.views.get(camera)
            if view is None:
                raise DatasetFormatError(
                    f"no annotation of camera {camera}",
                    file=annotation_path(root, take, scan),
                    take=take,
                    scan=scan,
                    field="cameras",
                )
            labels = torch.from_numpy(read_instance_mask(root, take, camera, view.frame_id))
            b, v, c = node_targets(labels, view.boxes, n, mask_size)
            boxes.append(b)
            visible.append(v)
            crops.append(c)
            graph_index.append(i)
            view_cameras.append(camera)
            counts.append(n)
    return collect_targets(graphs, graph_index, view_cameras, counts, boxes, visible, crops)


def _panoptic_targets(dataset, mask_size: int, *, limit: int | None, progress: bool) -> LayoutTargets:
    """Targets of real 4D-OR: the views with a panoptic map (cameras 1, 2, 5 where the frame has one), every node's
    box and mask read off the map. Views without one are left out rather than taught as "nothing visible"."""
    root = dataset.dataset_root
    real = RealLayouts(root, strict=getattr(dataset, "strict", True), poses=False)
    cameras = [c for c in dataset.cameras if c in PANOPTIC_CAMERAS]
    if not cameras:
        raise ValueError(
            f"the layout stage on real 4D-OR trains on the panoptic cameras {list(PANOPTIC_CAMERAS)}, but "
            f"dataset.cameras={list(dataset.cameras)} has none of them"
        )
    count = len(dataset) if limit is None else min(limit, len(dataset))
    graphs, graph_index, view_cameras, counts, boxes, visible, crops = [], [], [], [], [], [], []
    for i in tqdm(
        range(count), desc=f"reading {dataset.split} panoptic layouts", disable=not progress, leave=False
    ):
        graph = InMemoryDataset.get(dataset, i)
        take, scan, n = int(graph.take), graph.scan, int(graph.num_nodes)
        graphs.append(graph)
        index = frame_index(root, take)
        for camera in cameras:
            labels = real.view(graph, camera, index.frame_id(scan, camera))
            if labels is None:
                continue
            pixel_boxes = {int(k) - 1: v for k, v in node_boxes(labels, n)[0].items()}
            b, v, c = node_targets(torch.from_numpy(labels), pixel_boxes, n, mask_size)
            boxes.append(b), visible.append(v), crops.append(c)
            graph_index.append(i), view_cameras.append(camera), counts.append(n)
    if not boxes:
        raise FileNotFoundError(
            f"no panoptic map under {root} for cameras {cameras} of the {dataset.split} split"
        )
    return collect_targets(graphs, graph_index, view_cameras, counts, boxes, visible, crops)


def node_targets(
    labels: torch.Tensor, pixel_boxes: dict[int, Sequence[int]], num_nodes: int, mask_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One view's targets: (n, 4) normalised boxes, (n,) visibility, (n, M, M) uint8 mask crops.

    Args:
        labels: (H, W) uint8 instance mask (node index + 1). pixel_boxes: node -> half-open pixel box.
    """
    height, width = labels.shape
    boxes = torch.zeros(num_nodes, 4)
    visible = torch.zeros(num_nodes, dtype=torch.bool)
    crops = torch.zeros(num_nodes, mask_size, mask_size, dtype=torch.uint8)
    nodes = sorted(k for k in pixel_boxes if 0 <= k < num_nodes)
    if not nodes:
        return boxes, visible, crops
    for k in nodes:
        x0, y0, x1, y1 = (int(v) for v in pixel_boxes[k])
        crop = (labels[y0:y1, x0:x1] == k + 1).float()[None, None]  # (1, 1, h, w): the box's pixels only
        resized = F.interpolate(crop, size=(mask_size, mask_size), mode="bilinear", antialias=True)
        crops[k] = (resized[0, 0].clamp(0, 1) * 255).round().to(torch.uint8)
        boxes[k] = torch.tensor([x0 / width, y0 / height, x1 / width, y1 / height])
        visible[k] = True
    return boxes, visible, crops


def paired_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) IoU of box ``a[i]`` with box ``b[i]`` (``torchvision.ops.box_iou`` is all-pairs, N x N)."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(-1)
    return inter / (area_a + area_b - inter).clamp_min(1e-12)


class MeanBoxBaseline:
    """The per-class mean-box baseline: for a node of class c in camera k, the mean training box of class c in
    camera k (visible nodes only); the class's mean over all cameras where camera k never saw it, and the
    overall mean box for a class never seen in training.

    Args:
        classes: (P,) class id of every node row of ``targets`` (the caller decides what a class is, e.g. the
            encoder's node label: role for people, object class otherwise).
    """

    def __init__(self, targets: LayoutTargets, classes: torch.Tensor) -> None:
        cameras = self._node_cameras(targets)
        keep = targets.visible
        self.boxes: dict[tuple[int, int], torch.Tensor] = {}
        self.by_class: dict[int, torch.Tensor] = {}
        keys = torch.stack([classes[keep], cameras[keep]], 1)
        for c, k in torch.unique(keys, dim=0).tolist():
            chosen = keep & (classes == c) & (cameras == k)
            self.boxes[(c, k)] = targets.boxes[chosen].mean(0)
        for c in torch.unique(classes[keep]).tolist():
            self.by_class[c] = targets.boxes[keep & (classes == c)].mean(0)
        self.overall = targets.boxes[keep].mean(0) if keep.any() else torch.tensor([0.25, 0.25, 0.75, 0.75])

    @staticmethod
    def _node_cameras(targets: LayoutTargets) -> torch.Tensor:
        counts = targets.node_ptr[1:] - targets.node_ptr[:-1]
        return torch.repeat_interleave(targets.cameras, counts)

    def predict(self, targets: LayoutTargets, classes: torch.Tensor) -> torch.Tensor:
        """(P, 4) the baseline's box for every node row of ``targets`` (``classes`` as in the constructor)."""
        cameras = self._node_cameras(targets)
        rows = [
            self.boxes.get((c, k), self.by_class.get(c, self.overall))
            for c, k in zip(classes.tolist(), cameras.tolist(), strict=True)
        ]
        return torch.stack(rows) if rows else torch.zeros(0, 4)
