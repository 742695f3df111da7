"""Where an image's layout comes from: the ``layout=`` option, its one check, and the sources.

Pipelines with a layout input take instance masks (label maps: node index + 1, 0 room, 255 clutter). The option
names a source, and each line of a manifest records what it became (:data:`or_synth.data.manifest.LAYOUT_SOURCES`):

- ``none`` -> ``absent``: the graph alone;
- ``masks`` -> ``given``: the dataset's own layout of each scan and camera (:class:`GivenMasks`): a rendered
  dataset's ``instance_masks/``; real 4D-OR's MM-OR panoptic maps (cameras 1, 2, 5) and, elsewhere, person boxes
  from its 3D poses;
- ``render`` -> ``rendered``: drawn for any graph, real 4D-OR ones too, by the renderer's 3D placement, one
  scene per graph for all its cameras so the views agree (:class:`RenderedLayouts`);
- ``predicted`` -> ``predicted``: from the graph and camera by a trained layout predictor
  (:class:`PredictedLayouts`, ``layout_predictor=DIR``);
- ``auto`` (the default): the pipeline's best available source, ``render`` for a pipeline with a layout input
  and ``none`` for one without (:func:`resolve_layout`).

A source has one method, ``masks(items)``: the (B, H, W) uint8 label maps of the items, which carry ``graph``,
``take``, ``scan`` and ``camera``. :func:`open_layouts` checks a job's source before the first denoiser call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch_geometric.data import Data

from or_synth.data import DatasetFormatError
from or_synth.data.annotations import mask_path, read_instance_mask
from or_synth.data.images import frame_index
from or_synth.data.layout_maps import RealLayouts
from or_synth.data.manifest import LAYOUT_SOURCES
from or_synth.data.panoptic import has_panoptic, panoptic_path
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.generator import ORScenePipeline
from or_synth.render import check_renderable, layout_masks
from or_synth.sampling.predictor import check_predictor_folder, load_layout_predictor, predict_layouts
from or_synth.sampling.seeds import SampleItem

AUTO = "auto"
LAYOUT_OPTIONS = (AUTO, *LAYOUT_SOURCES)


def check_layout_option(cfg: DictConfig) -> None:
    """``layout=`` is a known option and ``layout_predictor=`` goes with ``layout=predicted`` (no files read
    but the predictor folder's listing)."""
    if cfg.layout not in LAYOUT_OPTIONS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUT_OPTIONS)}, got {cfg.layout!r}")
    if cfg.layout == "predicted":
        check_predictor_folder(cfg.get("layout_predictor"))
    elif cfg.get("layout_predictor"):
        raise ValueError(
            f"layout_predictor is set but layout={cfg.layout}; add layout=predicted to sample with it"
        )


def resolve_layout(option: str, pipe: ORScenePipeline) -> str:
    """The source ``option`` names for this pipeline: ``auto`` -> ``render`` with a layout input, else ``none``.

    Raises:
        ValueError: a layout the pipeline cannot take (its denoiser has no layout input).
    """
    if option == AUTO:
        return "render" if pipe.has_layout_input else "none"
    if option != "none" and not pipe.has_layout_input:
        raise ValueError(
            f"layout={option}, but this pipeline's denoiser has no layout input; use layout=none (or auto)"
        )
    return option


class GivenMasks:
    """``layout=masks``: each item's layout from the dataset at ``root``, resized nearest (labels stay labels) to
    ``size`` (H, W): a rendered dataset's instance masks, or real 4D-OR's panoptic maps (cameras 1, 2, 5) and
    projected person boxes (:mod:`or_synth.data.layout_maps`), read once by :meth:`check`."""

    def __init__(self, root: Path, size: tuple[int, int], records: Sequence[SceneGraphRecord] = ()) -> None:
        self.root, self.size, self.records = Path(root), size, list(records)
        self._real: dict[tuple[int, str, int], np.ndarray] = {}

    def _resize(self, labels: np.ndarray) -> np.ndarray:
        height, width = self.size
        return np.asarray(Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST))

    def check(self, items: Sequence[SampleItem]) -> None:
        """Every item has a layout, before any sampling (real 4D-OR: the maps are read here, once)."""
        real = RealLayouts(self.root)
        try:
            for item in items:
                frame = frame_index(self.root, item.take).frame_id(item.scan, item.camera)
                where = {"take": item.take, "scan": item.scan, "field": f"camera {item.camera}"}
                if mask_path(self.root, item.take, item.camera, frame).is_file():
                    continue
                if not has_panoptic(self.root, item.take):
                    raise DatasetFormatError(
                        "instance mask is missing",
                        file=mask_path(self.root, item.take, item.camera, frame),
                        **where,
                    )
                record = self.records[item.graph]
                labels = real.view_of(
                    item.take, item.scan, list(record.object_names), list(record.roles), item.camera, frame
                )
                if labels is None:
                    raise DatasetFormatError(
                        "no layout for this view: no panoptic map (cameras 1, 2, 5) and no 3D poses "
                        f"({panoptic_path(self.root, item.take, item.camera, frame)})",
                        **where,
                    )
                self._real[(item.take, item.scan, item.camera)] = self._resize(labels)
        except DatasetFormatError as error:
            raise with_hint(
                error,
                "layout=masks reads the dataset's own layouts (instance masks; real 4D-OR: MM-OR's panoptic maps "
                "and 3D poses); for views without them use layout=predicted, layout=render or layout=none",
            ) from None

    def masks(self, items: Sequence[SampleItem]) -> torch.Tensor:
        """(B, H, W) uint8 layouts of the items."""
        maps = []
        for item in items:
            real = self._real.get((item.take, item.scan, item.camera))
            if real is not None:
                maps.append(real)
                continue
            frame = frame_index(self.root, item.take).frame_id(item.scan, item.camera)
            maps.append(self._resize(read_instance_mask(self.root, item.take, item.camera, frame)))
        return torch.from_numpy(np.stack(maps))


class RenderedLayouts:
    """``layout=render``: each graph's label maps in the job's cameras, drawn once from one 3D scene seeded by
    ``(seed, take, scan)`` as the renderer seeds its scans.

    Items come graph by graph, so keeping the graphs of the current batch computes each graph once.
    """

    def __init__(
        self,
        records: Sequence[SceneGraphRecord],
        cameras: Sequence[int],
        size: tuple[int, int],
        seed: int,
        source: Path | None,
    ) -> None:
        self.records, self.cameras, self.size = list(records), list(cameras), size
        self.seed, self.source = seed, source
        self._maps: dict[int, dict[int, np.ndarray]] = {}

    def masks(self, items: Sequence[SampleItem]) -> torch.Tensor:
        """(B, H, W) uint8 label maps of the items."""
        wanted = {item.graph for item in items}
        self._maps = {g: maps for g, maps in self._maps.items() if g in wanted}
        for graph in sorted(wanted - self._maps.keys()):
            record = self.records[graph]
            maps = layout_masks(record, self.cameras, self.size, self.seed, file=self.source)
            self._maps[graph] = dict(zip(self.cameras, maps, strict=True))
        return torch.from_numpy(np.stack([self._maps[item.graph][item.camera] for item in items]))


class PredictedLayouts:
    """``layout=predicted``: each (graph, camera)'s label map from the layout predictor (once per batch).

    Every map comes from its own forward pass (batch of one), so it does not depend on what else is drawn.
    """

    def __init__(self, predictor, graphs: Sequence[Data], size: tuple[int, int]) -> None:
        self.predictor, self.graphs, self.size = predictor, list(graphs), size

    def masks(self, items: Sequence[SampleItem]) -> torch.Tensor:
        """(B, H, W) uint8 label maps of the items."""
        maps: dict[tuple[int, int], torch.Tensor] = {}
        for item in items:
            key = (item.graph, item.camera)
            if key not in maps:
                graph = self.graphs[item.graph]
                maps[key] = predict_layouts(self.predictor, graph, [item.camera], self.size)[0]
        return torch.stack([maps[(item.graph, item.camera)] for item in items])


LayoutSource = GivenMasks | RenderedLayouts | PredictedLayouts


@dataclass
class LayoutJob:
    """What a job's layout source is opened for: its graphs (records and the pipeline's ``Data``), the items
    it will draw, where the graphs came from, the seed, and the predictor folder (``layout=predicted``)."""

    pipe: ORScenePipeline
    pipeline_dir: Path
    records: Sequence[SceneGraphRecord]
    graphs: Sequence[Data]
    items: Sequence[SampleItem]
    cameras: Sequence[int]
    seed: int
    source: Path | None
    root: Path | None
    predictor: str | Path | None = None


def open_layouts(layout: str, job: LayoutJob) -> LayoutSource | None:
    """The checked source of a resolved ``layout`` for ``job`` (None for ``none``), before any sampling.

    Raises:
        DatasetFormatError: a missing instance mask (``masks``), a graph the renderer cannot draw (``render``).
        ValueError: ``masks`` without a source dataset, or a predictor of another vocabulary (``predicted``).
    """
    size = job.pipe.image_size
    if layout == "none":
        return None
    if layout == "masks":
        if job.root is None:
            raise ValueError("layout=masks reads the source dataset's instance masks; these graphs have none")
        given = GivenMasks(job.root, size, job.records)
        given.check(job.items)
        return given
    if layout == "render":
        check_renderable_graphs(job.records, job.source)
        return RenderedLayouts(job.records, job.cameras, size, job.seed, job.source)
    predictor = load_layout_predictor(job.predictor, job.pipe, job.pipeline_dir)
    return PredictedLayouts(predictor, job.graphs, size)


def check_renderable_graphs(records: Sequence[SceneGraphRecord], source: Path | None) -> None:
    """Every graph can be drawn by the renderer (layout=render), before any sampling."""
    for record in records:
        try:
            check_renderable(record, file=source)
        except DatasetFormatError as error:
            raise with_hint(
                error,
                "layout=render draws each graph with the renderer; use layout=none for graphs it cannot draw",
            ) from None


def with_hint(error: DatasetFormatError, hint: str) -> DatasetFormatError:
    """The same error (file, take, scan, field) with what to do about it appended."""
    return DatasetFormatError(
        f"{error.reason} ({hint})", file=error.file, take=error.take, scan=error.scan, field=error.field
    )
