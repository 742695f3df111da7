"""One row per (scan, camera): the unit the generator trains on and samples.

A :class:`~or_synth.data.FourDORDataset` holds one graph per scan with all its camera images; the autoencoder
and the denoiser see single views. :func:`load_views` reads a split once into memory (uint8, small at the CPU
sizes), with the instance masks of rendered datasets where they exist (4D-OR has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Data, InMemoryDataset
from tqdm import tqdm

from or_synth.data.annotations import mask_path, read_instance_mask
from or_synth.data.images import frame_index


@dataclass
class ViewSet:
    """Every configured camera view of every scan of a split.

    Attributes:
        graphs: the split's scene graphs (no images attached), one per scan.
        images: (M, 3, H, W) uint8, M = scans x cameras, scan-major.
        graph_index: (M,) row of ``graphs`` each view shows.
        cameras: (M,) camera id 1..6 of each view.
        masks: (M, H, W) uint8 instance masks (node index + 1, 0 room, 255 clutter) or None when the dataset
            has none (real 4D-OR).
    """

    graphs: list[Data]
    images: torch.Tensor
    graph_index: torch.Tensor
    cameras: torch.Tensor
    masks: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def has_instance_masks(dataset) -> bool:
    """True when the dataset was rendered with instance masks (checked on its first scan and camera)."""
    graph = InMemoryDataset.get(dataset, 0)
    take, scan = int(graph.take), graph.scan
    frame = frame_index(dataset.dataset_root, take).frame_id(scan, dataset.cameras[0])
    return mask_path(dataset.dataset_root, take, dataset.cameras[0], frame).is_file()


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
        masks: read instance masks (True), skip them (False), or read them when present (None).
        limit: only the first ``limit`` scans (tests, quick previews).
    """
    if not dataset.load_images:
        raise ValueError("load_views needs a dataset built with load_images=True")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    want_masks = has_instance_masks(dataset) if masks is None else masks
    graphs, images, graph_index, cameras, all_masks = [], [], [], [], []
    for i in tqdm(range(count), desc=f"reading {dataset.split} views", disable=not progress, leave=False):
        graph = InMemoryDataset.get(dataset, i)  # the graph alone: images are read below
        take, scan = int(graph.take), graph.scan
        graphs.append(graph)
        images.append(dataset.read_images(take, scan))
        graph_index.extend([i] * len(dataset.cameras))
        cameras.extend(dataset.cameras)
        if want_masks:
            index = frame_index(dataset.dataset_root, take)
            for camera in dataset.cameras:
                mask = read_instance_mask(dataset.dataset_root, take, camera, index.frame_id(scan, camera))
                all_masks.append(resize_mask(mask, dataset.image_size))
    return ViewSet(
        graphs=graphs,
        images=torch.cat(images),
        graph_index=torch.tensor(graph_index, dtype=torch.long),
        cameras=torch.tensor(cameras, dtype=torch.long),
        masks=torch.stack(all_masks) if want_masks else None,
    )
