"""Graph edits (``python -m or_synth.edit``): one edit (:mod:`or_synth.data.edits`) of one scan's graph, drawn
per camera before and after with the same seed.

With a layout only the edited region is regenerated (latent inpainting, :mod:`or_synth.generator.editing`),
without one the whole image. Writes into ``out/<take>_<scan>_<edit>/``: ``before_cam{c}.png``,
``after_cam{c}.png``, ``full_cam{c}.png`` (the after graph regenerated everywhere), ``mask_cam{c}.png`` (the edit
region, white), ``null_cam{c}.png`` (the null edit: the region re-inpainted under the unchanged graph), ``graphs.json`` (both graphs in 4D-OR's scan form), ``edit.json`` (the edit, seeds, settings, and
per camera how much outside the region changed: MSE and SSIM for the inpainted and the fully regenerated image)
and ``pair.png``: before, after, edit mask and full regeneration side by side for every camera.

``edit.json`` (written last) records the settings that decide the images (``job``): a re-run with the same ones
finds the edit done, one with other settings is refused unless ``overwrite=true``
(:mod:`or_synth.sampling.edit_folder`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from or_synth.data import DatasetFormatError, load_scene_graphs
from or_synth.data.edits import EditResult, GraphEdit, apply_edit
from or_synth.data.io import atomic_path
from or_synth.data.manifest import LAYOUT_SOURCES
from or_synth.data.scene_graph import SceneGraphRecord, record_to_data
from or_synth.data.vocabulary import Vocabulary
from or_synth.generator import ORScenePipeline, pipeline_hash
from or_synth.generator.editing import kept_region_change, regenerate, renumber_mask
from or_synth.render.layout import check_drawable
from or_synth.render.pipeline import RENDERER_VERSION
from or_synth.reports.grids import sample_grid, save_image_atomic
from or_synth.sampling.edit_folder import RECORD, check_folder, clear_folder
from or_synth.sampling.files import write_json
from or_synth.sampling.layouts import LayoutJob, LayoutSource, open_layouts, resolve_layout
from or_synth.sampling.options import SamplingOptions, check_options
from or_synth.sampling.pipelines import encoder_vocabulary, pipeline_folder, prepare_pipeline, resolve_graphs
from or_synth.sampling.seeds import SampleItem, make_item

COLUMNS = ("before", "after (edited region)", "edit mask", "full regeneration")


def apply_drawable_edit(record: SceneGraphRecord, edit: GraphEdit | str) -> EditResult:
    """:func:`~or_synth.data.edits.apply_edit` refusing an edited graph the renderer calls physically impossible."""
    return apply_edit(record, edit, check=check_drawable)


def find_scan(records: Sequence[SceneGraphRecord], scan: str, source: Path) -> SceneGraphRecord:
    """``TAKE/SCAN`` or a scan id that one take has."""
    take, _, scan_id = str(scan).rpartition("/")
    if (take and not take.isdigit()) or not scan_id.isdigit():
        raise ValueError(
            f"scan={scan}: give it as TAKE/SCAN with numbers (e.g. 4/000057), or the scan id alone"
        )
    matches = [r for r in records if r.scan == scan_id.zfill(6) and (not take or r.take == int(take))]
    if len(matches) != 1:
        what = "no scan" if not matches else f"scan {scan_id} in takes {sorted(r.take for r in matches)}"
        raise DatasetFormatError(f"scan={scan}: {what}; give it as TAKE/SCAN (e.g. 4/000057)", file=source)
    return matches[0]


def label_maps(
    layout: str, source: LayoutSource | None, result: EditResult, cameras: list[int], seed: int
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]] | None:
    """Before and after label maps per camera, or None for layout=none.

    ``masks`` reads the scan's own masks and renumbers them after the edit (an added node has none); the other
    sources draw each graph (graph 0 before, 1 after). With ``predicted`` the edit changes the node tokens of
    the edited nodes' neighbours too, so boxes near the edit may move and the regenerated region grows.
    """
    if source is None:
        return None
    items = [[make_item(g, result.before, camera, 0, seed) for camera in cameras] for g in (0, 1)]
    before = dict(zip(cameras, source.masks(items[0]).numpy(), strict=True))
    if layout == "masks":
        return before, {camera: renumber_mask(mask, result) for camera, mask in before.items()}
    return before, dict(zip(cameras, source.masks(items[1]).numpy(), strict=True))


@dataclass
class EditPlan:
    """One checked edit: the scan's graph before and after, the loaded pipeline, the cameras' seeds (items) and
    their before/after label maps (None without a layout)."""

    cfg: DictConfig
    options: SamplingOptions
    source: Path
    root: Path
    result: EditResult
    folder: Path
    pipe: ORScenePipeline
    vocabulary: Vocabulary
    layout: str
    items: list[SampleItem]
    maps: tuple[dict[int, np.ndarray], dict[int, np.ndarray]] | None


def prepare_edit(cfg: DictConfig) -> EditPlan:
    """Check the edit (options, scan, the edit itself, layouts) and load the pipeline; writes nothing.

    Raises:
        ValueError: bad options; GraphEditError: an edit that cannot apply to the scan's graph.
        DatasetFormatError: no such scan, or a bad graphs file.
    """
    if not cfg.get("edit") or not cfg.get("scan"):
        raise ValueError('pipeline=, scan=TAKE/SCAN and edit="..." are required')
    options = check_options(cfg)
    source, root = resolve_graphs(cfg.graphs, cfg.dataset_root)
    record = find_scan(load_scene_graphs(source, Vocabulary.load(root)).records, str(cfg.scan), source)
    result = apply_drawable_edit(record, str(cfg.edit))
    folder = pipeline_folder(cfg.pipeline)
    pipe = prepare_pipeline(folder, options.sampler, options.device)
    vocabulary = encoder_vocabulary(pipe)
    layout = resolve_layout(options.layout, pipe)
    graphs = [record_to_data(r, vocabulary) for r in (result.before, result.after)]
    items = [make_item(0, record, camera, 0, options.seed) for camera in options.cameras]
    job = LayoutJob(pipe, folder, [result.before, result.after], graphs, items, options.cameras, options.seed,
                    source, root, cfg.get("layout_predictor"))  # fmt: skip
    maps = label_maps(layout, open_layouts(layout, job), result, options.cameras, options.seed)
    return EditPlan(cfg, options, source, root, result, folder, pipe, vocabulary, layout, items, maps)


def draw_edit(plan: EditPlan, out: Path) -> tuple[dict, dict[str, list[Image.Image]]]:
    """Per camera the before, after and full images (and the edit mask) in ``out``; returns ``edit.json``'s
    per-camera entries and the columns of ``pair.png``."""
    sampling = plan.options.sampling
    steps = {"num_inference_steps": sampling.steps, "guidance_scale": sampling.guidance_scale,
             "layout_guidance_scale": sampling.layout_guidance_scale}  # fmt: skip
    views, columns = {}, {name: [] for name in COLUMNS}
    for item in plan.items:
        camera = item.camera
        masks = (None, None) if plan.maps is None else (plan.maps[0][camera], plan.maps[1][camera])
        images = regenerate(
            plan.pipe, plan.result, camera, item.seed, before_mask=masks[0], after_mask=masks[1],
            dilation=int(plan.cfg.dilation), vocabulary=plan.vocabulary, **steps,
        )  # fmt: skip
        for name, image in (("before", images.before), ("after", images.after), ("full", images.full)):
            save_png(out / f"{name}_cam{camera}.png", picture(image))
        entry = {"seed": item.seed, "regenerated": "whole image"}
        if images.region is not None:
            save_png(out / f"mask_cam{camera}.png", picture(images.region))
            save_png(out / f"null_cam{camera}.png", picture(images.null))
            entry["regenerated"] = "edited region"
            entry["inpainted"] = finite_or_none(
                kept_region_change(images.before, images.after, images.region)
            )
            entry["full_regeneration"] = finite_or_none(
                kept_region_change(images.before, images.full, images.region)
            )
        views[str(camera)] = entry
        region = images.region if images.region is not None else np.ones(images.before.shape[-2:], bool)
        for column, shown in zip(
            columns.values(), (images.before, images.after, region, images.full), strict=True
        ):
            column.append(picture(shown))
    return views, columns


def edit_job(plan: EditPlan) -> dict:
    """What decides the edit's images (``edit.json``'s ``job``): a re-run with other values is refused unless
    ``overwrite``. The scan's graph is named by its content hash, so another scan of the same file may change."""
    options, record = plan.options, plan.result.before
    graph = hashlib.sha256(json.dumps(record.to_json(), sort_keys=True).encode()).hexdigest()[:16]
    predictor = plan.cfg.get("layout_predictor")
    return {
        "edit": str(plan.cfg.edit),
        "take": record.take,
        "scan": record.scan,
        "graph_hash": graph,
        "pipeline_hash": pipeline_hash(plan.folder),
        "layout": LAYOUT_SOURCES[plan.layout],
        "layout_renderer": RENDERER_VERSION if plan.layout == "render" else None,
        "layout_predictor_hash": pipeline_hash(predictor) if plan.layout == "predicted" else None,
        "dilation": int(plan.cfg.dilation),
        **options.drawing(),
    }


def edit(cfg: DictConfig) -> dict:
    """Run the configured edit (see ``configs/edit.yaml``); returns the ``edit.json`` content (with ``folder``).

    Raises:
        EditRefused: the edit's folder holds an edit of other settings and ``overwrite`` is false.
    """
    plan = prepare_edit(cfg)
    result, record = plan.result, plan.result.before
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", str(cfg.edit)).strip("_")
    out = Path(cfg.out) / f"{record.take}_{record.scan}_{slug}"
    job = edit_job(plan)
    done = check_folder(out, job, bool(cfg.overwrite))
    if done is not None:  # this very edit, whole: nothing to draw
        return {**done, "folder": str(out)}
    clear_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    views, columns = draw_edit(plan, out)
    cameras = ", ".join(map(str, plan.options.cameras))
    lines = [str(cfg.edit), f"take {record.take} scan {record.scan}, cameras {cameras}"]
    save_image_atomic(sample_grid([(lines, *columns.values())], labels=list(columns)), out / "pair.png")
    vocabulary = Vocabulary.load(plan.root)
    graphs = {"before": result.before.to_json(vocabulary), "after": result.after.to_json(vocabulary)}
    write_json(out / "graphs.json", graphs, indent=2)
    summary = {
        "edit": str(cfg.edit),
        "changed_nodes": sorted(result.changed_nodes),
        "take": record.take,
        "scan": record.scan,
        "graphs": str(plan.source),
        "pipeline": str(plan.folder),
        "pipeline_hash": job["pipeline_hash"],
        "layout": LAYOUT_SOURCES[plan.layout],
        "settings": OmegaConf.to_container(cfg, resolve=True),
        "job": job,
        "cameras": views,
    }
    write_json(out / RECORD, summary, indent=2)  # last: the folder's completion marker
    return {**summary, "folder": str(out)}


def finite_or_none(change: dict[str, float]) -> dict[str, float | None]:
    """:func:`kept_region_change` for ``edit.json``: a score is undefined (None, JSON ``null``) when the edited
    region covers the whole image and nothing outside it is left to compare."""
    return {key: value if math.isfinite(value) else None for key, value in change.items()}


def picture(image: torch.Tensor | np.ndarray) -> Image.Image:
    """A (3, H, W) float image in [0, 1], or an (H, W) bool mask (white inside), as a PIL image."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image.astype(np.uint8) * 255)
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8))


def save_png(path: Path, image: Image.Image) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
