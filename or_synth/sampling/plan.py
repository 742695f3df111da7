"""The sample job (``python -m or_synth.sample``): images of scene graphs with a saved pipeline, written to
``out/images/take{T}_scan{S}_cam{C}_s{K}.png`` with one :class:`~or_synth.data.manifest.ManifestLine` per image in
``out/manifest.jsonl``.

:func:`prepare` checks the whole job (options, pipeline folder, graph labels, layouts, an ``out`` folder of
another job) and loads the pipeline, writing nothing; :func:`run_plan` draws what ``out`` does not hold yet. A
rerun resumes: images whose line and file exist are kept, the rest are drawn again to the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig
from PIL import Image
from torch_geometric.data import Data
from tqdm import tqdm

from or_synth.data import DatasetFormatError, load_scene_graphs
from or_synth.data.io import atomic_path
from or_synth.data.manifest import MANIFEST, ManifestLine, append_lines
from or_synth.data.vocabulary import Vocabulary
from or_synth.generator import ORScenePipeline
from or_synth.sampling.layouts import LayoutJob, LayoutSource, open_layouts, resolve_layout
from or_synth.sampling.options import check_options
from or_synth.sampling.pipelines import graphs_for_pipeline, pipeline_folder, prepare_pipeline, resolve_graphs
from or_synth.sampling.resume import Resume, resume_state
from or_synth.sampling.seeds import SampleItem, Sampling, batches, draw_images, plan_items


@dataclass
class SamplePlan:
    """Everything :func:`run_plan` needs, checked by :func:`prepare`."""

    pipe: ORScenePipeline
    graphs: list[Data]
    items: list[SampleItem]
    todo: list[SampleItem]
    out: Path
    settings: dict  # the job's fields of every manifest line
    sampling: Sampling
    resume: Resume
    layouts: LayoutSource | None
    save_layouts: bool
    batch_size: int
    progress: bool


def prepare(cfg: DictConfig) -> SamplePlan:
    """Check the whole job and load the pipeline; reads files but writes nothing (not even ``out``).

    Raises:
        ValueError: bad options (camera outside 1..6, unknown sampler, a layout the pipeline cannot take, ...).
        FileNotFoundError: the pipeline folder is missing or incomplete; no predictor folder (layout=predicted).
        DatasetFormatError: a bad graphs file, a label unknown to the pipeline, a missing instance mask,
            a graph the renderer cannot draw (layout=render).
        SampleRefused: ``out`` holds images of other settings and ``overwrite`` is false.
    """
    options = check_options(cfg)
    folder = pipeline_folder(cfg.pipeline)
    source, data_root = resolve_graphs(cfg.graphs, cfg.dataset_root)
    scene_graphs = load_scene_graphs(source, Vocabulary.load(data_root), strict=True)
    # Every stride-th graph (a spread over the whole file: every surgery phase), then the first `limit` of those.
    records = scene_graphs.records[:: int(cfg.get("stride", 1))]
    records = records[: int(cfg.limit)] if cfg.limit is not None else records
    if not records:
        raise DatasetFormatError("holds no scene graphs", file=source)

    pipe = prepare_pipeline(folder, options.sampler, options.device, progress=bool(cfg.progress))
    graphs = graphs_for_pipeline(pipe, records, source)
    items = plan_items(records, options.cameras, int(cfg.samples_per_graph), options.seed)
    layout = resolve_layout(options.layout, pipe)
    if cfg.get("save_layouts") and layout == "none":
        raise ValueError("save_layouts=true needs a layout: layout=masks, layout=render or layout=predicted")
    job = LayoutJob(pipe, folder, records, graphs, items, options.cameras, options.seed, source, data_root,
                    cfg.get("layout_predictor"))  # fmt: skip
    layouts = open_layouts(layout, job)
    graphs_hash = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    settings = {
        "graphs": str(source),
        "graphs_hash": graphs_hash,
        **options.recorded(layout, folder, pipe.image_size, cfg.get("layout_predictor")),
    }
    out = Path(cfg.out)
    resume = resume_state(out, settings, bool(cfg.overwrite))
    done = {line.image for line in resume.kept}
    return SamplePlan(
        pipe=pipe,
        graphs=graphs,
        items=items,
        todo=[item for item in items if item.image not in done],
        out=out,
        settings=settings,
        sampling=options.sampling,
        resume=resume,
        layouts=layouts,
        save_layouts=bool(cfg.get("save_layouts", False)),
        batch_size=int(cfg.batch_size),
        progress=bool(cfg.progress),
    )


def manifest_line(item: SampleItem, settings: dict, *, layout_image: bool = False) -> ManifestLine:
    """The item's line: its image and graph's scan, camera, sample and seed, and the job's ``settings``."""
    saved = item.layout_image if layout_image else None
    where = (item.image, item.take, item.scan, item.camera)
    return ManifestLine(*where, sample=item.sample, seed=item.seed, layout_image=saved, **settings)


def write_layouts(out: Path, batch: Sequence[SampleItem], masks) -> None:
    """The batch's label maps as PNGs (uint8, as ``instance_masks/``), once per (graph, camera)."""
    written = set()
    for item, mask in zip(batch, masks, strict=True):
        if item.layout_image not in written:
            with atomic_path(out / item.layout_image) as tmp:
                Image.fromarray(mask.numpy()).save(tmp, format="PNG")
            written.add(item.layout_image)


def run_plan(plan: SamplePlan) -> dict:
    """Draw the plan's missing images batch by batch; the manifest grows by one flushed line per image.

    Returns:
        ``{"out", "manifest", "planned", "skipped", "generated", "images", "pipeline_hash", "height",
        "width"}``: ``generated`` images were drawn now, ``skipped`` were already there.
    """
    out, manifest = plan.out, plan.out / MANIFEST
    plan.resume.apply(manifest)
    progress = tqdm(
        total=len(plan.todo), desc="sample", unit="img", disable=not plan.progress, dynamic_ncols=True
    )
    for batch in batches(plan.todo, plan.batch_size):
        masks = plan.layouts.masks(batch) if plan.layouts is not None else None
        graphs = [plan.graphs[item.graph] for item in batch]
        images = draw_images(plan.pipe, graphs, batch, plan.sampling, masks)
        # Images first, then their lines: a line never names an image that is not complete on disk.
        for item, image in zip(batch, images, strict=True):
            with atomic_path(out / item.image) as tmp:
                image.save(tmp, format="PNG")
        saved = plan.save_layouts and masks is not None
        if saved:
            write_layouts(out, batch, masks)
        append_lines(manifest, [manifest_line(item, plan.settings, layout_image=saved) for item in batch])
        progress.update(len(batch))
    progress.close()
    return {
        "out": str(out),
        "manifest": str(manifest),
        "planned": len(plan.items),
        "skipped": len(plan.items) - len(plan.todo),
        "generated": len(plan.todo),
        "images": len(plan.resume.kept) + len(plan.todo),
        "pipeline_hash": plan.settings["pipeline_hash"],
        "height": plan.settings["height"],
        "width": plan.settings["width"],
    }


def sample(cfg: DictConfig) -> dict:
    """Generate the configured images (see ``configs/sample.yaml``), resuming what ``out`` already holds;
    returns :func:`run_plan`'s summary."""
    return run_plan(prepare(cfg))
