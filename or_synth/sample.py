"""Sampling entry point: ``python -m or_synth.sample pipeline=DIR graphs=FILE_OR_SPLIT [key=value ...]``.

Generates images of 4D-OR scene graphs with a saved :class:`~or_synth.generator.ORScenePipeline` and writes
``out/images/take{T}_scan{S}_cam{C}_s{K}.png`` plus ``out/manifest.jsonl``, one JSON line per image (source
file, take, scan, camera, sample, seed, sampler, steps, guidance scales, layout source, pipeline hash, size).
The options are in ``configs/sample.yaml``.

Pipelines with a layout input can also take instance masks (label maps, node index + 1): ``layout=masks``
reads a rendered dataset's own masks (manifest ``"layout": "given"``); ``layout=render`` draws them for any
graph, real 4D-OR graphs without images included, with the renderer's 3D layout
(:func:`or_synth.render.layout_masks`; manifest ``"layout": "rendered"``), one scene per graph for all its
cameras, so the views agree; ``layout=predicted`` predicts them from the graph and camera with a trained
:class:`~or_synth.generator.layout_predictor.LayoutPredictor` (``layout_predictor=DIR``, from ``python -m
or_synth.train stage=layout``; manifest ``"layout": "predicted"``); ``layout=none`` samples from the graph alone
(``"layout": "absent"``).

Every image has its own seed, derived from ``(seed, take, scan, camera, sample)``, and a rendered layout is
seeded by ``(seed, take, scan)`` as the renderer seeds its scans, so an image does not depend on the batch it
was drawn in, on ``limit`` or on resuming. Everything a user can get wrong (pipeline folder, cameras, graph
labels, masks, graphs the renderer cannot draw, an ``out`` folder of another job) is checked before the first
denoiser call.

A thin ``@hydra.main`` wrapper around :func:`sample`, which tests call with a composed config
(:func:`load_config`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from torch_geometric.data import Data
from tqdm import tqdm

from or_synth.data import DatasetFormatError, load_scene_graphs, record_to_data, relationships_file
from or_synth.data.annotations import mask_path, read_instance_mask
from or_synth.data.images import frame_index
from or_synth.data.io import atomic_path
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import CAMERAS, SPLIT_ALIASES, SPLIT_TAKES, Vocabulary
from or_synth.generator import (
    ORScenePipeline,
    check_pipeline_folder,
    make_scheduler,
    pipeline_hash,
)
from or_synth.generator.layout_predictor import LayoutPredictor, check_vocabulary
from or_synth.generator.shipped import resolve_pipeline
from or_synth.render import check_renderable, layout_masks, render_embedded_on_first_use
from or_synth.render.pipeline import RENDERER_VERSION

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
MANIFEST = "manifest.jsonl"
IMAGE_DIR = "images"
LAYOUT_DIR = "layouts"
# Sampler names accepted on the command line -> the name the manifest records.
SAMPLERS = {
    "ddpm": "ddpm",
    "ddim": "ddim",
    "dpmsolver++": "dpmsolver++",
    "dpm-solver++": "dpmsolver++",
    "dpmsolver": "dpmsolver++",
}
# layout= option -> the manifest's "layout": where the instance masks came from.
LAYOUTS = {"none": "absent", "masks": "given", "render": "rendered", "predicted": "predicted"}
# Manifest fields that must agree for a folder to be resumed (the rest describe the image itself).
SETTINGS_KEYS = (
    "pipeline_hash",
    "source_hash",
    "sampler",
    "steps",
    "guidance_scale",
    "layout_guidance_scale",
    "layout",
    "layout_renderer",  # only with layout=render: a new renderer may place graphs differently
    "layout_predictor_hash",  # only with layout=predicted: another predictor draws other layouts
    "base_seed",
)


class SampleRefused(RuntimeError):
    """``out`` already holds images sampled with other settings; nothing was touched."""


@dataclass(frozen=True)
class SampleItem:
    """One image to generate: graph ``graph`` (index into the plan's graphs) seen from ``camera``."""

    graph: int
    take: int
    scan: str
    camera: int
    sample: int
    seed: int

    @property
    def image(self) -> str:
        """Path of the PNG relative to ``out`` (also the item's key in the manifest)."""
        return f"{IMAGE_DIR}/take{self.take}_scan{self.scan}_cam{self.camera}_s{self.sample}.png"

    @property
    def layout_image(self) -> str:
        """Path of its layout label map relative to ``out`` (``save_layouts``), shared by all samples."""
        return f"{LAYOUT_DIR}/take{self.take}_scan{self.scan}_cam{self.camera}.png"


class RenderedLayouts:
    """``layout=render``: each graph's label maps in the plan's cameras, drawn once from one 3D scene.

    Items come graph by graph, so keeping the graphs of the current batch computes each graph once.
    """

    def __init__(
        self,
        records: Sequence[SceneGraphRecord],
        cameras: Sequence[int],
        height: int,
        width: int,
        seed: int,
        source: Path,
    ) -> None:
        self.records, self.cameras, self.size = list(records), list(cameras), (height, width)
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

    Every map comes from its own forward pass (batch of one), so it does not depend on what else is sampled.
    """

    def __init__(self, predictor: LayoutPredictor, graphs: Sequence[Data], height: int, width: int) -> None:
        self.predictor, self.graphs, self.size = predictor, list(graphs), (height, width)

    def masks(self, items: Sequence[SampleItem]) -> torch.Tensor:
        """(B, H, W) uint8 label maps of the items."""
        maps: dict[tuple[int, int], torch.Tensor] = {}
        for item in items:
            key = (item.graph, item.camera)
            if key not in maps:
                graph = self.graphs[item.graph]
                maps[key] = predict_layouts(self.predictor, graph, [item.camera], self.size)[0]
        return torch.stack([maps[(item.graph, item.camera)] for item in items])


def load_layout_predictor(path, pipe: ORScenePipeline, pipeline_dir: str | Path) -> LayoutPredictor:
    """The trained layout predictor folder ``path`` (``runs/layout/<name>/predictor``), on the pipeline's device.

    Raises:
        ValueError: ``path`` is not set, or the predictor was trained with another vocabulary than the
            pipeline's graph encoder (graph ids would name other labels).
        FileNotFoundError: no predictor folder there (config.json + safetensors weights).
    """
    check_predictor_folder(path)
    predictor = LayoutPredictor.from_pretrained(Path(str(path)))
    check_vocabulary(predictor, pipe.graph_encoder.encoder.config, f"the pipeline {pipeline_dir}")
    return predictor.to(pipe.device).eval()


def check_predictor_folder(path) -> Path:
    """``layout_predictor=`` names a saved predictor folder (checked before any model is loaded)."""
    if not path:
        raise ValueError(
            "layout=predicted needs layout_predictor=DIR: a trained layout predictor folder, e.g. "
            "runs/layout/<name>/predictor from `python -m or_synth.train stage=layout`"
        )
    folder = Path(str(path))
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        what = "does not exist" if not folder.exists() else "holds no config.json + safetensors weights"
        raise FileNotFoundError(
            f"layout_predictor={folder} {what}: point it at a layout predictor folder "
            "(runs/layout/<name>/predictor, written by `python -m or_synth.train stage=layout`)"
        )
    return folder


def predict_layouts(
    predictor: LayoutPredictor, graph: Data, cameras: Sequence[int], size: tuple[int, int]
) -> torch.Tensor:
    """(V, H, W) uint8 label maps of one graph in ``cameras``, one forward pass per camera (batch-independent)."""
    return torch.cat([predictor.label_maps([graph], [int(camera)], size) for camera in cameras])


@dataclass
class SamplePlan:
    """Everything :func:`run_plan` needs, validated by :func:`prepare`."""

    pipe: ORScenePipeline
    graphs: list[Data]
    items: list[SampleItem]
    todo: list[SampleItem]
    out: Path
    settings: dict
    kept_lines: list[dict]
    rewrite_manifest: bool
    stale_images: list[Path] | None
    mask_root: Path | None
    drawn: RenderedLayouts | PredictedLayouts | None  # layout=render / layout=predicted
    save_layouts: bool
    height: int
    width: int
    batch_size: int
    progress: bool


def item_seed(base_seed: int, take: int, scan: str, camera: int, sample: int) -> int:
    """A stable 63-bit seed for one image (sha256, so it is the same on every machine and Python)."""
    key = f"{int(base_seed)}:{int(take)}:{scan}:{int(camera)}:{int(sample)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The sample config with command-line style overrides, e.g. ``["pipeline=/tmp/p", "steps=2"]``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="sample", overrides=list(overrides))


# --- the reusable sampling call -------------------------------------------------------------------------
def generate(
    pipe: ORScenePipeline,
    graphs: Sequence[Data],
    views: Sequence[int],
    seeds: Sequence[int],
    *,
    masks: torch.Tensor | None = None,
    steps: int = 20,
    guidance_scale: float = 3.0,
    layout_guidance_scale: float = 1.0,
) -> list[Image.Image]:
    """One image per (graph, view, seed), each drawn from its own CPU generator.

    CPU generators make the starting noise (and DDPM's step noise) the same on every device, and one
    generator per image makes an image independent of what else is in its batch.
    """
    generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    return pipe(
        list(graphs),
        list(views),
        masks=masks,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        layout_guidance_scale=layout_guidance_scale,
        generator=generators,
        output_type="pil",
    ).images


def load_pipeline(path: str | Path, *, progress: bool = True) -> ORScenePipeline:
    """``ORScenePipeline.from_pretrained`` (its loading bar shown only with ``progress``)."""
    shown = diffusers_logging.is_progress_bar_enabled()
    if not progress:
        diffusers_logging.disable_progress_bar()  # a global switch in diffusers: restored below
    try:
        return ORScenePipeline.from_pretrained(path)
    finally:
        if shown:
            diffusers_logging.enable_progress_bar()


# --- validation -----------------------------------------------------------------------------------------
def check_options(cfg: DictConfig) -> tuple[list[int], str]:
    """Plain option checks (no files read); returns the cameras (deduplicated) and the canonical sampler."""
    if not cfg.get("pipeline"):
        raise ValueError(
            "pipeline=DIR is required: a saved ORScenePipeline folder, or a shipped pipeline's name "
            "(e.g. pipeline=cpu_quality, from pretrained/)"
        )
    raw = (
        cfg.cameras
        if isinstance(cfg.cameras, Sequence) and not isinstance(cfg.cameras, str)
        else [cfg.cameras]
    )
    cameras: list[int] = []
    for camera in raw:
        if isinstance(camera, bool) or not isinstance(camera, int) or camera not in CAMERAS:
            raise ValueError(f"camera {camera!r} is not a 4D-OR camera; cameras must be in 1..6")
        if camera not in cameras:
            cameras.append(camera)
    if not cameras:
        raise ValueError("cameras is empty; give at least one camera in 1..6, e.g. cameras=[1]")
    for key in ("samples_per_graph", "steps", "batch_size"):
        if int(cfg[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]}")
    if cfg.limit is not None and int(cfg.limit) < 1:
        raise ValueError(f"limit must be >= 1 or null (all graphs), got {cfg.limit}")
    if int(cfg.get("stride", 1)) < 1:
        raise ValueError(f"stride must be >= 1, got {cfg.stride}")
    sampler = SAMPLERS.get(str(cfg.sampler))
    if sampler is None:
        raise ValueError(f"unknown sampler {cfg.sampler!r}; choose ddpm, ddim or dpmsolver++")
    if cfg.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {cfg.layout!r}")
    if cfg.layout == "render" and int(cfg.seed) < 0:
        raise ValueError(f"layout=render needs seed >= 0 (it seeds the renderer's layout), got {cfg.seed}")
    if cfg.get("save_layouts") and cfg.layout == "none":
        raise ValueError("save_layouts=true needs a layout: layout=masks, layout=render or layout=predicted")
    if cfg.layout == "predicted":
        check_predictor_folder(cfg.get("layout_predictor"))
    elif cfg.get("layout_predictor"):
        raise ValueError(
            f"layout_predictor is set but layout={cfg.layout}; add layout=predicted to sample with it"
        )
    device = torch.device(str(cfg.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device} but CUDA is not available; use device=cpu")
    return cameras, sampler


def resolve_graphs(graphs: str, dataset_root: str | Path) -> tuple[Path, Path]:
    """The relationships file named by ``graphs`` (a path, or a split of ``dataset_root``) and its dataset
    root (where its vocabulary files and, for rendered datasets, its instance masks are)."""
    path = Path(str(graphs))
    if path.is_file():
        root = path.parent.parent if path.parent.name == "data" else path.parent
        return path, root
    if str(graphs) in SPLIT_TAKES or str(graphs) in SPLIT_ALIASES:
        found = relationships_file(dataset_root, str(graphs))
        if found is None and render_embedded_on_first_use(dataset_root):
            found = relationships_file(dataset_root, str(graphs))
        if found is None:
            raise DatasetFormatError(
                f"no relationships file for split {graphs!r} here (looked in it and its data/ folder); "
                "render the synthetic dataset with `python -m or_synth.render`, set dataset_root=, "
                "or pass graphs=FILE",
                file=dataset_root,
            )
        return found, Path(dataset_root)
    raise DatasetFormatError(
        "graphs= is neither a file nor a split name (train, validation, val, test)", file=path
    )


def encoder_vocabulary(pipe: ORScenePipeline) -> Vocabulary:
    """The label names the pipeline's graph encoder was built with: graphs are converted with these ids."""
    config = pipe.graph_encoder.encoder.config
    return Vocabulary(
        object_classes=tuple(config.object_classes),
        predicates=tuple(config.predicates),
        roles=tuple(config.roles),
    )


def graphs_for_pipeline(
    pipe: ORScenePipeline, records: Sequence[SceneGraphRecord], source: Path
) -> list[Data]:
    """Each record as PyG ``Data`` with the encoder's ids; a label the encoder does not know is an error
    naming the file, take and scan (checked here, before any sampling)."""
    vocabulary = encoder_vocabulary(pipe)
    encoder = pipe.graph_encoder.encoder
    graphs = []
    for record in records:
        where = {"file": source, "take": record.take, "scan": record.scan}
        try:
            data = record_to_data(record, vocabulary)
            encoder.node_labels_of(data)
        except KeyError as error:  # a class / role / predicate name missing from the encoder's vocabulary
            raise DatasetFormatError(
                f"{error.args[0]} (not known to the pipeline's graph encoder)", **where
            ) from None
        except ValueError as error:  # a (class, role) pair that is no node label of the encoder
            raise DatasetFormatError(f"{error} (pipeline's graph encoder)", **where) from None
        graphs.append(data)
    return graphs


def check_masks(root: Path, items: Sequence[SampleItem]) -> None:
    """Every item's instance mask exists (layout=masks), before any sampling."""
    try:
        for item in items:
            frame = frame_index(root, item.take).frame_id(item.scan, item.camera)
            path = mask_path(root, item.take, item.camera, frame)
            if not path.is_file():
                raise DatasetFormatError(
                    "instance mask is missing",
                    file=path,
                    take=item.take,
                    scan=item.scan,
                    field=f"camera {item.camera}",
                )
    except DatasetFormatError as error:
        raise with_hint(
            error, "layout=masks reads the renderer's instance masks; use layout=none for graphs without them"
        ) from None


def with_hint(error: DatasetFormatError, hint: str) -> DatasetFormatError:
    """The same error (file, take, scan, field) with what to do about it appended."""
    return DatasetFormatError(
        f"{error.reason} ({hint})", file=error.file, take=error.take, scan=error.scan, field=error.field
    )


def check_renderable_graphs(records: Sequence[SceneGraphRecord], source: Path) -> None:
    """Every graph can be drawn by the renderer (layout=render), before any sampling."""
    for record in records:
        try:
            check_renderable(record, file=source)
        except DatasetFormatError as error:
            raise with_hint(
                error,
                "layout=render draws each graph with the renderer; use layout=none for graphs it cannot draw",
            ) from None


def read_masks(root: Path, items: Sequence[SampleItem], height: int, width: int) -> torch.Tensor:
    """(B, H, W) uint8 instance masks of the items, resized (nearest: labels stay labels) to the image size."""
    masks = []
    for item in items:
        frame = frame_index(root, item.take).frame_id(item.scan, item.camera)
        mask = Image.fromarray(read_instance_mask(root, item.take, item.camera, frame))
        masks.append(np.asarray(mask.resize((width, height), Image.Resampling.NEAREST)))
    return torch.from_numpy(np.stack(masks))


def read_manifest(out: Path, settings: dict, overwrite: bool) -> tuple[list[dict], bool, list[Path] | None]:
    """The manifest lines to keep, whether the file needs rewriting, and (``overwrite`` of a folder sampled
    with other settings) the images to delete before starting afresh, else None. Reads only.

    Lines whose image is gone and a line cut off by a crash are dropped (those images are drawn again).

    Raises:
        SampleRefused: the manifest was written with other settings and ``overwrite`` is false.
    """
    path = out / MANIFEST
    if not path.is_file():
        return [], False, None
    raw = path.read_bytes()
    # A last line without its newline was cut off by a crash: rewrite the file before appending to it.
    lines, dropped = [], bool(raw) and not raw.endswith(b"\n")
    for text in raw.decode("utf-8", errors="replace").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            dropped = True
            continue
        if not isinstance(line, dict) or not isinstance(line.get("image"), str):
            dropped = True
            continue
        lines.append(line)
    differing = sorted({k for line in lines for k in SETTINGS_KEYS if line.get(k) != settings.get(k)})
    if differing:
        if not overwrite:
            before = {k: lines[0].get(k) for k in differing}
            now = {k: settings.get(k) for k in differing}
            raise SampleRefused(
                f"{out} holds images sampled with other settings ({before}, now {now}); nothing was changed. "
                "Pass overwrite=true to replace them, or choose another out="
            )
        # overwrite: what the earlier job listed (and nothing else) goes, when sampling starts.
        listed = [(out / line["image"]).resolve() for line in lines]
        listed += [(out / line["layout_image"]).resolve() for line in lines if line.get("layout_image")]
        return [], False, [image for image in listed if image.is_relative_to(out.resolve())]
    kept = [line for line in lines if (out / line["image"]).is_file()]
    # Keep one line per image (the last), so a manifest never lists an image twice.
    by_image = {line["image"]: line for line in kept}
    dropped = dropped or len(by_image) != len(lines)
    return list(by_image.values()), dropped, None


# --- the job --------------------------------------------------------------------------------------------
def prepare(cfg: DictConfig) -> SamplePlan:
    """Validate the whole job and load the pipeline; reads files but writes nothing (not even ``out``).

    Raises:
        ValueError: bad options (camera outside 1..6, unknown sampler, ...).
        FileNotFoundError: the pipeline folder is missing or incomplete.
        DatasetFormatError: a bad graphs file, a label unknown to the pipeline, a missing instance mask,
            a graph the renderer cannot draw (layout=render).
        FileNotFoundError / ValueError: layout=predicted without a predictor folder, or with a predictor
            trained on another vocabulary than the pipeline's.
        SampleRefused: ``out`` holds images of other settings and ``overwrite`` is false.
    """
    cameras, sampler = check_options(cfg)
    pipeline_dir = resolve_pipeline(cfg.pipeline)  # a folder, or a shipped pipeline's name (hashes verified)
    check_pipeline_folder(pipeline_dir)
    source, data_root = resolve_graphs(cfg.graphs, cfg.dataset_root)
    scene_graphs = load_scene_graphs(source, Vocabulary.load(data_root), strict=True)
    # Every stride-th graph (a spread over the whole file: every surgery phase), then the first `limit` of those.
    records = scene_graphs.records[:: int(cfg.get("stride", 1))]
    records = records[: int(cfg.limit)] if cfg.limit is not None else records
    if not records:
        raise DatasetFormatError("holds no scene graphs", file=source)

    pipe = load_pipeline(pipeline_dir, progress=bool(cfg.progress))
    pipe.set_progress_bar_config(disable=True)  # one bar over all images instead of one per batch
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    pipe.to(torch.device(str(cfg.device)))
    graphs = graphs_for_pipeline(pipe, records, source)
    height, width = pipe.image_size

    items = [
        SampleItem(g, r.take, r.scan, c, k, item_seed(cfg.seed, r.take, r.scan, c, k))
        for g, r in enumerate(records)
        for c in cameras
        for k in range(int(cfg.samples_per_graph))
    ]
    mask_root, drawn = None, None
    if cfg.layout != "none" and not pipe.has_layout_input:
        raise ValueError(
            f"layout={cfg.layout}, but this pipeline's denoiser has no layout input; use layout=none"
        )
    if cfg.layout == "masks":
        mask_root = data_root
        check_masks(mask_root, items)
    elif cfg.layout == "render":
        check_renderable_graphs(records, source)
        drawn = RenderedLayouts(records, cameras, height, width, int(cfg.seed), source)
    elif cfg.layout == "predicted":
        predictor = load_layout_predictor(cfg.layout_predictor, pipe, pipeline_dir)
        drawn = PredictedLayouts(predictor, graphs, height, width)

    settings = {
        "source": str(source),
        "source_hash": hashlib.sha256(source.read_bytes()).hexdigest()[:16],
        "sampler": sampler,
        "steps": int(cfg.steps),
        "guidance_scale": float(cfg.guidance_scale),
        "layout_guidance_scale": float(cfg.layout_guidance_scale),
        "layout": LAYOUTS[cfg.layout],
        "base_seed": int(cfg.seed),
        "pipeline": str(pipeline_dir),
        "pipeline_hash": pipeline_hash(pipeline_dir),
        "height": height,
        "width": width,
    }
    if cfg.layout == "render":
        settings["layout_renderer"] = RENDERER_VERSION
    elif cfg.layout == "predicted":
        settings["layout_predictor"] = str(cfg.layout_predictor)
        settings["layout_predictor_hash"] = pipeline_hash(cfg.layout_predictor)
    out = Path(cfg.out)
    kept, rewrite, stale = read_manifest(out, settings, bool(cfg.overwrite))
    done = {line["image"] for line in kept}
    return SamplePlan(
        pipe=pipe,
        graphs=graphs,
        items=items,
        todo=[item for item in items if item.image not in done],
        out=out,
        settings=settings,
        kept_lines=kept,
        rewrite_manifest=rewrite,
        stale_images=stale,
        mask_root=mask_root,
        drawn=drawn,
        save_layouts=bool(cfg.get("save_layouts", False)),
        height=height,
        width=width,
        batch_size=int(cfg.batch_size),
        progress=bool(cfg.progress),
    )


def manifest_line(item: SampleItem, settings: dict, *, layout_image: bool = False) -> dict:
    line = {
        "image": item.image,
        "source": settings["source"],
        "take": item.take,
        "scan": item.scan,
        "camera": item.camera,
        "sample": item.sample,
        "seed": item.seed,
        **{k: v for k, v in settings.items() if k != "source"},
    }
    if layout_image:
        line["layout_image"] = item.layout_image
    return line


def batch_masks(plan: SamplePlan, batch: Sequence[SampleItem]) -> torch.Tensor | None:
    """(B, H, W) uint8 layout label maps of the batch, or None (layout=none)."""
    if plan.mask_root is not None:
        return read_masks(plan.mask_root, batch, plan.height, plan.width)
    if plan.drawn is not None:
        return plan.drawn.masks(batch)
    return None


def write_layouts(out: Path, batch: Sequence[SampleItem], masks: torch.Tensor) -> None:
    """The batch's label maps as PNGs (uint8, as ``instance_masks/``), once per (graph, camera)."""
    written = set()
    for item, mask in zip(batch, masks, strict=True):
        if item.layout_image not in written:
            with atomic_path(out / item.layout_image) as tmp:
                Image.fromarray(mask.numpy()).save(tmp, format="PNG")
            written.add(item.layout_image)


def run_plan(plan: SamplePlan) -> dict:
    """Draw the plan's missing images batch by batch; the manifest grows by one flushed line per image."""
    out, manifest, settings = plan.out, plan.out / MANIFEST, plan.settings
    if plan.stale_images is not None:  # overwrite=true on a folder of other settings
        for image in plan.stale_images:
            image.unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
    if plan.rewrite_manifest:  # drop lines of lost images and a cut-off line before appending
        with atomic_path(manifest) as tmp:
            tmp.write_text("".join(json.dumps(line) + "\n" for line in plan.kept_lines), encoding="utf-8")
    progress = tqdm(
        total=len(plan.todo), desc="sample", unit="img", disable=not plan.progress, dynamic_ncols=True
    )
    for start in range(0, len(plan.todo), plan.batch_size):
        batch = plan.todo[start : start + plan.batch_size]
        masks = batch_masks(plan, batch)
        images = generate(
            plan.pipe,
            [plan.graphs[item.graph] for item in batch],
            [item.camera for item in batch],
            [item.seed for item in batch],
            masks=masks,
            steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            layout_guidance_scale=settings["layout_guidance_scale"],
        )
        # Images first, then their lines: a line never names an image that is not complete on disk.
        for item, image in zip(batch, images, strict=True):
            with atomic_path(out / item.image) as tmp:
                image.save(tmp, format="PNG")
        saved = plan.save_layouts and masks is not None
        if saved:
            write_layouts(out, batch, masks)
        with manifest.open("a", encoding="utf-8") as handle:
            handle.writelines(
                json.dumps(manifest_line(item, settings, layout_image=saved)) + "\n" for item in batch
            )
            handle.flush()
            os.fsync(handle.fileno())
        progress.update(len(batch))
    progress.close()
    total = len(plan.kept_lines) + len(plan.todo)
    skipped = len(plan.items) - len(plan.todo)
    print(
        f"sample: {len(plan.todo)} new image(s), {skipped} already done; "
        f"{total} image(s) listed in {manifest}"
    )
    return {
        "out": str(out),
        "manifest": str(manifest),
        "planned": len(plan.items),
        "skipped": skipped,
        "generated": len(plan.todo),
        "images": total,
        "pipeline_hash": plan.settings["pipeline_hash"],
        "height": plan.height,
        "width": plan.width,
    }


def sample(cfg: DictConfig) -> dict:
    """Generate the configured images (see ``configs/sample.yaml``), resuming what ``out`` already holds.

    Returns:
        ``{"out", "manifest", "planned", "skipped", "generated", "images", "pipeline_hash", "height",
        "width"}``: ``generated`` images were drawn now, ``skipped`` were already there.
    """
    return run_plan(prepare(cfg))


USER_ERRORS = (DatasetFormatError, FileNotFoundError, SampleRefused, ValueError)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    # Input mistakes end with one line and exit code 2; errors while sampling keep their traceback.
    try:
        plan = prepare(cfg)
    except USER_ERRORS as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        sys.exit(2)
    run_plan(plan)


if __name__ == "__main__":
    main()
