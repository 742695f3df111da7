"""The synthetic training-set export (``python -m or_synth.export``): scene graphs into a complete dataset in
4D-OR's on-disk layout, the one the renderer writes (``export_holistic_take{T}_processed/`` with the frame list,
the cameras' calibration and colour images, ``relationships_{split}.json``, ``phases/``), so ``FourDORDataset``,
``python -m or_synth.data.summary`` and the official 4D-OR image loader read it unchanged.

Each exported scan also gets the renderer's extras: the instance masks that conditioned it (when there is a
layout) and ``or_synth_annotations/{scan}.json`` (graph, phase, source scan, per camera the frame id, seed and
node boxes). ``manifest.jsonl`` lists every image (:class:`~or_synth.data.manifest.ManifestLine`) and
``dataset_card.md`` the settings and the main-action counts before and after rebalancing.

A scan is finished when its annotation exists (written last): a rerun skips finished scans, and a crash loses at
most the scan in flight. Under ``accelerate launch`` rank r draws scans r, r + world, ...; images are seeded per
(seed, take, scan, camera, copy), so the bytes do not depend on the number of processes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from or_synth.data.annotations import annotation_path
from or_synth.data.io import atomic_path, atomic_write_json, file_sha256
from or_synth.generator import ORScenePipeline, pipeline_hash
from or_synth.sampling.export_card import dataset_card
from or_synth.sampling.export_files import scan_items, write_image_manifest, write_scan, write_takes
from or_synth.sampling.export_scans import (
    ExportRefused,
    ExportScan,
    ExportSource,
    copies_per_graph,
    plan_export,
    source_graphs,
)
from or_synth.sampling.layouts import LayoutJob, LayoutSource, open_layouts, resolve_layout
from or_synth.sampling.options import SamplingOptions, check_options
from or_synth.sampling.pipelines import graphs_for_pipeline, pipeline_folder, prepare_pipeline
from or_synth.sampling.seeds import draw_in_batches

EXPORT_MANIFEST = "or_synth_export.json"
CARD = "dataset_card.md"
FORMAT = "or_synth.generate/1"  # the export record's format (unchanged since the command's old name)
# The options that decide the export's bytes (with the graphs and the pipeline's hash).
SETTINGS_KEYS = ("samples_per_graph", "limit", "cameras", "layout", "sampler", "steps", "guidance_scale",
                 "layout_guidance_scale", "jpeg_quality", "seed", "rebalance", "allow_eval_graphs")  # fmt: skip


def export_settings(cfg: DictConfig, source: ExportSource, folder: Path, layout: str) -> dict:
    """What decides the export's bytes: the graphs (a file is named with its content hash), the pipeline's hash,
    every sampling setting, and ``layout`` as resolved (``auto`` records the source it became)."""
    graphs = source.description
    if source.file is not None:
        graphs = f"{graphs} (sha256 {file_sha256(source.file)[:16]})"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    settings = {
        "graphs": graphs,
        "pipeline_hash": pipeline_hash(folder),
        **{k: resolved[k] for k in SETTINGS_KEYS},
    }
    settings["layout"] = layout
    if layout == "predicted":  # another predictor draws other layouts, hence other images
        settings["layout_predictor_hash"] = pipeline_hash(cfg.layout_predictor)
    return settings


def prepare_out(out: Path, settings: dict, overwrite: bool, source_root: Path | None) -> None:
    """Refuse a source dataset's root and a folder exported with other settings (unless overwrite)."""
    if source_root is not None and out.resolve() == Path(source_root).resolve():
        raise ExportRefused(f"out={out} is the source dataset's root; choose another folder")
    record = out / EXPORT_MANIFEST
    if out.is_dir() and any(out.iterdir()):
        if not record.is_file():
            raise ExportRefused(f"{out} holds files this command did not write; choose another out=")
        previous = json.loads(record.read_text()).get("settings", {})
        if previous != settings:
            if not overwrite:
                differing = sorted(k for k in settings if previous.get(k) != settings[k])
                raise ExportRefused(
                    f"{out} holds an export with other settings ({', '.join(differing)}); nothing was changed. "
                    "Pass overwrite=true to replace it, or choose another out="
                )
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class ExportPlan:
    """Everything the export's steps need, checked by :func:`prepare_export`."""

    cfg: DictConfig
    options: SamplingOptions
    source: ExportSource
    folder: Path
    pipe: ORScenePipeline
    graphs: list
    copies: list[int]
    scans: list[ExportScan]
    cameras: list[int]
    layout: str
    layouts: LayoutSource | None
    settings: dict
    out: Path


def prepare_export(cfg: DictConfig, device) -> ExportPlan:
    """Check the whole export and load the pipeline on ``device``; reads files but writes nothing.

    Raises:
        ValueError / FileNotFoundError / DatasetFormatError: as :func:`or_synth.sampling.plan.prepare`.
        ExportRefused: validation / test graphs without ``allow_eval_graphs``, a scene-process take that is
            no training take.
    """
    options = check_options(cfg)
    source = source_graphs(cfg)
    folder = pipeline_folder(cfg.pipeline)
    pipe = prepare_pipeline(folder, options.sampler, device or options.device)
    graphs = graphs_for_pipeline(pipe, source.records, source.description)
    layout = resolve_layout(options.layout, pipe)
    copies = copies_per_graph(source.records, int(cfg.samples_per_graph), cfg.rebalance, options.seed)
    scans = plan_export(source.records, source.phases, copies)
    cameras = sorted(options.cameras)
    items = [item for scan in scans for item in scan_items(scan, cameras, options.seed)]
    job = LayoutJob(pipe, folder, source.records, graphs, items, cameras, options.seed, source.file, source.root,
                    cfg.get("layout_predictor"))  # fmt: skip
    layouts = open_layouts(layout, job)
    settings = export_settings(cfg, source, folder, layout)
    return ExportPlan(cfg, options, source, folder, pipe, graphs, copies, scans, cameras, layout, layouts,
                      settings, Path(cfg.out))  # fmt: skip


def start_export(plan: ExportPlan) -> None:
    """(Main process) the checked ``out`` folder, its export record (incomplete) and the take files."""
    prepare_out(plan.out, plan.settings, bool(plan.cfg.overwrite), plan.source.root)
    record = {"format": FORMAT, "settings": plan.settings, "complete": False}
    atomic_write_json(plan.out / EXPORT_MANIFEST, record, indent=2)
    write_takes(plan.out, plan.scans, plan.pipe.image_size, plan.options.seed)


def draw_scans(plan: ExportPlan, todo: list[ExportScan], progress: bool) -> None:
    """Draw and write ``todo`` scan by scan (each scan's annotation last)."""
    bar = tqdm(total=len(todo) * len(plan.cameras), desc="export", unit="image", disable=not progress)
    for scan in todo:
        items = scan_items(scan, plan.cameras, plan.options.seed)
        masks = plan.layouts.masks(items) if plan.layouts is not None else None
        graphs = [plan.graphs[scan.graph]] * len(items)
        images = draw_in_batches(
            plan.pipe, graphs, items, plan.options.sampling, masks, int(plan.cfg.batch_size)
        )
        write_scan(plan.out, scan, items, images, masks, int(plan.cfg.jpeg_quality), plan.settings)
        bar.update(len(items))
    bar.close()


def finish_export(plan: ExportPlan) -> None:
    """(Main process, every scan written) relationships files, image manifest, card, the complete record."""
    predictor = plan.cfg.get("layout_predictor")
    common = plan.options.recorded(plan.layout, plan.folder, plan.pipe.image_size, predictor)
    write_image_manifest(plan.out, plan.scans, plan.cameras, plan.options.seed, plan.settings, common)
    card = dataset_card(plan.settings, plan.source.records, plan.copies, len(plan.scans), plan.cameras)
    with atomic_path(plan.out / CARD) as tmp:
        tmp.write_text(card)
    images = len(plan.scans) * len(plan.cameras)
    record = {
        "format": FORMAT,
        "settings": plan.settings,
        "complete": True,
        "scans": len(plan.scans),
        "images": images,
    }
    atomic_write_json(plan.out / EXPORT_MANIFEST, record, indent=2)


def export(cfg: DictConfig) -> dict:
    """Run the configured export (see ``configs/export.yaml``), resuming what ``out`` already holds.

    Returns:
        ``{"out", "scans", "cameras", "images", "generated", "process_index"}``: ``generated`` scans were drawn
        now by this process (``process_index`` of the ``accelerate`` job; 0 alone).
    """
    from accelerate import PartialState

    state = PartialState(cpu=str(cfg.device) == "cpu")
    plan = prepare_export(cfg, None if state.num_processes == 1 else state.device)
    if state.is_main_process:
        start_export(plan)
    state.wait_for_everyone()
    mine = [s for i, s in enumerate(plan.scans) if i % state.num_processes == state.process_index]
    todo = [s for s in mine if not annotation_path(plan.out, s.take, s.scan).is_file()]
    draw_scans(plan, todo, bool(cfg.progress) and state.is_local_main_process)
    state.wait_for_everyone()
    if state.is_main_process:
        finish_export(plan)
    return {"out": str(plan.out), "scans": len(plan.scans), "cameras": plan.cameras,
            "images": len(plan.scans) * len(plan.cameras), "generated": len(todo),
            "process_index": state.process_index}  # fmt: skip
