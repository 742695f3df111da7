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
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from or_synth.data.annotations import annotation_path
from or_synth.data.images import color_image_path
from or_synth.data.io import atomic_path, atomic_write_json, file_sha256
from or_synth.data.manifest import LAYOUT_SOURCES, MANIFEST, ManifestLine, path_in_folder, write_manifest
from or_synth.data.vocabulary import SPLIT_TAKES
from or_synth.generator import pipeline_hash
from or_synth.render.pipeline import RENDERER_VERSION
from or_synth.render.room import make_cameras
from or_synth.render.writer import frame_id, node_boxes, write_mask, write_take_files
from or_synth.sampling.export_card import dataset_card
from or_synth.sampling.export_scans import (
    CAMERA_JITTER,
    ExportRefused,
    ExportScan,
    ExportSource,
    copies_per_graph,
    plan_export,
    source_graphs,
)
from or_synth.sampling.layouts import LayoutJob, open_layouts, resolve_layout
from or_synth.sampling.options import SamplingOptions, check_options
from or_synth.sampling.pipelines import graphs_for_pipeline, pipeline_folder, prepare_pipeline
from or_synth.sampling.seeds import draw_in_batches, make_item

EXPORT_MANIFEST = "or_synth_export.json"
CARD = "dataset_card.md"
FORMAT = (
    "or_synth.generate/1"  # the export record's format (unchanged since the command was or_synth.generate)
)
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


def write_takes(out: Path, scans: list[ExportScan], size: tuple[int, int], seed: int) -> None:
    """Each take's frame list, camera calibration and phase ranges (the renderer's take files)."""
    height, width = size
    for take in sorted({s.take for s in scans}):
        in_take = [s for s in scans if s.take == take]
        ranges: dict[str, list[int]] = {}
        for s in in_take:
            if s.phase is not None:
                ranges.setdefault(s.phase, [s.index, s.index])[1] = s.index
        rig = make_cameras(width, height, np.random.default_rng([seed, take, 1_000_003]), CAMERA_JITTER)
        write_take_files(out, take, len(in_take), rig, ranges or None)


def export(cfg: DictConfig) -> dict:
    """Run the configured export (see ``configs/export.yaml``).

    Returns:
        ``{"out", "scans", "cameras", "images", "generated", "process_index"}``: ``generated`` scans were drawn now (by
        this process, ``process_index`` of the ``accelerate`` job).
    """
    from accelerate import PartialState

    state = PartialState(cpu=str(cfg.device) == "cpu")
    options = check_options(cfg)
    source = source_graphs(cfg)
    folder = pipeline_folder(cfg.pipeline)
    device = options.device if state.num_processes == 1 else state.device
    pipe = prepare_pipeline(folder, options.sampler, device)
    graphs = graphs_for_pipeline(pipe, source.records, source.description)
    layout = resolve_layout(options.layout, pipe)
    copies = copies_per_graph(source.records, int(cfg.samples_per_graph), cfg.rebalance, options.seed)
    scans = plan_export(source.records, source.phases, copies)
    cameras = sorted(options.cameras)
    items = [item for scan in scans for item in scan_items(scan, cameras, options.seed)]
    job = LayoutJob(pipe, folder, source.records, graphs, items, cameras, options.seed, source.file, source.root,
                    cfg.get("layout_predictor"))  # fmt: skip
    layouts = open_layouts(layout, job)
    out = Path(cfg.out)
    settings = export_settings(cfg, source, folder, layout)
    if state.is_main_process:
        prepare_out(out, settings, bool(cfg.overwrite), source.root)
        atomic_write_json(
            out / EXPORT_MANIFEST, {"format": FORMAT, "settings": settings, "complete": False}, indent=2
        )
        write_takes(out, scans, pipe.image_size, options.seed)
    state.wait_for_everyone()

    mine = [s for i, s in enumerate(scans) if i % state.num_processes == state.process_index]
    todo = [s for s in mine if not annotation_path(out, s.take, s.scan).is_file()]
    progress = tqdm(total=len(todo) * len(cameras), desc="export", unit="image",
                    disable=not (cfg.progress and state.is_local_main_process))  # fmt: skip
    for scan in todo:
        items = scan_items(scan, cameras, options.seed)
        masks = layouts.masks(items) if layouts is not None else None
        images = draw_in_batches(pipe, [graphs[scan.graph]] * len(items), items, options.sampling, masks,
                                 int(cfg.batch_size))  # fmt: skip
        write_scan(out, scan, items, images, masks, int(cfg.jpeg_quality), settings)
        progress.update(len(cameras))
    progress.close()
    state.wait_for_everyone()
    if state.is_main_process:
        common = line_settings(options, settings, pipe.image_size, folder, cfg.get("layout_predictor"))
        finish(out, scans, cameras, options.seed, settings, common)
        with atomic_path(out / CARD) as tmp:
            tmp.write_text(dataset_card(settings, source.records, copies, len(scans), cameras))
        complete = {"format": FORMAT, "settings": settings, "complete": True, "scans": len(scans),
                    "images": len(scans) * len(cameras)}  # fmt: skip
        atomic_write_json(out / EXPORT_MANIFEST, complete, indent=2)
    return {"out": str(out), "scans": len(scans), "cameras": cameras, "images": len(scans) * len(cameras),
            "generated": len(todo), "process_index": state.process_index}  # fmt: skip


def scan_items(scan: ExportScan, cameras: list[int], seed: int):
    """The scan's images, one per camera, seeded by (seed, source take, source scan, camera, copy)."""
    return [make_item(scan.graph, scan.record, camera, scan.copy, seed) for camera in cameras]


def source_scan(scan: ExportScan, settings: dict) -> dict:
    """Where an exported scan's graph came from (its annotation's and manifest lines' ``source_scan``)."""
    record = scan.record
    return {"take": record.take, "scan": record.scan, "copy": scan.copy, "graphs": settings["graphs"]}


def write_scan(out: Path, scan: ExportScan, items, images, masks, jpeg_quality: int, settings: dict) -> None:
    """One scan's images (and masks), then its annotation: the scan's completion marker."""
    views = {}
    for i, (item, image) in enumerate(zip(items, images, strict=True)):
        frame = frame_id(scan.take, scan.index, item.camera)
        with atomic_path(color_image_path(out, scan.take, item.camera, frame)) as tmp:
            image.convert("RGB").save(tmp, format="JPEG", quality=jpeg_quality)
        view = {"frame_id": frame, "seed": item.seed}
        if masks is not None:
            labels = masks[i].numpy()
            write_mask(out, scan.take, scan.index, item.camera, labels)
            view["boxes"], view["pixels"] = node_boxes(labels, scan.record.num_nodes)
        views[str(item.camera)] = view
    document = {
        "take_idx": scan.take,
        "scan": scan.scan,
        "phase": scan.phase,
        "scene_graph": exported_graph(scan),
        "source_scan": source_scan(scan, settings),
        "pipeline_hash": settings["pipeline_hash"],
        "layout": LAYOUT_SOURCES[settings["layout"]],
        "cameras": views,
    }
    atomic_write_json(annotation_path(out, scan.take, scan.scan), document)


def exported_graph(scan: ExportScan) -> dict:
    """The scan's graph in 4D-OR's scan form, under its exported take and scan id."""
    return {**scan.record.to_json(), "take_idx": scan.take, "scan": scan.scan}


def line_settings(
    options: SamplingOptions, settings: dict, size: tuple[int, int], folder: Path, predictor
) -> dict:
    """The job's fields of every manifest line (:data:`or_synth.data.manifest.SETTINGS`, but the graphs)."""
    layout = settings["layout"]
    return {
        "layout": LAYOUT_SOURCES[layout],
        "sampler": options.sampler,
        "steps": options.sampling.steps,
        "guidance_scale": options.sampling.guidance_scale,
        "layout_guidance_scale": options.sampling.layout_guidance_scale,
        "base_seed": options.seed,
        "pipeline": str(folder),
        "pipeline_hash": settings["pipeline_hash"],
        "height": size[0],
        "width": size[1],
        "layout_renderer": RENDERER_VERSION if layout == "render" else None,
        "layout_predictor": str(predictor) if layout == "predicted" else None,
        "layout_predictor_hash": settings.get("layout_predictor_hash"),
    }


def finish(
    out: Path, scans: list[ExportScan], cameras: list[int], seed: int, settings: dict, common: dict
) -> None:
    """The relationships files and the image manifest, from the plan (every scan's files are written)."""
    by_split: dict[str, list] = {}
    for scan in scans:
        by_split.setdefault(split_of(scan.take), []).append(exported_graph(scan))
    hashes = {}
    for split, graphs in by_split.items():
        atomic_write_json(out / f"relationships_{split}.json", {"scans": graphs})
        hashes[split] = file_sha256(out / f"relationships_{split}.json")[:16]
    lines = []
    for scan in scans:
        split = split_of(scan.take)
        for item in scan_items(scan, cameras, seed):
            image = color_image_path(
                out, scan.take, item.camera, frame_id(scan.take, scan.index, item.camera)
            )
            lines.append(
                ManifestLine(
                    image=path_in_folder(image, out),
                    take=scan.take,
                    scan=scan.scan,
                    camera=item.camera,
                    seed=item.seed,
                    graphs=f"relationships_{split}.json",
                    graphs_hash=hashes[split],
                    source_scan=source_scan(scan, settings),
                    **common,
                )
            )
    write_manifest(out / MANIFEST, lines)


def split_of(take: int) -> str:
    return next(split for split, takes in SPLIT_TAKES.items() if take in takes)
