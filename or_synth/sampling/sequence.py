"""Scene-graph sequences -> temporally coherent multi-view frames (``python -m or_synth.sequence``).

One take's consecutive scans (``take=N scans=A:B``) are drawn for every camera as a sequence:

- the layouts evolve along the take (:mod:`or_synth.render.motion`: furniture stays, people walk);
- the first frame is sampled as ``or_synth.sample`` samples, from noise fixed per (take, camera);
- each next frame regenerates only where the layout or the graph changed since the previous frame (pixels whose
  node changed, and the pixels of every node whose relations changed, dilated): the edit path's latent inpainting
  (:meth:`ORScenePipeline.__call__`'s ``keep_latents`` / ``keep_mask``) from the previous frame's final latents,
  with the same fixed noise; a frame where nothing changed is the previous frame again.

``temporal=independent`` draws every frame afresh from its own (take, scan, camera) seed, as ``or_synth.sample``
does (today's per-scan behaviour): the control the stability benchmark compares with.

The output folder is a dataset in 4D-OR's layout (the dataset class reads it as a take): ``colorimage/`` frames,
``instance_masks/`` (the layouts drawn from), each scan's ``or_synth_annotations/{scan}.json`` (written last per
frame: the frame's completion marker, with how much of each view was regenerated), calibration and frame list,
``relationships_{split}.json``, plus ``manifest.jsonl`` (one line per image, for ``or_synth.evaluate``),
``videos/camera0{c}.webp`` (animated, Pillow), ``strip.png`` (a contact strip: cameras by frames) and
``or_synth_sequence.json`` (settings, counts and cost; ``complete`` once all is written). An interrupted run
resumes from the last complete frame (its latents are kept in ``or_synth_sequence/latents/``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from or_synth.data import DatasetFormatError, UserError, load_scene_graphs
from or_synth.data.annotations import annotation_path
from or_synth.data.images import color_image_path
from or_synth.data.io import atomic_path, file_sha256
from or_synth.data.manifest import LAYOUT_SOURCES, MANIFEST, ManifestLine, path_in_folder, write_manifest
from or_synth.data.phases import PhaseTable
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import PHASES, Vocabulary
from or_synth.generator import ORScenePipeline, pipeline_hash
from or_synth.generator.editing import keep_mask_for
from or_synth.render.layout import Layout
from or_synth.render.motion import MAX_STEP, check_take_order, identities, take_layouts, take_rng, take_scene
from or_synth.render.painter import render_view
from or_synth.render.pipeline import JSON_LAYOUT_TRIES, RENDERER_VERSION, split_of
from or_synth.render.room import take_cameras
from or_synth.render.writer import frame_id, node_boxes, write_mask, write_take_files
from or_synth.sampling.files import image_complete, write_json
from or_synth.sampling.layouts import check_renderable_graphs, resolve_layout
from or_synth.sampling.options import SamplingOptions, check_options, whole_number
from or_synth.sampling.pipelines import graphs_for_pipeline, pipeline_folder, prepare_pipeline, resolve_graphs
from or_synth.sampling.seeds import item_seed

RECORD = "or_synth_sequence.json"
WORK = "or_synth_sequence"  # the job's own working files (latents per frame)
TEMPORAL = ("coherent", "independent")
LAYOUTS = ("auto", "render", "none")  # the layouts a sequence can evolve: the renderer's, or none
STRIP_FRAMES = 8  # frames of the contact strip, spread over the sequence
VIDEO_FPS = 4  # 4D-OR is about one scan a second; shown faster


class SequenceRefused(UserError, RuntimeError):
    """The output folder holds a sequence of other settings; nothing was touched."""


def parse_scans(spec, take: int, available: Sequence[str], source: Path) -> tuple[int, int]:
    """``scans=A:B`` (B excluded, as Python slices; either end may be left out: the take's first / last scan),
    ``scans=A`` (one scan) or ``scans=null`` (the whole take) -> (A, B)."""
    ids = sorted(int(s) for s in available)
    text = ":" if spec is None or not str(spec).strip() else str(spec)  # null: the whole take
    start_text, colon, stop_text = text.partition(":")
    try:
        start = int(start_text) if start_text.strip() else ids[0]
        stop = (int(stop_text) if stop_text.strip() else ids[-1] + 1) if colon else start + 1
    except ValueError:
        raise ValueError(
            f"scans must be A:B (scan ids, B excluded), e.g. scans=200:240, got {spec!r}"
        ) from None
    if start < 0 or stop <= start:
        raise ValueError(f"scans={spec}: need 0 <= A < B (B excluded), got A={start}, B={stop}")
    missing = [i for i in range(start, stop) if i not in set(ids)]
    if missing:
        raise DatasetFormatError(
            f"scans={spec}: take {take} has no scan {missing[0]:06d} (the file's take {take} has scans "
            f"{ids[0]:06d}..{ids[-1]:06d}, {len(ids)} in all); a sequence is consecutive scans",
            file=source,
            take=take,
        )
    return start, stop


def sequence_seed(seed: int, take: int, camera: int) -> int:
    """The noise of one camera's sequence: fixed per (take, camera), so the unchanged parts of frames agree."""
    return item_seed(seed, take, "sequence", camera, 0)


@dataclass
class SequencePlan:
    """One checked sequence: its scans' graphs, the loaded pipeline, the layouts and each camera's label maps."""

    cfg: DictConfig
    options: SamplingOptions
    temporal: str
    source: Path
    root: Path
    take: int
    records: list[SceneGraphRecord]
    phases: list[str | None]
    folder: Path
    pipe: ORScenePipeline
    graphs: list
    layout: str
    masks: dict[int, np.ndarray] | None  # camera -> (T, H, W) uint8, None without a layout
    out: Path
    job: dict


def prepare_sequence(cfg: DictConfig) -> SequencePlan:
    """Check everything (options, take, scans, graphs, layouts) and load the pipeline; writes nothing.

    Raises:
        ValueError: bad options; DatasetFormatError: scans out of order, from several takes, a gap, a graph the
        renderer cannot draw (each naming the file and scan).
    """
    options = check_options(cfg)
    temporal = str(cfg.temporal)
    if temporal not in TEMPORAL:
        raise ValueError(f"temporal must be one of {', '.join(TEMPORAL)}, got {temporal!r}")
    if str(cfg.layout) not in LAYOUTS:
        raise ValueError(
            f"layout={cfg.layout}: a sequence evolves the renderer's layout along the take (layout=render, or "
            "auto) or has none (layout=none); per-scan sources (masks, predicted) would jump between frames"
        )
    if cfg.get("take") is None:
        raise ValueError("take=N is required: the 4D-OR take whose scans form the sequence, e.g. take=4")
    take = whole_number(cfg.take, "take", minimum=1, maximum=10)
    source, root = resolve_graphs(cfg.graphs, cfg.dataset_root)
    records = load_scene_graphs(source, Vocabulary.load(root)).records
    in_take = [r for r in records if r.take == take]
    if not in_take:
        takes = sorted({r.take for r in records})
        raise DatasetFormatError(
            f"no scans of take {take} (the file has takes {takes})", file=source, take=take
        )
    check_take_order(
        in_take, consecutive=False, file=source
    )  # the file's own order: a shuffled take is refused
    start, stop = parse_scans(cfg.get("scans"), take, [r.scan for r in in_take], source)
    chosen = [r for r in in_take if start <= int(r.scan) < stop]
    check_take_order(chosen, file=source)
    folder = pipeline_folder(cfg.pipeline)
    pipe = prepare_pipeline(folder, options.sampler, options.device)
    layout = resolve_layout(
        "render" if cfg.layout == "auto" and pipe.has_layout_input else str(cfg.layout), pipe
    )
    if layout == "render":
        check_renderable_graphs(chosen, source)
    graphs = graphs_for_pipeline(pipe, chosen, source)
    masks = (
        sequence_masks(chosen, options.cameras, pipe.image_size, options.seed) if layout == "render" else None
    )
    table = PhaseTable.load(root)
    phases = []
    for record in chosen:
        phase = table.phase_id(record.take, record.scan)
        phases.append(PHASES[phase] if phase >= 0 else None)
    plan = SequencePlan(cfg, options, temporal, source, root, take, chosen, phases, folder, pipe, graphs, layout,
                        masks, Path(cfg.out), {})  # fmt: skip
    plan.job = sequence_job(plan)
    return plan


def sequence_layouts(records: Sequence[SceneGraphRecord], seed: int) -> list[Layout]:
    """The take's coherent layouts of ``records`` (given graphs: several placements tried for what moves)."""
    placed = take_layouts(records, take_rng(seed, records[0].take), tries=JSON_LAYOUT_TRIES)
    return [layout for _, layout in placed]


def sequence_masks(
    records: Sequence[SceneGraphRecord], cameras: Sequence[int], size: tuple[int, int], seed: int
) -> dict[int, np.ndarray]:
    """camera -> (T, H, W) uint8 label maps of the take's coherent layouts (node + 1, 0 room, 255 clutter)."""
    rig = take_cameras(size[1], size[0], seed, records[0].take)
    maps: dict[int, list[np.ndarray]] = {camera: [] for camera in cameras}
    for layout in sequence_layouts(records, seed):
        scene, style = take_scene(layout, seed, layout.record.take)
        for camera in cameras:
            maps[camera].append(
                render_view(scene, rig[camera], style, np.random.default_rng(0), noise=False)[1]
            )
    return {camera: np.stack(frames) for camera, frames in maps.items()}


def changed_region(
    before: SceneGraphRecord,
    after: SceneGraphRecord,
    before_mask: np.ndarray | None,
    after_mask: np.ndarray | None,
    dilation: int = 2,
) -> np.ndarray | None:
    """(H, W) bool: where frame ``after`` may differ from frame ``before`` (None without layouts).

    A pixel changes when its node (by identity: :func:`~or_synth.render.motion.identity`) differs between the two
    label maps, or when it shows a node whose relations changed (any triple it takes part in, CloseTo included),
    or one that came or went; dilated by ``dilation`` pixels, as the edit path grows its region.
    """
    if before_mask is None or after_mask is None:
        return None
    names_before, names_after = identities(before), identities(after)
    code = {name: i + 1 for i, name in enumerate(sorted(set(names_before) | set(names_after)))}

    def recoded(mask: np.ndarray, names: list[str]) -> np.ndarray:
        table = np.zeros(256, np.int32)
        table[255] = -1
        for node, name in enumerate(names):
            table[node + 1] = code[name]
        return table[mask]

    def triples(record: SceneGraphRecord, names: list[str]) -> set:
        return {(names[s], names[o], p) for s, o, p in record.triples}

    changed = set(names_before) ^ set(names_after)
    for s, o, _ in triples(before, names_before) ^ triples(after, names_after):
        changed |= {s, o}
    a, b = recoded(before_mask, names_before), recoded(after_mask, names_after)
    codes = [code[name] for name in changed]
    region = torch.from_numpy((a != b) | np.isin(a, codes) | np.isin(b, codes)).float()[None, None]
    if dilation > 0 and region.any():
        region = F.max_pool2d(region, 2 * dilation + 1, stride=1, padding=dilation)
    return region[0, 0].bool().numpy()


def sequence_job(plan: SequencePlan) -> dict:
    """What decides the frames (``or_synth_sequence.json``'s ``job``): a re-run with other values is refused
    unless ``overwrite``."""
    options = plan.options
    graphs = json.dumps([r.to_json() for r in plan.records], sort_keys=True).encode()
    return {
        "take": plan.take,
        "scans": [plan.records[0].scan, plan.records[-1].scan],
        "graphs_hash": hashlib.sha256(graphs).hexdigest()[:16],
        "pipeline_hash": pipeline_hash(plan.folder),
        "layout": LAYOUT_SOURCES[plan.layout],
        "layout_renderer": RENDERER_VERSION if plan.layout == "render" else None,
        "max_step": MAX_STEP,
        "temporal": plan.temporal,
        "dilation": int(plan.cfg.dilation),
        "jpeg_quality": int(plan.cfg.jpeg_quality),
        **options.drawing(),
    }


def check_out_folder(out: Path, job: dict, overwrite: bool) -> dict | None:
    """The earlier record when ``out`` holds this very sequence (finished or not), None for a new one.

    Raises:
        SequenceRefused: ``out`` is a file, or holds another sequence (or other files) and ``overwrite`` is false.
    """
    if out.exists() and not out.is_dir():
        raise SequenceRefused(f"out={out} is a file; give a folder for the sequence")
    path = out / RECORD
    record = None
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
    if record is not None and record.get("job") == job:
        return record
    if not out.exists() or not any(out.iterdir()):
        return None
    if not overwrite:
        what = (
            "a sequence of other settings"
            if record is not None
            else "files that or_synth.sequence did not write"
        )
        if record is not None:
            earlier = record.get("job") or {}
            what += f" ({', '.join(sorted(k for k in job if earlier.get(k) != job[k]))})"
        raise SequenceRefused(
            f"{out} holds {what}; nothing was changed. Pass overwrite=true to replace it, or choose another out="
        )
    if record is None and not any(out.glob("export_holistic_take*_processed")):
        raise SequenceRefused(
            f"{out} is not a sequence folder; refusing to delete it even with overwrite=true"
        )
    for name in (WORK, "videos", *(p.name for p in out.glob("export_holistic_take*_processed")), "phases"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in (RECORD, MANIFEST, "strip.png", *(p.name for p in out.glob("relationships_*.json"))):
        (out / name).unlink(missing_ok=True)
    return None


def latent_path(out: Path, scan: str) -> Path:
    return out / WORK / "latents" / f"{scan}.safetensors"


def frame_done(plan: SequencePlan, t: int) -> bool:
    """Frame ``t`` is whole: its annotation (written last), its latents and every camera's image."""
    record = plan.records[t]
    if (
        not annotation_path(plan.out, plan.take, record.scan).is_file()
        or not latent_path(plan.out, record.scan).is_file()
    ):
        return False
    return all(image_complete(frame_path(plan, t, camera)) for camera in plan.options.cameras)


def frame_path(plan: SequencePlan, t: int, camera: int) -> Path:
    return color_image_path(
        plan.out, plan.take, camera, frame_id(plan.take, int(plan.records[t].scan), camera)
    )


def sequence(cfg: DictConfig) -> dict:
    """Run the configured sequence (``configs/sequence.yaml``); returns ``or_synth_sequence.json``'s content."""
    return run_sequence(prepare_sequence(cfg))


def run_sequence(plan: SequencePlan) -> dict:
    """Draw (or resume) the sequence of ``plan`` and write its dataset, manifest, videos and strip."""
    out, options = plan.out, plan.options
    earlier = check_out_folder(out, plan.job, bool(plan.cfg.overwrite))
    if earlier is not None and earlier.get("complete"):
        return {**earlier, "folder": str(out)}
    out.mkdir(parents=True, exist_ok=True)
    rig = take_cameras(plan.pipe.image_size[1], plan.pipe.image_size[0], options.seed, plan.take)
    stop = int(plan.records[-1].scan) + 1
    ranges: dict[str, list[int]] = {}
    for record, phase in zip(plan.records, plan.phases, strict=True):
        if phase is not None:
            ranges.setdefault(phase, [int(record.scan), int(record.scan)])[1] = int(record.scan)
    write_take_files(out, plan.take, stop, rig, ranges or None)
    write_json(out / RECORD, {"job": plan.job, "complete": False})

    start = 0
    while start < len(plan.records) and frame_done(plan, start):
        start += 1
    cameras = options.cameras
    shape = plan.pipe.latent_shape
    fixed_noise = torch.stack([
        randn_tensor(shape, generator=torch.Generator().manual_seed(sequence_seed(options.seed, plan.take, c)))
        for c in cameras
    ])  # fmt: skip
    previous = load_file(latent_path(out, plan.records[start - 1].scan))["latents"] if start > 0 else None
    progress = tqdm(total=len(plan.records), initial=start, desc="sequence", unit="frame",
                    disable=not plan.cfg.get("progress", True))  # fmt: skip
    seconds = 0.0
    for t in range(start, len(plan.records)):
        began = time.perf_counter()
        previous, shares = draw_frame(plan, t, previous, fixed_noise)
        write_frame(plan, t, previous, shares)
        seconds += time.perf_counter() - began
        progress.update()
    progress.close()

    write_outputs(plan)
    shares = [
        json.loads(annotation_path(out, plan.take, r.scan).read_text())["cameras"] for r in plan.records
    ]
    regenerated = {str(c): float(np.mean([s[str(c)]["regenerated"] for s in shares])) for c in cameras}
    drawn = len(plan.records) - start
    summary = {
        "job": plan.job,
        "complete": True,
        "frames": len(plan.records),
        "cameras": list(cameras),
        "graphs": str(plan.source),
        "pipeline": str(plan.folder),
        "regenerated_share": regenerated,  # mean share of each camera's latent cells regenerated per frame
        "frames_drawn_this_run": drawn,
        "seconds_per_frame_per_camera": seconds / (drawn * len(cameras)) if drawn else None,
        "settings": OmegaConf.to_container(plan.cfg, resolve=True),
    }
    write_json(out / RECORD, summary, indent=2)
    return {**summary, "folder": str(out)}


@torch.no_grad()
def draw_frame(
    plan: SequencePlan, t: int, previous: torch.Tensor | None, fixed_noise: torch.Tensor
) -> tuple[torch.Tensor, list[float]]:
    """Frame ``t``'s final latents for every camera (V, C, h, w) and the share of each view regenerated."""
    cameras, record = plan.options.cameras, plan.records[t]
    latents = torch.empty_like(fixed_noise) if previous is None else previous.clone()
    shares = [1.0] * len(cameras)
    keep = torch.zeros(len(cameras), 1, *fixed_noise.shape[-2:])
    redo = list(range(len(cameras)))
    noise = fixed_noise
    if plan.temporal == "independent":
        seeds = [item_seed(plan.options.seed, plan.take, record.scan, c, 0) for c in cameras]
        noise = torch.stack(
            [randn_tensor(fixed_noise.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds]
        )
    elif previous is not None:
        redo = []
        for v, camera in enumerate(cameras):
            masks = (None, None) if plan.masks is None else (plan.masks[camera][t - 1], plan.masks[camera][t])
            region = changed_region(plan.records[t - 1], record, *masks, dilation=int(plan.cfg.dilation))
            if region is None:  # no layout: a graph change redraws the whole view (same noise)
                changed = identities(plan.records[t - 1]) != identities(record) or set(
                    plan.records[t - 1].triples) != set(record.triples)  # fmt: skip
                keep[v] = 0.0 if changed else 1.0
            else:
                keep[v] = keep_mask_for(torch.from_numpy(region)[None], tuple(fixed_noise.shape[-2:]))[0]
            shares[v] = float(1.0 - keep[v].mean())
            if shares[v] > 0:
                redo.append(v)
    if redo:
        sampling = plan.options.sampling
        masks = None
        if plan.masks is not None:
            masks = torch.from_numpy(np.stack([plan.masks[cameras[v]][t] for v in redo]))
        kept = {}
        if previous is not None and plan.temporal == "coherent":
            kept = {"keep_latents": previous[redo], "keep_mask": keep[redo]}
        drawn = plan.pipe(
            [plan.graphs[t]] * len(redo), [cameras[v] for v in redo], masks=masks, latents=noise[redo],
            num_inference_steps=sampling.steps, guidance_scale=sampling.guidance_scale,
            layout_guidance_scale=sampling.layout_guidance_scale, output_type="latent", **kept,
        ).images  # fmt: skip
        latents[redo] = drawn.to(latents.dtype).cpu()
    return latents, shares


@torch.no_grad()
def decode(pipe: ORScenePipeline, latents: torch.Tensor) -> list[Image.Image]:
    images = pipe.vae.decode(latents.to(pipe.device) / pipe.vae.config.scaling_factor).sample
    images = (images.float() / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray((image * 255).round().astype(np.uint8)) for image in images]


def write_frame(plan: SequencePlan, t: int, latents: torch.Tensor, shares: list[float]) -> None:
    """Frame ``t``'s images, layouts and latents, then its annotation (the frame's completion marker)."""
    record, out = plan.records[t], plan.out
    scan_index = int(record.scan)
    views = {}
    for v, (camera, image) in enumerate(zip(plan.options.cameras, decode(plan.pipe, latents), strict=True)):
        frame = frame_id(plan.take, scan_index, camera)
        with atomic_path(color_image_path(out, plan.take, camera, frame)) as tmp:
            image.save(tmp, format="JPEG", quality=int(plan.cfg.jpeg_quality))
        view = {"frame_id": frame, "regenerated": shares[v]}
        if plan.masks is not None:
            labels = plan.masks[camera][t]
            write_mask(out, plan.take, scan_index, camera, labels)
            view["boxes"], view["pixels"] = node_boxes(labels, record.num_nodes)
        views[str(camera)] = view
    path = latent_path(out, record.scan)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"latents": latents.contiguous()}, str(tmp))
    document = {
        "take_idx": plan.take,
        "scan": record.scan,
        "phase": plan.phases[t],
        "scene_graph": record.to_json(),
        "pipeline_hash": plan.job["pipeline_hash"],
        "layout": plan.job["layout"],
        "temporal": plan.temporal,
        "cameras": views,
    }
    write_json(annotation_path(out, plan.take, record.scan), document)


def write_outputs(plan: SequencePlan) -> None:
    """After the last frame: the relationships file, the image manifest, a video per camera and the strip."""
    out, options = plan.out, plan.options
    split = split_of(plan.take)
    vocabulary = Vocabulary.load(plan.root)
    graphs = out / f"relationships_{split}.json"
    write_json(graphs, {"scans": [r.to_json(vocabulary) for r in plan.records]})
    common = options.recorded(plan.layout, plan.folder, plan.pipe.image_size)
    common["layout_renderer"] = plan.job["layout_renderer"]
    lines = []
    for t, record in enumerate(plan.records):
        for camera in options.cameras:
            seed = (
                sequence_seed(options.seed, plan.take, camera)
                if plan.temporal == "coherent"
                else item_seed(options.seed, plan.take, record.scan, camera, 0)
            )
            lines.append(ManifestLine(
                path_in_folder(frame_path(plan, t, camera), out), plan.take, record.scan, camera,
                graphs=graphs.name, graphs_hash=file_sha256(graphs)[:16], seed=seed,
                **{k: v for k, v in common.items() if k != "graphs"},
            ))  # fmt: skip
    write_manifest(out / MANIFEST, lines)
    frames = {c: [Image.open(frame_path(plan, t, c)).convert("RGB") for t in range(len(plan.records))]
              for c in options.cameras}  # fmt: skip
    (out / "videos").mkdir(exist_ok=True)
    for camera, images in frames.items():
        with atomic_path(out / "videos" / f"camera0{camera}.webp") as tmp:
            save_animation(images, tmp)
    with atomic_path(out / "strip.png") as tmp:
        contact_strip(frames, [r.scan for r in plan.records]).save(tmp, format="PNG")


def save_animation(images: Sequence[Image.Image], path: Path, fps: int = VIDEO_FPS) -> None:
    """An animated WebP (lossless, looping) through Pillow."""
    images[0].save(path, format="WEBP", save_all=True, append_images=list(images[1:]), duration=int(1000 / fps),
                   loop=0, lossless=True)  # fmt: skip


def contact_strip(
    frames: dict[int, list[Image.Image]], scans: Sequence[str], count: int = STRIP_FRAMES, tile: int = 128
) -> Image.Image:
    """Cameras down, up to ``count`` frames across (spread over the sequence), scan ids above the columns."""
    from PIL import ImageDraw, ImageFont

    total = len(scans)
    picked = sorted({int(round(i * (total - 1) / max(count - 1, 1))) for i in range(min(count, total))})
    label, header = 72, 18
    strip = Image.new("RGB", (label + len(picked) * tile, header + len(frames) * tile), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    for c, t in enumerate(picked):
        draw.text((label + c * tile + 4, 3), f"scan {scans[t]}", fill="black", font=font)
    for r, (camera, images) in enumerate(frames.items()):
        top = header + r * tile
        draw.text((4, top + tile // 2 - 6), f"camera {camera}", fill="black", font=font)
        for c, t in enumerate(picked):
            strip.paste(
                images[t].convert("RGB").resize((tile, tile), Image.Resampling.NEAREST),
                (label + c * tile, top),
            )
    return strip
