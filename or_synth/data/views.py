"""One row per (scan, camera): the unit the generator trains on and samples.

A :class:`~or_synth.data.FourDORDataset` holds one graph per scan with all its camera images; the autoencoder
and the denoiser see single views. :func:`load_views` reads a split once into memory (uint8, small at the CPU
sizes), with each view's layout where the dataset has one (:mod:`or_synth.data.layout_maps`: a rendered
dataset's instance masks; real 4D-OR's panoptic maps for cameras 1, 2, 5 and projected person boxes elsewhere).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Data, InMemoryDataset
from tqdm import tqdm

from or_synth.data.annotations import mask_path
from or_synth.data.images import frame_index
from or_synth.data.layout_maps import RealLayouts, view_layout
from or_synth.data.panoptic import has_panoptic

log = logging.getLogger(__name__)


@dataclass
class ViewSet:
    """Every configured camera view of every scan of a split.

    Attributes:
        graphs: the split's scene graphs (no images attached), one per scan.
        images: (M, 3, H, W) uint8, M = scans x cameras, scan-major.
        graph_index: (M,) row of ``graphs`` each view shows.
        cameras: (M,) camera id 1..6 of each view.
        masks: (M, H, W) uint8 layouts (node index + 1, 0 room, 255 clutter) or None when the dataset has none.
        has_layout: (M,) bool, the view has a layout (a view without one has an all-room mask; training draws it
            graph-only), or None with ``masks``.
        layout_notes: panoptic labels that matched no node, one line per view (``strict=false`` and ambiguous roles).
    """

    graphs: list[Data]
    images: torch.Tensor
    graph_index: torch.Tensor
    cameras: torch.Tensor
    masks: torch.Tensor | None
    has_layout: torch.Tensor | None = None
    layout_notes: list[str] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def has_instance_masks(dataset) -> bool:
    """True when the dataset was rendered with instance masks (checked on its first scan and camera)."""
    graph = InMemoryDataset.get(dataset, 0)
    take, scan = int(graph.take), graph.scan
    frame = frame_index(dataset.dataset_root, take).frame_id(scan, dataset.cameras[0])
    return mask_path(dataset.dataset_root, take, dataset.cameras[0], frame).is_file()


def has_layouts(dataset) -> bool:
    """True when the dataset has layouts: a rendered dataset's instance masks, or real 4D-OR's panoptic maps
    (checked on its first scan's take)."""
    return has_instance_masks(dataset) or has_panoptic(
        dataset.dataset_root, int(InMemoryDataset.get(dataset, 0).take)
    )


def resize_mask(mask: np.ndarray, size: tuple[int, int] | None) -> torch.Tensor:
    """(H, W) uint8 label map resized with nearest neighbour (labels must not blend)."""
    tensor = torch.from_numpy(mask)
    if size is None or tuple(tensor.shape) == tuple(size):
        return tensor
    return F.interpolate(tensor[None, None].float(), size=tuple(size), mode="nearest-exact")[0, 0].to(
        torch.uint8
    )


def load_views(
    dataset, *, masks: bool | None = None, limit: int | None = None, progress: bool = True
) -> ViewSet:
    """Read all views of ``dataset`` (a :class:`FourDORDataset` built with ``load_images=True``).

    Args:
        masks: read the layouts (True), skip them (False), or read them when the dataset has them (None).
        limit: only the first ``limit`` scans (tests, quick previews).

    Raises:
        FileNotFoundError: ``masks=True`` on a dataset without layouts (names what was looked for).
    """
    if not dataset.load_images:
        raise ValueError("load_views needs a dataset built with load_images=True")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    want_masks = has_layouts(dataset) if masks is None else masks
    if masks and not has_layouts(dataset):
        raise FileNotFoundError(
            f"{dataset.dataset_root} has no layouts: neither a rendered dataset's instance_masks/ nor 4D-OR's panoptic "
            "segmentation_export_{1,2,5}/ folders (MM-OR's 4D-OR_panoptic_segmentations.zip, unpacked into each "
            "take folder); train graph-only with ldm.layout=false"
        )
    real = RealLayouts(dataset.dataset_root, strict=getattr(dataset, "strict", True))
    graphs, images, graph_index, cameras, all_masks, present = [], [], [], [], [], []
    for i in tqdm(range(count), desc=f"reading {dataset.split} views", disable=not progress, leave=False):
        graph = InMemoryDataset.get(dataset, i)  # the graph alone: images are read below
        take, scan = int(graph.take), graph.scan
        graphs.append(graph)
        images.append(dataset.read_images(take, scan))
        graph_index.extend([i] * len(dataset.cameras))
        cameras.extend(dataset.cameras)
        if want_masks:
            index = frame_index(dataset.dataset_root, take)
            size = tuple(images[-1].shape[-2:])
            for camera in dataset.cameras:
                mask = view_layout(dataset.dataset_root, graph, camera, index.frame_id(scan, camera), real)
                present.append(mask is not None)
                all_masks.append(
                    torch.zeros(size, dtype=torch.uint8) if mask is None else resize_mask(mask, size)
                )
    if want_masks and real.notes:  # strict=false skips and ambiguous roles: listed, never silent
        log.warning(
            "%s: %d panoptic label(s) matched no node and were drawn as clutter:\n  %s",
            dataset.dataset_root, len(real.notes), "\n  ".join(real.notes[:20])
            + ("" if len(real.notes) <= 20 else f"\n  ... and {len(real.notes) - 20} more"),
        )  # fmt: skip
    return ViewSet(
        graphs=graphs,
        images=torch.cat(images),
        graph_index=torch.tensor(graph_index, dtype=torch.long),
        cameras=torch.tensor(cameras, dtype=torch.long),
        masks=torch.stack(all_masks) if want_masks else None,
        has_layout=torch.tensor(present, dtype=torch.bool) if want_masks else None,
        layout_notes=real.notes if want_masks else None,
    )
