"""The sample job (``python -m or_synth.sample``): images of scene graphs with a saved pipeline, written to
``out/images/take{T}_scan{S}_cam{C}_s{K}.png`` with one :class:`~or_synth.data.manifest.ManifestLine` per image in
``out/manifest.jsonl``.

:func:`prepare` checks the whole job (options, pipeline folder, graph labels, layouts, an ``out`` folder of
another job) and loads the pipeline, writing nothing; :func:`run_plan` draws what ``out`` does not hold yet. A
rerun resumes: images whose line and file exist are kept, the rest are drawn again to the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from or_synth.data import DatasetFormatError, load_scene_graphs
from or_synth.data.derangements import derangement
from or_synth.data.io import atomic_path
from or_synth.data.manifest import MANIFEST, ManifestLine, append_lines
from or_synth.data.vocabulary import Vocabulary
from or_synth.sampling.layouts import LayoutJob, LayoutSource, open_layouts, resolve_layout
from or_synth.sampling.options import check_options
from or_synth.sampling.pipelines import graphs_for_pipeline, pipeline_folder, prepare_pipeline, resolve_graphs
from or_synth.sampling.resume import Resume, resume_state
from or_synth.sampling.seeds import SampleItem, batches, draw_images, plan_items

# (items, their (B, H, W) label maps or None) -> one image per item.
Draw = Callable[[Sequence[SampleItem], torch.Tensor | None], list[Image.Image]]
PAINTER = "painter"  # pipeline=painter: the no-model control (or_synth.sampling.painter)


@dataclass
class SamplePlan:
    """Everything :func:`run_plan` needs, checked by :func:`prepare`.

    Attributes:
        draw: what turns a batch of items (and their layouts) into images: a pipeline, or the painter.
        graph_scans: per graph index, ``take/scan`` of the graph drawn in its place (``control=conflict``).
    """

    draw: Draw
    items: list[SampleItem]
    todo: list[SampleItem]
    out: Path
    settings: dict  # the job's fields of every manifest line
    resume: Resume
    layouts: LayoutSource | None
    save_layouts: bool
    batch_size: int
    progress: bool
    graph_scans: dict[int, str] = field(default_factory=dict)


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
    source, data_root = resolve_graphs(cfg.graphs, cfg.dataset_root)
    scene_graphs = load_scene_graphs(source, Vocabulary.load(data_root), strict=True)
    # Every stride-th graph (a spread over the whole file: every surgery phase), then the first `limit` of those.
    records = scene_graphs.records[:: int(cfg.get("stride", 1))]
    records = records[: int(cfg.limit)] if cfg.limit is not None else records
    if not records:
        raise DatasetFormatError("holds no scene graphs", file=source)
    if str(cfg.pipeline) == PAINTER:
        from or_synth.sampling.painter import prepare_painter

        return prepare_painter(cfg, options, records, source, data_root)

    folder = pipeline_folder(cfg.pipeline)
    pipe = prepare_pipeline(folder, options.sampler, options.device, progress=bool(cfg.progress))
    if options.control == "reconstruction":
        return prepare_reconstruction(cfg, options, pipe, folder, records, source, data_root)
    graphs = graphs_for_pipeline(pipe, records, source)
    items = plan_items(records, options.cameras, int(cfg.samples_per_graph), options.seed)
    layout = resolve_layout(options.layout, pipe)
    if cfg.get("save_layouts") and layout == "none":
        raise ValueError("save_layouts=true needs a layout: layout=masks, layout=render or layout=predicted")
    if options.control == "conflict" and len(records) < 2:
        raise ValueError("control=conflict needs at least two graphs (each drawn under another's layout)")
    job = LayoutJob(pipe, folder, records, graphs, items, options.cameras, options.seed, source, data_root,
                    cfg.get("layout_predictor"))  # fmt: skip
    layouts = open_layouts(layout, job)
    settings = {
        **graphs_fields(source),
        **options.recorded(layout, folder, pipe.image_size, cfg.get("layout_predictor")),
    }
    # control=conflict: graph g is drawn under the layout of its own scan with the graph of scan donor[g].
    donor = derangement(len(records), options.seed) if options.control == "conflict" else None

    def draw(batch: Sequence[SampleItem], masks: torch.Tensor | None) -> list[Image.Image]:
        own = [graphs[item.graph] for item in batch]
        if donor is None:
            return draw_images(
                pipe, own, batch, options.sampling, masks, null_graph=options.control == "null_graph"
            )
        drawn = [graphs[int(donor[item.graph])] for item in batch]
        return draw_images(pipe, drawn, batch, options.sampling, masks, layout_graphs=own)

    graph_scans = {}
    if donor is not None:
        graph_scans = {g: f"{records[int(d)].take}/{records[int(d)].scan}" for g, d in enumerate(donor)}
    return finish_plan(cfg, draw, items, settings, layouts, graph_scans)


def prepare_reconstruction(
    cfg, options, pipe, folder: Path, records, source: Path, data_root: Path
) -> SamplePlan:
    """``control=reconstruction``: each (scan, camera)'s REAL image encoded and decoded by the pipeline's own
    autoencoder (the posterior mean; no denoiser, no graph): what the first stage alone costs, the fidelity
    metrics' codec row. One image per (scan, camera), written and listed like samples."""
    from or_synth.data.images import frame_index, read_image
    from or_synth.generator.autoencoder import reconstruct

    items = plan_items(records, options.cameras, 1, options.seed)
    settings = {
        **graphs_fields(source),
        **options.recorded("none", folder, pipe.image_size, None),
        "sampler": "reconstruction",
        "steps": 0,
    }
    size = tuple(pipe.image_size)

    def draw(batch: Sequence[SampleItem], masks: torch.Tensor | None) -> list[Image.Image]:
        real = []
        for item in batch:
            record = records[item.graph]
            file = frame_index(data_root, record.take).image_path(record.scan, item.camera)
            real.append(read_image(file, size, take=record.take, scan=record.scan, camera=item.camera))
        images = reconstruct(pipe.vae, torch.stack(real))
        return [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]

    return finish_plan(cfg, draw, items, settings, None)


def graphs_fields(source: Path) -> dict:
    """The manifest's graphs file and its content hash (a changed file is another job's graphs)."""
    return {"graphs": str(source), "graphs_hash": hashlib.sha256(source.read_bytes()).hexdigest()[:16]}


def finish_plan(
    cfg: DictConfig,
    draw: Draw,
    items: list[SampleItem],
    settings: dict,
    layouts: LayoutSource | None,
    graph_scans: dict[int, str] | None = None,
) -> SamplePlan:
    """The plan of ``items`` into ``cfg.out``: what it already holds with these ``settings`` is kept (resume),
    a folder of other settings refused unless ``overwrite``."""
    out = Path(cfg.out)
    resume = resume_state(out, settings, bool(cfg.overwrite))
    done = {line.image for line in resume.kept}
    return SamplePlan(
        draw=draw,
        items=items,
        todo=[item for item in items if item.image not in done],
        out=out,
        settings=settings,
        resume=resume,
        layouts=layouts,
        save_layouts=bool(cfg.get("save_layouts", False)),
        batch_size=int(cfg.batch_size),
        progress=bool(cfg.progress),
        graph_scans=graph_scans or {},
    )


def manifest_line(
    item: SampleItem, settings: dict, *, layout_image: bool = False, graph_scan: str | None = None
) -> ManifestLine:
    """The item's line: its image and graph's scan, camera, sample and seed, and the job's ``settings``
    (``graph_scan``: the scan whose graph was drawn in its place, ``control=conflict``)."""
    saved = item.layout_image if layout_image else None
    where = (item.image, item.take, item.scan, item.camera)
    return ManifestLine(
        *where, sample=item.sample, seed=item.seed, layout_image=saved, graph_scan=graph_scan, **settings
    )


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
        images = plan.draw(batch, masks)
        # Images first, then their lines: a line never names an image that is not complete on disk.
        for item, image in zip(batch, images, strict=True):
            with atomic_path(out / item.image) as tmp:
                image.save(tmp, format="PNG")
        saved = plan.save_layouts and masks is not None
        if saved:
            write_layouts(out, batch, masks)
        lines = [
            manifest_line(
                item, plan.settings, layout_image=saved, graph_scan=plan.graph_scans.get(item.graph)
            )
            for item in batch
        ]
        append_lines(manifest, lines)
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
