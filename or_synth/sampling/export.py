"""The synthetic training-set export (``python -m or_synth.export``): scene graphs into a complete dataset in
4D-OR's on-disk layout, the one the renderer writes (``export_holistic_take{T}_processed/`` with the frame list,
the cameras' calibration and colour images, ``relationships_{split}.json``, ``phases/``), so ``FourDORDataset``,
``python -m or_synth.data.summary`` and the official 4D-OR image loader read it unchanged.

Each exported scan also gets the renderer's extras: the instance masks that conditioned it (when there is a
layout) and ``or_synth_annotations/{scan}.json`` (graph, phase, source scan, per camera the frame id, seed and
node boxes). ``manifest.jsonl`` lists every image (:class:`~or_synth.data.manifest.ManifestLine`) and
``dataset_card.md`` the settings and the main-action counts before and after rebalancing.

A scan is finished when its annotation (written last) and its images are whole
(:func:`~or_synth.sampling.export_files.scan_finished`): a rerun skips finished scans and draws the rest again,
so a crash loses at most the scan in flight, and a cut-off or deleted file is drawn again. ``overwrite=true``
replaces an export of other settings by deleting only the files it wrote. Under ``accelerate launch`` rank r
draws scans r, r + world, ...; images are seeded per (seed, take, scan, camera, copy), so the bytes do not depend
on the number of processes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from or_synth.data.io import atomic_path, file_sha256
from or_synth.generator import ORScenePipeline, pipeline_hash
from or_synth.sampling.export_card import dataset_card
from or_synth.sampling.export_files import (
    CARD,
    EXPORT_MANIFEST,
    export_files,
    scan_finished,
    scan_items,
    write_image_manifest,
    write_scan,
    write_takes,
)
from or_synth.sampling.export_scans import (
    ExportRefused,
    ExportScan,
    ExportSource,
    copies_per_graph,
    plan_export,
    source_graphs,
)
from or_synth.sampling.files import write_json
from or_synth.sampling.layouts import LayoutJob, LayoutSource, open_layouts, resolve_layout
from or_synth.sampling.options import SamplingOptions, check_options
from or_synth.sampling.pipelines import graphs_for_pipeline, pipeline_folder, prepare_pipeline
from or_synth.sampling.seeds import draw_in_batches

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


def prepare_out(out: Path, settings: dict, overwrite: bool, source_root: Path | None) -> list[Path] | None:
    """Check ``out`` (reads only): refuse a source dataset's root, a folder of files this command did not write,
    a damaged export record and an export with other settings (unless ``overwrite``).

    Returns:
        (``overwrite`` of an export with other settings) the earlier export's files, to delete before writing
        (:func:`~or_synth.sampling.export_files.export_files`: the files it wrote, nothing else); else None.
    """
    if source_root is not None and out.resolve() == Path(source_root).resolve():
        raise ExportRefused(f"out={out} is the source dataset's root; choose another folder")
    record = out / EXPORT_MANIFEST
    if not out.is_dir() or not any(out.iterdir()):
        return None
    if not record.is_file():
        raise ExportRefused(f"{out} holds files this command did not write; choose another out=")
    previous = read_record(record, overwrite)
    if previous is not None and previous.get("settings") == settings:
        return None  # the same export: resume it
    if not overwrite:
        differing = sorted(k for k in settings if previous["settings"].get(k) != settings[k])
        raise ExportRefused(
            f"{out} holds an export with other settings ({', '.join(differing)}); nothing was changed. "
            "Pass overwrite=true to replace it (only the files it wrote are deleted), or choose another out="
        )
    return export_files(out)


def read_record(record: Path, overwrite: bool) -> dict | None:
    """The export record's content; a damaged one is refused naming the file (None with ``overwrite``: the
    export is replaced, its files found from the take files it wrote)."""
    try:
        document = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("settings"), dict):
            raise ValueError("no settings in it")
        return document
    except (OSError, UnicodeDecodeError, ValueError) as error:
        if overwrite:
            return None
        reason = (
            f"line {error.lineno} column {error.colno}: {error.msg}"
            if isinstance(error, json.JSONDecodeError)
            else error
        )
        raise ExportRefused(
            f"{record} is damaged ({reason}): the export's settings are unknown, so it cannot be resumed; nothing "
            "was changed. Pass overwrite=true to replace the export (only the files it wrote are deleted), or "
            "choose another out="
        ) from None


def delete_export(out: Path, files: list[Path]) -> None:
    """Delete an earlier export's ``files`` (the record last: a crash in between leaves it to say what the
    folder is), then the folders they leave empty; any other file (a user's notes, an evaluation folder) stays,
    and so do the folders holding one."""
    for path in files:
        path.unlink(missing_ok=True)
    folders = sorted({p.parent for p in files if p.parent != out}, key=lambda p: len(p.parts), reverse=True)
    for folder in folders:
        for empty in (folder, folder.parent):
            if empty != out and empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()


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
    replaces: list[Path] | None  # overwrite: the earlier export's files, deleted before writing


def prepare_export(cfg: DictConfig, device, *, main: bool = True) -> ExportPlan:
    """Check the whole export and load the pipeline on ``device``; reads files but writes nothing.

    Args:
        main: the main process, the one that checks (and later writes) ``out``'s own files; under ``accelerate``
            the others start once it has (checking too, they could see its overwrite half done).

    Raises:
        ValueError / FileNotFoundError / DatasetFormatError: as :func:`or_synth.sampling.plan.prepare`.
        ExportRefused: validation / test graphs without ``allow_eval_graphs``, a scene-process take that is
            no training take; ``out`` refused by :func:`prepare_out`.
    """
    options = check_options(cfg)
    source = source_graphs(cfg)
    copies = copies_per_graph(source.records, int(cfg.samples_per_graph), cfg.rebalance, options.seed)
    scans = plan_export(source.records, source.phases, copies)
    folder = pipeline_folder(cfg.pipeline)
    pipe = prepare_pipeline(folder, options.sampler, device or options.device)
    graphs = graphs_for_pipeline(pipe, source.records, source.description)
    layout = resolve_layout(options.layout, pipe)
    cameras = sorted(options.cameras)
    items = [item for scan in scans for item in scan_items(scan, cameras, options.seed)]
    job = LayoutJob(pipe, folder, source.records, graphs, items, cameras, options.seed, source.file, source.root,
                    cfg.get("layout_predictor"))  # fmt: skip
    layouts = open_layouts(layout, job)
    settings = export_settings(cfg, source, folder, layout)
    out = Path(cfg.out)
    replaces = prepare_out(out, settings, bool(cfg.overwrite), source.root) if main else None
    return ExportPlan(cfg, options, source, folder, pipe, graphs, copies, scans, cameras, layout, layouts,
                      settings, out, replaces)  # fmt: skip


def start_export(plan: ExportPlan) -> None:
    """(Main process) the earlier export replaced (``overwrite``), the export record (incomplete), the take files."""
    if plan.replaces is not None:
        delete_export(plan.out, plan.replaces)
    plan.out.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "settings": plan.settings, "complete": False}
    write_json(plan.out / EXPORT_MANIFEST, record, indent=2)
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
        tmp.write_text(card, encoding="utf-8")
    images = len(plan.scans) * len(plan.cameras)
    record = {
        "format": FORMAT,
        "settings": plan.settings,
        "complete": True,
        "scans": len(plan.scans),
        "images": images,
    }
    write_json(plan.out / EXPORT_MANIFEST, record, indent=2)


def export(cfg: DictConfig) -> dict:
    """Run the configured export (see ``configs/export.yaml``), resuming what ``out`` already holds.

    Returns:
        ``{"out", "scans", "cameras", "images", "generated", "process_index"}``: ``generated`` scans were drawn
        now by this process (``process_index`` of the ``accelerate`` job; 0 alone).
    """
    from accelerate import PartialState

    state = PartialState(cpu=str(cfg.device) == "cpu")
    plan = prepare_export(cfg, None if state.num_processes == 1 else state.device, main=state.is_main_process)
    if state.is_main_process:
        start_export(plan)
    state.wait_for_everyone()
    mine = [s for i, s in enumerate(plan.scans) if i % state.num_processes == state.process_index]
    # Finished scans are checked by content: a cut-off image or annotation is drawn again.
    masks = plan.layouts is not None
    todo = [s for s in mine if not scan_finished(plan.out, s, plan.cameras, plan.options.seed, masks)]
    draw_scans(plan, todo, bool(cfg.progress) and state.is_local_main_process)
    state.wait_for_everyone()
    if state.is_main_process:
        finish_export(plan)
    return {"out": str(plan.out), "scans": len(plan.scans), "cameras": plan.cameras,
            "images": len(plan.scans) * len(plan.cameras), "generated": len(todo),
            "process_index": state.process_index}  # fmt: skip
