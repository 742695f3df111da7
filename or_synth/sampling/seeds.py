"""Per-image seeds, the items a job draws, their batches, and the one drawing call.

Every image has its own seed, derived from ``(seed, take, scan, camera, sample)``, and is drawn from its own CPU
generator, so an image does not depend on the batch it was drawn in, on ``limit``, on resuming, or on the number
of processes sharing the job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from PIL import Image
from torch_geometric.data import Data

from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.generator import ORScenePipeline

IMAGE_DIR = "images"
LAYOUT_DIR = "layouts"
T = TypeVar("T")


@dataclass(frozen=True)
class Sampling:
    """What one denoising run takes besides its graph, camera, seed and layout."""

    steps: int
    guidance_scale: float
    layout_guidance_scale: float


@dataclass(frozen=True)
class SampleItem:
    """One image to draw: graph ``graph`` (an index into the job's graphs) seen from ``camera``, the
    ``sample``-th of that (graph, camera); ``take`` and ``scan`` are the graph's."""

    graph: int
    take: int
    scan: str
    camera: int
    sample: int
    seed: int

    @property
    def image(self) -> str:
        """Path of the sample's PNG relative to ``out`` (also the item's key in the manifest)."""
        return f"{IMAGE_DIR}/take{self.take}_scan{self.scan}_cam{self.camera}_s{self.sample}.png"

    @property
    def layout_image(self) -> str:
        """Path of its layout label map relative to ``out`` (``save_layouts``), shared by all samples."""
        return f"{LAYOUT_DIR}/take{self.take}_scan{self.scan}_cam{self.camera}.png"


def item_seed(base_seed: int, take: int, scan: str, camera: int, sample: int) -> int:
    """A stable 63-bit seed for one image (sha256, so it is the same on every machine and Python)."""
    key = f"{int(base_seed)}:{int(take)}:{scan}:{int(camera)}:{int(sample)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def make_item(graph: int, record: SceneGraphRecord, camera: int, sample: int, base_seed: int) -> SampleItem:
    """The ``sample``-th image of graph ``graph`` (``record``) in ``camera``, with its seed."""
    seed = item_seed(base_seed, record.take, record.scan, camera, sample)
    return SampleItem(graph, record.take, record.scan, int(camera), int(sample), seed)


def plan_items(
    records: Sequence[SceneGraphRecord], cameras: Sequence[int], samples: int, base_seed: int
) -> list[SampleItem]:
    """Every (graph, camera, sample) image, graph by graph."""
    return [
        make_item(g, record, camera, k, base_seed)
        for g, record in enumerate(records)
        for camera in cameras
        for k in range(samples)
    ]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive runs of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def draw_images(
    pipe: ORScenePipeline,
    graphs: Sequence[Data],
    items: Sequence[SampleItem],
    sampling: Sampling,
    masks: torch.Tensor | None = None,
    *,
    null_graph: bool = False,
    layout_graphs: Sequence[Data] | None = None,
) -> list[Image.Image]:
    """One image per item (``graphs[i]`` seen from ``items[i].camera``), each from its own CPU generator.

    CPU generators make the starting noise (and DDPM's step noise) the same on every device, and one
    generator per image makes an image independent of what else is in its batch.

    Args:
        masks: (B, H, W) uint8 layout label maps of the items, or None (no layout).
        null_graph, layout_graphs: the evidence protocol's controls (:class:`~or_synth.generator.ORScenePipeline`):
            the null graph in place of ``graphs``, or the graphs whose nodes ``masks`` label.
    """
    generators = [torch.Generator(device="cpu").manual_seed(int(item.seed)) for item in items]
    return pipe(
        list(graphs),
        [item.camera for item in items],
        masks=masks,
        num_inference_steps=sampling.steps,
        guidance_scale=sampling.guidance_scale,
        layout_guidance_scale=sampling.layout_guidance_scale,
        generator=generators,
        null_graph=null_graph,
        layout_graphs=None if layout_graphs is None else list(layout_graphs),
        output_type="pil",
    ).images


def draw_in_batches(
    pipe: ORScenePipeline,
    graphs: Sequence[Data],
    items: Sequence[SampleItem],
    sampling: Sampling,
    masks: torch.Tensor | None,
    batch_size: int,
) -> list[Image.Image]:
    """:func:`draw_images` over ``items`` in batches of ``batch_size`` (the pipeline's memory bound)."""
    images: list[Image.Image] = []
    for part in batches(range(len(items)), batch_size):
        rows = slice(part.start, part.stop)
        images += draw_images(
            pipe, graphs[rows], items[rows], sampling, None if masks is None else masks[rows]
        )
    return images
