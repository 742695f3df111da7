"""``render(cfg)``: scene graphs -> layouts -> images, masks and 4D-OR files, resumable and deterministic.

Every scan draws from its own generator seeded by ``(seed, take, scan)``, so the bytes written do not
depend on the number of workers or on the order in which scans finish.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from or_synth.data.annotations import annotation_path
from or_synth.data.errors import DatasetFormatError, UserError
from or_synth.data.panoptic import PANOPTIC_CAMERAS, panoptic_from_node_labels
from or_synth.data.phases import PhaseTable
from or_synth.data.poses import pose_document, pose_path
from or_synth.data.scene_graph import SceneGraphRecord, load_scene_graphs, parse_scan
from or_synth.data.vocabulary import PHASES, SPLIT_TAKES, Vocabulary
from or_synth.render.layout import Layout, build_layout_record, check_drawable
from or_synth.render.motion import take_layouts, take_rng, take_scene
from or_synth.render.painter import Style, build_mesh, render_view, shade
from or_synth.render.room import take_cameras
from or_synth.render.scene_process import SceneProcess, phase_ranges
from or_synth.render.skeleton import layout_people
from or_synth.render.writer import (
    atomic_write_json,
    frame_id,
    node_boxes,
    write_image,
    write_keypoints,
    write_mask,
    write_panoptic,
    write_take_files,
)

log = logging.getLogger(__name__)

MANIFEST = "or_synth_render.json"
FORMAT = "or_synth.render/1"
# Bump when the pictures or graphs for the same config change: it is part of the fingerprint, so resuming
# never mixes scans drawn by two versions of the renderer.
RENDERER_VERSION = 3
# Takes in the order a take count picks them: round-robin over train, validation and test.
TAKE_ORDER = (1, 4, 2, 3, 8, 6, 5, 7, 9, 10)
# Config keys that change what is written (the rest, such as workers, only change how fast).
CONTENT_KEYS = (
    "seed",
    "takes",
    "scans_per_take",
    "image_size",
    "rare_action_boost",
    "from_json",
    "strict",
    "jpeg_quality",
    "camera_jitter",
    "layout_tries",
)
JSON_LAYOUT_TRIES = 6
# scan: every scan placed afresh (single images); take: each scan's placement evolves from the one before
# (furniture stays, people walk: or_synth.render.motion), for sequences.
PLACEMENTS = ("scan", "take")


class RenderRefused(UserError, RuntimeError):
    """The output folder holds something else; nothing was touched."""


@dataclass(frozen=True)
class ScanJob:
    root: str
    take: int
    scan_index: int
    phase: str | None
    record: dict | SceneGraphRecord | None  # given graph (4D-OR scan JSON or parsed) or None to generate
    seed: int
    rare_action_boost: float
    image_size: tuple[int, int]
    jpeg_quality: tuple[int, int]
    camera_jitter: float
    layout_tries: int
    real_format: bool = False  # the real download's files only (panoptic maps, 3D poses), no or_synth extras
    layout: Layout | None = None  # placement=take: the scan's layout, planned from the scan before it


def resolve_takes(takes) -> list[int]:
    """``takes=N`` -> the first N of :data:`TAKE_ORDER`; a list is used as given (4D-OR take numbers)."""
    if isinstance(takes, int) and not isinstance(takes, bool):
        if not 1 <= takes <= len(TAKE_ORDER):
            raise ValueError(f"takes must be 1..{len(TAKE_ORDER)} (4D-OR's take numbers), got {takes}")
        return sorted(TAKE_ORDER[:takes])
    if isinstance(takes, str | bool | float) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in takes
    ):
        raise ValueError(
            f"takes must be a count 1..10 or a list of 4D-OR take numbers, e.g. takes=[1,4], got {takes!r}"
        )
    out = sorted(int(t) for t in takes)
    unknown = [t for t in out if not any(t in v for v in SPLIT_TAKES.values())]
    if unknown or len(set(out)) != len(out):
        raise ValueError(f"takes must be distinct 4D-OR take numbers 1..10, got {list(takes)}")
    return out


def split_of(take: int) -> str:
    return next(split for split, takes in SPLIT_TAKES.items() if take in takes)


def content_config(cfg: DictConfig) -> dict:
    """The settings that decide what is rendered (not how fast or how verbosely)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    content = {key: resolved.get(key) for key in CONTENT_KEYS}
    if resolved.get("real_format"):  # only when on, so the fingerprints of existing renders stay as they were
        content["real_format"] = True
    if resolved.get("placement", "scan") != "scan":  # likewise
        content["placement"] = resolved["placement"]
    return content


def fingerprint(cfg: DictConfig) -> str:
    content = content_config(cfg)
    content["renderer_version"] = RENDERER_VERSION
    if content.get("from_json"):
        path = Path(content["from_json"])
        content["from_json"] = [str(path.resolve()), hashlib.sha1(path.read_bytes()).hexdigest()]
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


# Where the embedded default dataset lives: commands that need it render it the first time they run.
EMBEDDED_ROOT = Path("datasets/synthetic_or")


def render_on_first_use(root: str | Path, overrides: Sequence[str] = (), split: str = "train") -> bool:
    """Render a synthetic dataset (render config ``overrides``) into ``root`` when it holds no ``split`` yet (an
    interrupted render resumes; a complete one is never touched). True when it rendered."""
    from or_synth.data.dataset import relationships_file
    from or_synth.render.config import load_config

    if relationships_file(root, split) is not None:
        return False
    log.info("rendering the embedded synthetic OR dataset into %s (first use)", root)
    render(load_config([f"root={root}", *overrides]))
    return True


def render_embedded_on_first_use(root: str | Path) -> bool:
    """Render the embedded default into ``root`` when ``root`` is its folder and holds no dataset yet; any other
    root is left alone. True when it rendered."""
    return Path(root).resolve() == EMBEDDED_ROOT.resolve() and render_on_first_use(root)


def _number(cfg: DictConfig, key: str, kind=int):
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    return kind(value)


def check_options(cfg: DictConfig) -> tuple[int, int]:
    """Every option checked before anything is written; returns the image size (H, W)."""
    size = cfg.image_size
    if not OmegaConf.is_list(size) or len(size) != 2 or not all(isinstance(v, int) and v >= 8 for v in size):
        raise ValueError(f"image_size must be [H, W] with H, W >= 8 pixels, got {size}")
    if Path(cfg.root).exists() and not Path(cfg.root).is_dir():
        raise ValueError(f"root={cfg.root} is a file; give a folder for the dataset")
    if cfg.get("from_json"):
        if not Path(cfg.from_json).is_file():
            raise FileNotFoundError(f"from_json={cfg.from_json}: no such file")
    else:
        resolve_takes(OmegaConf.to_container(cfg.takes) if OmegaConf.is_config(cfg.takes) else cfg.takes)
        if _number(cfg, "scans_per_take") < len(PHASES):
            raise ValueError(
                f"scans_per_take must be at least {len(PHASES)} (one per phase), got {cfg.scans_per_take}"
            )
    if _number(cfg, "seed") < 0:
        raise ValueError(f"seed must be >= 0, got {cfg.seed}")
    if _number(cfg, "workers") < 0:
        raise ValueError(f"workers must be >= 0 (0: all cores), got {cfg.workers}")
    if _number(cfg, "layout_tries") < 1:
        raise ValueError(f"layout_tries must be >= 1, got {cfg.layout_tries}")
    if not 0.0 <= _number(cfg, "rare_action_boost", float) <= 1.0:
        raise ValueError(f"rare_action_boost must be in 0..1, got {cfg.rare_action_boost}")
    if _number(cfg, "camera_jitter", float) < 0:
        raise ValueError(f"camera_jitter must be >= 0 metres, got {cfg.camera_jitter}")
    if cfg.get("placement", "scan") not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {cfg.placement!r}")
    quality = cfg.jpeg_quality
    if (
        not OmegaConf.is_list(quality)
        or len(quality) != 2
        or not all(isinstance(q, int) for q in quality)
        or not (1 <= quality[0] <= quality[1] <= 100)
    ):
        raise ValueError(f"jpeg_quality must be [low, high] within 1..100, got {quality}")
    return int(size[0]), int(size[1])


def render(cfg: DictConfig) -> dict:
    """Render a dataset as configured (see ``configs/render/config.yaml``) and return its manifest.

    Raises:
        RenderRefused: ``root`` holds other content and ``overwrite`` is false.
        DatasetFormatError: a given graph cannot be drawn (with ``strict``), naming the scan.
    """
    root = Path(cfg.root)
    size = check_options(cfg)
    print_fn = print if cfg.get("progress", True) else (lambda *a, **k: None)
    key = fingerprint(cfg)
    manifest = _prepare_root(root, key, bool(cfg.overwrite))
    if manifest.get("complete"):
        # Nothing to do, and nothing is rewritten: the relationships files' mtimes key the processed cache.
        print_fn(f"{root} is complete ({manifest['scans']} scans x 6 cameras, same settings); nothing to do")
        return manifest

    jobs, phases_by_take, scans_by_take, skipped = plan_jobs(cfg, root, size)
    manifest.update(
        {
            "format": FORMAT,
            "renderer_version": RENDERER_VERSION,
            "fingerprint": key,
            "config": content_config(cfg),
            "complete": False,
            "skipped": [e.as_dict() for e in skipped],
        }
    )
    atomic_write_json(root / MANIFEST, manifest, indent=2)
    real_format = bool(cfg.get("real_format", False))
    for take, num_scans in scans_by_take.items():
        cameras = take_cameras(size[1], size[0], int(cfg.seed), take, float(cfg.camera_jitter))
        write_take_files(root, take, num_scans, cameras, phases_by_take.get(take), real_format=real_format)

    todo = [
        job
        for job in jobs
        if not scan_document_path(root, job.take, f"{job.scan_index:06d}", real_format).is_file()
    ]
    if len(todo) < len(jobs):
        print_fn(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} scans already rendered in {root}")
    workers = int(cfg.workers) or os.cpu_count() or 1
    progress = tqdm(total=len(todo), desc="render", unit="scan", disable=not cfg.get("progress", True))
    if workers > 1 and len(todo) > 1:
        context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        with context.Pool(workers) as pool:
            for _ in pool.imap_unordered(render_scan, todo, chunksize=max(1, len(todo) // (workers * 8))):
                progress.update()
    else:
        for job in todo:
            render_scan(job)
            progress.update()
    progress.close()

    # The relationships files come last, from what was written: a folder is loadable only when complete.
    by_split: dict[str, list[dict]] = {}
    for job in jobs:
        document = json.loads(
            scan_document_path(root, job.take, f"{job.scan_index:06d}", real_format).read_text()
        )
        by_split.setdefault(split_of(job.take), []).append(document["scene_graph"])
    if real_format:
        for take in scans_by_take:
            write_keypoints(root, take, scans_by_take[take])
    for split, scans in by_split.items():
        scans.sort(key=lambda s: (s["take_idx"], s["scan"]))
        atomic_write_json(root / f"relationships_{split}.json", {"scans": scans})
    manifest.update(
        {
            "complete": True,
            "scans": len(jobs),
            "images": len(jobs) * 6,
            "takes": {str(t): n for t, n in scans_by_take.items()},
            "splits": {split: len(scans) for split, scans in sorted(by_split.items())},
        }
    )
    atomic_write_json(root / MANIFEST, manifest, indent=2)
    if skipped:
        print_fn(f"skipped {len(skipped)} scan(s) that cannot be drawn (strict=false); see {root / MANIFEST}")
        for error in skipped:
            print_fn(f"  {error}")
    print_fn(f"rendered {len(jobs)} scans x 6 cameras into {root}")
    return manifest


def _prepare_root(root: Path, key: str, overwrite: bool) -> dict:
    """Resume a matching render, refuse a different one, or clear it when told to overwrite."""
    manifest_path = root / MANIFEST
    if root.exists() and any(root.iterdir()):
        manifest = None
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text())
            except json.JSONDecodeError:
                manifest = None
        if manifest is not None and manifest.get("fingerprint") == key:
            return manifest
        if not overwrite:
            what = (
                f"a render with other settings (fingerprint {manifest.get('fingerprint')}, now {key})"
                if manifest is not None
                else "files that the renderer did not write"
            )
            raise RenderRefused(
                f"{root} already holds {what}; nothing was changed. Pass overwrite=true to replace it, "
                "or choose another root=."
            )
        if manifest is None and not any(root.glob("export_holistic_take*_processed")):
            raise RenderRefused(
                f"{root} is not a rendered dataset; refusing to delete it even with overwrite=true"
            )
        for path in list(root.glob("export_holistic_take*_processed")) + [
            root / "phases",
            root / "processed",
        ]:
            if path.is_dir():
                shutil.rmtree(path)
        for path in list(root.glob("relationships_*.json")) + [manifest_path]:
            path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    return {}


def plan_jobs(cfg: DictConfig, root: Path, size: tuple[int, int]):
    """The scan jobs, phase tables and scan counts per take, and the given scans that were skipped."""
    common = {
        "root": str(root),
        "seed": int(cfg.seed),
        "rare_action_boost": float(cfg.rare_action_boost),
        "image_size": size,
        "jpeg_quality": tuple(int(v) for v in cfg.jpeg_quality),
        "camera_jitter": float(cfg.camera_jitter),
        "layout_tries": int(cfg.get("layout_tries", 1)),
        "real_format": bool(cfg.get("real_format", False)),
    }
    jobs, phases_by_take, scans_by_take, skipped = [], {}, {}, []
    if cfg.get("from_json"):
        path = Path(cfg.from_json)
        vocabulary = Vocabulary.load(path.parent)
        graphs = load_scene_graphs(path, vocabulary, strict=bool(cfg.strict))
        skipped.extend(graphs.skipped)
        phase_table = PhaseTable.load(path.parent)
        for record in graphs.records:
            try:
                if not any(record.take in takes for takes in SPLIT_TAKES.values()):
                    raise DatasetFormatError(
                        f"take {record.take} is not a 4D-OR take (1..10), so it has no split",
                        file=path,
                        take=record.take,
                        scan=record.scan,
                        field="take_idx",
                    )
                check_drawable(record, file=path)
            except DatasetFormatError as error:
                if cfg.strict:
                    raise
                skipped.append(error)
                continue
            phase = phase_table.phase_id(record.take, record.scan)
            jobs.append(
                ScanJob(
                    take=record.take,
                    scan_index=int(record.scan),
                    phase=PHASES[phase] if phase >= 0 else None,
                    record=record.to_json(vocabulary),
                    **{**common, "layout_tries": max(common["layout_tries"], JSON_LAYOUT_TRIES)},
                )
            )
            scans_by_take[record.take] = max(scans_by_take.get(record.take, 0), int(record.scan) + 1)
        for take in scans_by_take:
            if take in phase_table.ranges:
                phases_by_take[take] = {PHASES[p]: [start, end] for p, start, end in phase_table.ranges[take]}
        scans_by_take = dict(sorted(scans_by_take.items()))
        return _placed(jobs, cfg), phases_by_take, scans_by_take, skipped

    n = int(cfg.scans_per_take)
    takes = OmegaConf.to_container(cfg.takes) if OmegaConf.is_config(cfg.takes) else cfg.takes
    for take in resolve_takes(takes):
        ranges = phase_ranges(n, np.random.default_rng([int(cfg.seed), take, 1_000_033]))
        phases_by_take[take] = ranges
        scans_by_take[take] = n
        for phase, (start, end) in ranges.items():
            for i in range(start, end + 1):
                jobs.append(ScanJob(take=take, scan_index=i, phase=phase, record=None, **common))
    return _placed(jobs, cfg), phases_by_take, scans_by_take, skipped


def _placed(jobs: list[ScanJob], cfg: DictConfig) -> list[ScanJob]:
    """With ``placement=take``, every job with its layout planned from the take's scan before it (cheap beside
    drawing, so done here, in scan order; the drawing stays parallel)."""
    if cfg.get("placement", "scan") == "scan":
        return jobs
    out = []
    for take in sorted({job.take for job in jobs}):
        group = sorted((job for job in jobs if job.take == take), key=lambda job: job.scan_index)
        records = [_semantic_record(job) for job in group]
        generated = group[0].record is None
        placed = take_layouts(
            records, take_rng(int(cfg.seed), take), tries=group[0].layout_tries, derive_close_to=generated,
            consecutive=False, file=cfg.get("from_json"),
        )  # fmt: skip
        out += [
            replace(job, record=record, layout=layout)
            for job, (record, layout) in zip(group, placed, strict=True)
        ]
    return out


def scan_generators(job: ScanJob) -> tuple[np.random.Generator, ...]:
    """The scan's own generators, from ``(seed, take, scan)``: its graph's, its placement's and its paint's."""
    seeds = np.random.SeedSequence([job.seed, job.take, job.scan_index]).spawn(3)
    return tuple(np.random.default_rng(s) for s in seeds)


def _semantic_record(job: ScanJob) -> SceneGraphRecord:
    """The scan's graph before placement: given, or drawn by the scene process from the scan's graph seed."""
    if job.record is None:
        graph_rng = scan_generators(job)[0]
        return SceneProcess(job.rare_action_boost).scan(job.take, job.scan_index, job.phase, graph_rng)
    return job.record if isinstance(job.record, SceneGraphRecord) else parse_scan(job.record, Vocabulary())


def scan_record(job: ScanJob) -> tuple[SceneGraphRecord, object, np.random.Generator]:
    """The scan's final graph and layout (CloseTo from geometry when generated), plus its paint generator."""
    _, layout_rng, paint_rng = scan_generators(job)
    if job.layout is not None:  # placement=take: planned with the take (the paint generator draws the noise)
        return job.layout.record, job.layout, paint_rng
    generated = job.record is None
    record, layout = build_layout_record(
        _semantic_record(job), layout_rng, tries=job.layout_tries, derive_close_to=generated
    )
    return record, layout, paint_rng


def scan_scene(job: ScanJob) -> tuple:
    """The scan's graph, its lit 3D scene, style and six cameras, the generator that draws on (noise), and the
    placement (the stand-in's 3D poses come from it).

    One scene for all cameras, so the views agree; the cameras are the take's (seeded by ``(seed, take)``).
    """
    record, layout, rng = scan_record(job)
    height, width = job.image_size
    cameras = take_cameras(width, height, job.seed, job.take, job.camera_jitter)
    if job.layout is not None:  # the take's lighting, colours and clutter: they do not flicker between scans
        scene, style = take_scene(layout, job.seed, job.take)
    else:
        style = Style.sample(rng)
        scene = shade(build_mesh(layout, rng), style, layout.knee())
    return record, scene, style, cameras, rng, layout


def scan_document_path(root: Path, take: int, scan: str, real_format: bool) -> Path:
    """Where a rendered scan's document (graph, phase, per-camera boxes) lives: the take's
    ``or_synth_annotations/``, or with ``real_format`` beside the manifest, so the take folders hold only what
    the real download holds. Written last: it marks the scan done."""
    if real_format:
        return Path(root) / "or_synth_render_scans" / f"take{take}" / f"{scan}.json"
    return annotation_path(root, take, scan)


def render_scan(job: ScanJob) -> None:
    """Render one scan into all six cameras and write its images, masks and annotation (annotation last).

    With ``real_format``: MM-OR's panoptic maps for cameras 1, 2, 5 instead of instance masks, and the scan's
    named 3D poses in the pose tool's frame (``annotations/{scan}.json``)."""
    root = Path(job.root)
    record, scene, style, cameras, rng, layout = scan_scene(job)
    views = {}
    for camera_id, camera in cameras.items():
        rgb, labels = render_view(scene, camera, style, rng)
        quality = int(rng.integers(job.jpeg_quality[0], job.jpeg_quality[1] + 1))
        write_image(root, job.take, job.scan_index, camera_id, rgb, quality)
        if not job.real_format:
            write_mask(root, job.take, job.scan_index, camera_id, labels)
        elif camera_id in PANOPTIC_CAMERAS:
            panoptic = panoptic_from_node_labels(labels, record.object_names, record.roles, record.predicates)
            write_panoptic(root, job.take, job.scan_index, camera_id, panoptic)
        boxes, pixels = node_boxes(labels, record.num_nodes)
        views[str(camera_id)] = {
            "frame_id": frame_id(job.take, job.scan_index, camera_id),
            "boxes": boxes,
            "pixels": pixels,
        }
    document = {
        "take_idx": job.take,
        "scan": record.scan,
        "phase": job.phase,
        "scene_graph": record.to_json(),
        "cameras": views,
    }
    if job.real_format:
        atomic_write_json(pose_path(root, job.take, record.scan), pose_document(layout_people(layout)))
    atomic_write_json(scan_document_path(root, job.take, record.scan, job.real_format), document)


def render_again(
    dataset_root: str | Path,
    keys: Sequence[tuple[int, str]],
    out: str | Path,
    seed: int,
    split: str = "train",
    graphs_root: str | Path | None = None,
) -> Path:
    """Fresh renders of the rendered dataset's graphs ``keys`` (take, scan) of ``split`` into ``out``, with another
    ``seed`` (new placements, camera mounts and paint) and the dataset's own render settings: the same graphs, an
    independent picture of each. Used as the oracle of the downstream study (real images of the synthetic
    graphs) and as memorisation's "no copying" reference (how close an independent render of a graph comes to
    the dataset's). ``graphs_root`` (default ``dataset_root``) holds the graphs when they are not the dataset's
    own (an export's new graphs, rendered at the dataset's settings). Skipped when ``out`` already holds the
    render; returns ``out``."""
    from or_synth.render.config import load_config

    dataset_root, out = Path(dataset_root), Path(out)
    if (out / "or_synth_render.json").is_file():
        return out
    wanted = set(keys)
    source = Path(graphs_root) if graphs_root is not None else dataset_root
    scans = json.loads((source / f"relationships_{split}.json").read_text())["scans"]
    graphs = out.parent / f"{out.name}_graphs"
    (graphs / "phases").mkdir(parents=True, exist_ok=True)
    chosen = [s for s in scans if (s["take_idx"], s["scan"]) in wanted]
    (graphs / f"relationships_{split}.json").write_text(json.dumps({"scans": chosen}))
    for phase_file in (source / "phases").glob("*.json"):
        (graphs / "phases" / phase_file.name).write_bytes(phase_file.read_bytes())
    settings = json.loads((dataset_root / "or_synth_render.json").read_text())["config"]
    size = settings["image_size"]
    render(
        load_config(
            [
                f"root={out}",
                f"from_json={graphs / f'relationships_{split}.json'}",
                f"seed={seed}",
                f"image_size=[{size[0]},{size[1]}]",
                f"camera_jitter={settings['camera_jitter']}",
                f"jpeg_quality=[{settings['jpeg_quality'][0]},{settings['jpeg_quality'][1]}]",
                "progress=false",
            ]
        )
    )
    return out
