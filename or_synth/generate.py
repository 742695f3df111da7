"""Synthetic training-set export: ``python -m or_synth.generate pipeline=... graphs=train out=DIR``.

Turns scene graphs into a complete dataset in 4D-OR's on-disk layout, the same one the renderer writes
(``export_holistic_take{T}_processed/`` with the frame list, the cameras' calibration and colour images,
``relationships_{split}.json``, ``phases/``), so ``FourDORDataset``, ``python -m or_synth.data.summary`` and the
official 4D-OR image loader read it unchanged. Each exported scan also gets the renderer's extras: the instance
masks that conditioned it (when there is a layout) and ``or_synth_annotations/{scan}.json`` (graph, phase, source
scan, per camera the frame id, seed and node boxes). ``manifest.jsonl`` lists every image (graph source, camera,
seed, pipeline hash) and ``dataset_card.md`` the settings and the main-action counts before and after rebalancing.

Scans within a take are ordered by surgery phase, so every phase is one contiguous range as in 4D-OR's phase
files; a rebalanced graph's copies are consecutive scans. A scan is finished when its annotation exists (written
last): a re-run skips finished scans, and a crash loses at most the scan in flight. Under ``accelerate launch``
rank r draws scans r, r + world, ...; images are seeded per (seed, take, scan, camera, copy), so the bytes do not
depend on the number of processes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from or_synth.data import DatasetFormatError, load_scene_graphs
from or_synth.data.annotations import annotation_path, read_instance_mask
from or_synth.data.images import color_image_path, frame_index
from or_synth.data.io import atomic_path, atomic_write_json
from or_synth.data.phases import PhaseTable
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import CAMERAS, PHASES, SPLIT_TAKES, Vocabulary, main_action
from or_synth.generator import make_scheduler, pipeline_hash
from or_synth.generator.shipped import resolve_pipeline
from or_synth.render import layout_masks
from or_synth.render.room import make_cameras
from or_synth.render.writer import frame_id, node_boxes, write_mask, write_take_files
from or_synth.sample import (
    check_predictor_folder,
    graphs_for_pipeline,
    item_seed,
    load_layout_predictor,
    load_pipeline,
    predict_layouts,
    resolve_graphs,
)
from or_synth.sample import generate as draw_images

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
EXPORT_MANIFEST = "or_synth_export.json"
IMAGE_MANIFEST = "manifest.jsonl"
CARD = "dataset_card.md"
FORMAT = "or_synth.generate/1"
CAMERA_JITTER = 0.08  # the renderer's default: layout=render places cameras as the renderer does
EVAL_SPLITS = ("validation", "test")


class ExportRefused(RuntimeError):
    """The output folder holds something this export must not write into."""


@dataclass(frozen=True)
class ExportScan:
    """One exported scan: a source graph's ``copy``-th rendition as scan ``index`` of ``take``."""

    take: int
    index: int
    record: SceneGraphRecord
    copy: int
    phase: str | None

    @property
    def scan(self) -> str:
        return f"{self.index:06d}"


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="generate", overrides=list(overrides))


# --- sources -------------------------------------------------------------------------------------------------
def source_graphs(cfg: DictConfig) -> tuple[list[SceneGraphRecord], dict, str, Path | None]:
    """(records, phase name by (take, scan), the source (a file, or the scene process and its settings), its root)."""
    if str(cfg.graphs) == "scene_process":
        return _scene_process_graphs(cfg.scene_process)
    split = str(cfg.graphs)
    source, root = resolve_graphs(cfg.graphs, cfg.dataset_root)
    records = load_scene_graphs(source, Vocabulary.load(root)).records
    eval_takes = {t for s in EVAL_SPLITS for t in SPLIT_TAKES[s]}
    held_out = sorted({r.take for r in records} & eval_takes)
    if (held_out or split in (*EVAL_SPLITS, "val")) and not cfg.allow_eval_graphs:
        raise ExportRefused(
            f"{source} holds graphs of 4D-OR's validation/test takes {held_out or split}: a synthetic training set "
            "must not be made from the graphs models are scored on. Use graphs=train or graphs=scene_process, or "
            "pass allow_eval_graphs=true (recorded in the dataset card)"
        )
    try:
        table = PhaseTable.load(root)
        phases = {(r.take, r.scan): _phase_name(table.phase_id(r.take, r.scan)) for r in records}
    except (FileNotFoundError, DatasetFormatError):
        phases = {}
    return list(records), phases, str(source), root


def _phase_name(phase_id: int) -> str | None:
    return PHASES[phase_id] if phase_id >= 0 else None


def _scene_process_graphs(settings) -> tuple[list[SceneGraphRecord], dict, str, None]:
    """New graphs from the renderer's phase-driven scene process (with CloseTo from the 3D placement)."""
    from or_synth.render.pipeline import ScanJob, scan_record
    from or_synth.render.scene_process import phase_ranges

    seed, boost = int(settings.seed), float(settings.rare_action_boost)
    n = int(settings.scans_per_take)
    records, phases = [], {}
    for take in [int(t) for t in settings.takes]:
        if take not in SPLIT_TAKES["train"]:
            raise ExportRefused(
                f"scene_process.takes: take {take} is not a 4D-OR training take {SPLIT_TAKES['train']}"
            )
        for phase, (start, end) in phase_ranges(n, np.random.default_rng([seed, take, 1_000_033])).items():
            for i in range(start, end + 1):
                job = ScanJob(take=take, scan_index=i, phase=phase, record=None, root="", seed=seed,
                              rare_action_boost=boost, image_size=(8, 8), jpeg_quality=(95, 95),
                              camera_jitter=CAMERA_JITTER, layout_tries=1)  # fmt: skip
                record = scan_record(job)[0]
                records.append(record)
                phases[record.key] = phase
    what = f"scene_process(takes={list(settings.takes)}, scans_per_take={n}, seed={seed}, rare_action_boost={boost})"
    return records, phases, what, None


# --- rebalancing ---------------------------------------------------------------------------------------------
def copies_per_graph(records: Sequence[SceneGraphRecord], per_graph: int, rebalance, seed: int) -> list[int]:
    """How many scans each source graph becomes: ``per_graph`` each, or re-weighted towards rare main actions.

    The total stays ``len(records) * per_graph``; action a gets a share proportional to its target weight, split
    evenly over its graphs (the remainder goes to graphs picked by a seeded shuffle)."""
    total = len(records) * per_graph
    if rebalance is None or not records:
        return [per_graph] * len(records)
    actions = [main_action(r.predicates) for r in records]
    counts = Counter(actions)
    weights = rebalance_weights(rebalance, counts)
    mass = sum(weights.values())
    if mass <= 0:
        raise ValueError(f"rebalance={rebalance}: the actions present ({sorted(counts)}) all have weight 0")
    # Largest-remainder apportionment: the shares add up to exactly `total`.
    targets = {a: total * weights[a] / mass for a in counts}
    shares = {a: int(t) for a, t in targets.items()}
    by_remainder = sorted(counts, key=lambda a: (-(targets[a] - shares[a]), a))
    for action in by_remainder[: total - sum(shares.values())]:
        shares[action] += 1
    copies = [0] * len(records)
    rng = np.random.default_rng([seed, 7_001])
    for action, count in sorted(counts.items()):
        members = [i for i, a in enumerate(actions) if a == action]
        base, extra = divmod(shares[action], count)
        for i in members:
            copies[i] = base
        for i in rng.permutation(members)[:extra]:
            copies[int(i)] += 1
    return copies


def rebalance_weights(rebalance, counts: Counter) -> dict[str, float]:
    """Target weight of each main action present: ``uniform``, or a mapping of relative weights."""
    if rebalance == "uniform":
        return {action: 1.0 for action in counts}
    if isinstance(rebalance, str):
        raise ValueError(f"rebalance={rebalance}: use null, uniform or a mapping {{Action: weight}}")
    given = {str(k): float(v) for k, v in dict(rebalance).items()}
    known = set(Vocabulary().main_actions)
    unknown = sorted(set(given) - known)
    if unknown or any(v < 0 for v in given.values()):
        raise ValueError(
            f"rebalance: unknown main action(s) {unknown} or a negative weight (known: {sorted(known)})"
        )
    return {action: given.get(action, 1.0) for action in counts}


def plan_export(records, phases, copies) -> list[ExportScan]:
    """Exported scans per take, ordered by (phase, source scan, copy) so every phase is one contiguous range."""
    order = {name: i for i, name in enumerate(PHASES)}
    by_take: dict[int, list] = {}
    for record, n in zip(records, copies, strict=True):
        phase = phases.get(record.key)
        for copy in range(n):
            by_take.setdefault(record.take, []).append(
                (order.get(phase, len(PHASES)), record.scan, copy, record, phase)
            )
    scans = []
    for take in sorted(by_take):
        for index, (_, _, copy, record, phase) in enumerate(sorted(by_take[take], key=lambda x: x[:3])):
            scans.append(ExportScan(take, index, record, copy, phase))
    return scans


# --- the export ------------------------------------------------------------------------------------------------
def settings_of(cfg: DictConfig, source: str, folder: Path) -> dict:
    """What decides the export's bytes: the graphs (a file is named with its content hash), the pipeline's hash and
    every sampling setting."""
    if Path(source).is_file():
        source = f"{source} (sha256 {hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]})"
    keys = ("samples_per_graph", "limit", "cameras", "layout", "sampler", "steps", "guidance_scale",
            "layout_guidance_scale", "jpeg_quality", "seed", "rebalance", "allow_eval_graphs")  # fmt: skip
    resolved = OmegaConf.to_container(cfg, resolve=True)
    settings = {"graphs": source, "pipeline_hash": pipeline_hash(folder), **{k: resolved[k] for k in keys}}
    if cfg.layout == "predicted":  # another predictor draws other layouts, hence other images
        settings["layout_predictor_hash"] = pipeline_hash(cfg.layout_predictor)
    return settings


def prepare_out(out: Path, settings: dict, overwrite: bool, source_root: Path | None) -> None:
    """Refuse a source dataset's root and a folder exported with other settings (unless overwrite)."""
    if source_root is not None and out.resolve() == Path(source_root).resolve():
        raise ExportRefused(f"out={out} is the source dataset's root; choose another folder")
    manifest = out / EXPORT_MANIFEST
    if out.is_dir() and any(out.iterdir()):
        if not manifest.is_file():
            raise ExportRefused(f"{out} holds files this command did not write; choose another out=")
        previous = json.loads(manifest.read_text())
        if previous.get("settings") != settings:
            if not overwrite:
                differing = sorted(k for k in settings if previous.get("settings", {}).get(k) != settings[k])
                raise ExportRefused(
                    f"{out} holds an export with other settings ({', '.join(differing)}); nothing was changed. "
                    "Pass overwrite=true to replace it, or choose another out="
                )
            import shutil

            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def export(cfg: DictConfig) -> dict:
    """Run the configured export (see ``configs/generate.yaml``); returns a summary."""
    from accelerate import PartialState

    state = PartialState(cpu=str(cfg.device) == "cpu")
    if not cfg.get("pipeline"):
        raise ValueError("pipeline= is required: a pipeline folder or a shipped name")
    cameras = sorted({int(c) for c in cfg.cameras})
    if not cameras or any(c not in CAMERAS for c in cameras):
        raise ValueError(f"cameras={list(cfg.cameras)}: camera ids are 1..6")
    if cfg.layout not in ("render", "masks", "predicted", "none"):
        raise ValueError(f"layout={cfg.layout}: use render, masks, predicted or none")
    if cfg.layout == "predicted":
        check_predictor_folder(cfg.get("layout_predictor"))
    elif cfg.get("layout_predictor"):
        raise ValueError(f"layout_predictor is set but layout={cfg.layout}; add layout=predicted to use it")
    records, phases, source, source_root = source_graphs(cfg)
    records = records[: int(cfg.limit)] if cfg.limit is not None else records
    if not records:
        raise DatasetFormatError("no scene graphs to export", file=source)
    folder = resolve_pipeline(cfg.pipeline)
    pipe = load_pipeline(folder, progress=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler(cfg.sampler, pipe.scheduler.config)
    pipe.to(torch.device(str(cfg.device) if state.num_processes == 1 else state.device))
    graphs = {
        r.key: g for r, g in zip(records, graphs_for_pipeline(pipe, records, Path(source)), strict=True)
    }
    layout = str(cfg.layout) if pipe.has_layout_input else "none"
    if layout == "masks" and source_root is None:
        raise ValueError(
            "layout=masks reads the source dataset's instance masks; scene_process graphs have none"
        )
    predictor = load_layout_predictor(cfg.layout_predictor, pipe, folder) if layout == "predicted" else None
    copies = copies_per_graph(records, int(cfg.samples_per_graph), cfg.rebalance, int(cfg.seed))
    scans = plan_export(records, phases, copies)
    out = Path(cfg.out)
    settings = settings_of(cfg, source, folder)
    if state.is_main_process:
        prepare_out(out, settings, bool(cfg.overwrite), source_root)
        atomic_write_json(
            out / EXPORT_MANIFEST, {"format": FORMAT, "settings": settings, "complete": False}, indent=2
        )
        height, width = pipe.image_size
        for take in sorted({s.take for s in scans}):
            in_take = [s for s in scans if s.take == take]
            ranges: dict[str, list[int]] = {}
            for s in in_take:
                if s.phase is not None:
                    ranges.setdefault(s.phase, [s.index, s.index])[1] = s.index
            rig = make_cameras(
                width, height, np.random.default_rng([int(cfg.seed), take, 1_000_003]), CAMERA_JITTER
            )
            write_take_files(out, take, len(in_take), rig, ranges or None)
    state.wait_for_everyone()

    mine = [s for i, s in enumerate(scans) if i % state.num_processes == state.process_index]
    todo = [s for s in mine if not annotation_path(out, s.take, s.scan).is_file()]
    progress = tqdm(total=len(todo) * len(cameras), desc="generate", unit="image",
                    disable=not (cfg.progress and state.is_local_main_process))  # fmt: skip
    for scan in todo:
        _export_scan(
            pipe, cfg, scan, graphs[scan.record.key], cameras, layout, source_root, out, settings, predictor
        )
        progress.update(len(cameras))
    progress.close()
    state.wait_for_everyone()
    summary = {
        "out": str(out),
        "scans": len(scans),
        "images": len(scans) * len(cameras),
        "generated": len(todo),
    }
    if state.is_main_process:
        _finish(out, scans, records, copies, cfg, settings, cameras, layout)
        print(f"generate: {len(scans)} scans x {len(cameras)} cameras in {out} ({len(todo)} scans drawn now)")
    return summary


def _export_scan(
    pipe, cfg, scan: ExportScan, graph, cameras, layout, source_root, out, settings, predictor=None
) -> None:
    """Draw one scan's images (and write its masks), then its annotation: the scan's completion marker."""
    record = scan.record
    height, width = pipe.image_size
    masks = None
    if layout == "render":
        masks = torch.from_numpy(layout_masks(record, cameras, (height, width), int(cfg.seed)))
    elif layout == "masks":
        index = frame_index(source_root, record.take)
        maps = []
        for camera in cameras:
            label = Image.fromarray(
                read_instance_mask(source_root, record.take, camera, index.frame_id(record.scan, camera))
            )
            maps.append(np.asarray(label.resize((width, height), Image.Resampling.NEAREST)))
        masks = torch.from_numpy(np.stack(maps))
    elif layout == "predicted":
        masks = predict_layouts(predictor, graph, cameras, (height, width))
    seeds = [item_seed(int(cfg.seed), record.take, record.scan, camera, scan.copy) for camera in cameras]
    images = []
    for start in range(0, len(cameras), int(cfg.batch_size)):
        part = slice(start, start + int(cfg.batch_size))
        images += draw_images(
            pipe, [graph] * len(cameras[part]), cameras[part], seeds[part],
            masks=None if masks is None else masks[part], steps=int(cfg.steps),
            guidance_scale=float(cfg.guidance_scale), layout_guidance_scale=float(cfg.layout_guidance_scale),
        )  # fmt: skip
    views = {}
    for i, (camera, image) in enumerate(zip(cameras, images, strict=True)):
        frame = frame_id(scan.take, scan.index, camera)
        with atomic_path(color_image_path(out, scan.take, camera, frame)) as tmp:
            image.convert("RGB").save(tmp, format="JPEG", quality=int(cfg.jpeg_quality))
        view = {"frame_id": frame, "seed": seeds[i]}
        if masks is not None:
            labels = masks[i].numpy()
            write_mask(out, scan.take, scan.index, camera, labels)
            view["boxes"], view["pixels"] = node_boxes(labels, record.num_nodes)
        views[str(camera)] = view
    scene_graph = {**record.to_json(), "take_idx": scan.take, "scan": scan.scan}
    document = {
        "take_idx": scan.take,
        "scan": scan.scan,
        "phase": scan.phase,
        "scene_graph": scene_graph,
        "source": {"take": record.take, "scan": record.scan, "copy": scan.copy, "graphs": settings["graphs"]},
        "pipeline_hash": settings["pipeline_hash"],
        "layout": layout,
        "cameras": views,
    }
    atomic_write_json(annotation_path(out, scan.take, scan.scan), document)


def _finish(out, scans, records, copies, cfg, settings, cameras, layout) -> None:
    """Relationships files, the image manifest and the dataset card, from the annotations written."""
    by_split: dict[str, list] = {}
    lines = []
    for scan in scans:
        document = json.loads(annotation_path(out, scan.take, scan.scan).read_text())
        split = next(s for s, takes in SPLIT_TAKES.items() if scan.take in takes)
        by_split.setdefault(split, []).append(document["scene_graph"])
        for camera, view in document["cameras"].items():
            image = color_image_path(out, scan.take, int(camera), view["frame_id"]).relative_to(out)
            lines.append({"image": str(image), "take": scan.take, "scan": scan.scan, "camera": int(camera),
                          "seed": view["seed"], "source": document["source"], "layout": layout,
                          "pipeline_hash": settings["pipeline_hash"]})  # fmt: skip
    for split, graphs in by_split.items():
        atomic_write_json(out / f"relationships_{split}.json", {"scans": graphs})
    with atomic_path(out / IMAGE_MANIFEST) as tmp:
        tmp.write_text("".join(json.dumps(line) + "\n" for line in lines))
    before = Counter(main_action(r.predicates) for r in records)
    after = Counter()
    for record, n in zip(records, copies, strict=True):
        after[main_action(record.predicates)] += n
    with atomic_path(out / CARD) as tmp:
        tmp.write_text(_card(settings, cfg, before, after, len(scans), cameras))
    atomic_write_json(out / EXPORT_MANIFEST, {"format": FORMAT, "settings": settings, "complete": True,
                                              "scans": len(scans), "images": len(lines)}, indent=2)  # fmt: skip


def _card(settings, cfg, before: Counter, after: Counter, scans: int, cameras) -> str:
    rows = "\n".join(
        f"| {a} | {before[a]} | {after[a]} |"
        for a in sorted(set(before) | set(after), key=lambda a: (-before[a], a))
    )
    eval_note = (
        "**yes: made from validation/test graphs (allow_eval_graphs=true); do not score models on those takes**"
        if settings["allow_eval_graphs"]
        else "no (refused unless allow_eval_graphs=true)"
    )
    return f"""# Synthetic OR training set (or_synth.generate)

Generated images in 4D-OR's on-disk layout: {scans} scans x cameras {list(cameras)}.

- graphs: {settings["graphs"]}
- evaluation graphs used: {eval_note}
- pipeline hash: {settings["pipeline_hash"]}
- sampling: {settings["sampler"]}, {settings["steps"]} steps, guidance {settings["guidance_scale"]}, layout
  {settings["layout"]} (layout guidance {settings["layout_guidance_scale"]}), seed {settings["seed"]}
- samples per graph: {settings["samples_per_graph"]}; rebalance: {settings["rebalance"]}
- JPEG quality {settings["jpeg_quality"]}

Main action per scan (LABRAD-OR's rule), source graphs before and exported scans after rebalancing:

| main action | before | after |
|---|---:|---:|
{rows}
"""


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="generate")
def main(cfg: DictConfig) -> None:
    try:
        export(cfg)
    except (DatasetFormatError, ExportRefused, FileNotFoundError, ValueError) as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
