"""The files an export writes beside its images: each take's frame list, calibration and phase ranges, each
scan's annotation (its completion marker), and at the end the relationships files and the image manifest; which
scans are finished (by content, not existence); and which files of a folder an export wrote (what ``overwrite``
may delete)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from or_synth.data.annotations import annotation_path, mask_path
from or_synth.data.images import FRAME_LIST, color_image_path
from or_synth.data.io import atomic_path, file_sha256
from or_synth.data.manifest import (
    LAYOUT_SOURCES,
    MANIFEST,
    ManifestLine,
    path_in_folder,
    read_manifest,
    write_manifest,
)
from or_synth.data.vocabulary import CAMERAS, SPLIT_TAKES
from or_synth.render.pipeline import split_of
from or_synth.render.room import take_cameras
from or_synth.render.writer import frame_id, node_boxes, write_mask, write_take_files
from or_synth.sampling.export_scans import CAMERA_JITTER, ExportScan
from or_synth.sampling.files import image_complete, write_json
from or_synth.sampling.seeds import SampleItem, make_item

EXPORT_MANIFEST = "or_synth_export.json"  # the export's record: its settings, and whether it is complete
CARD = "dataset_card.md"
TAKE_FOLDER = re.compile(r"export_holistic_take(\d+)_processed")
SCAN_FILE = re.compile(r"(\d{6})\.json")


def scan_items(scan: ExportScan, cameras: Sequence[int], seed: int) -> list[SampleItem]:
    """The scan's images, one per camera, seeded by (seed, source take, source scan, camera, copy)."""
    return [make_item(scan.graph, scan.record, camera, scan.copy, seed) for camera in cameras]


def write_takes(out: Path, scans: Sequence[ExportScan], size: tuple[int, int], seed: int) -> None:
    """Each take's frame list, camera calibration and phase ranges (the renderer's take files)."""
    height, width = size
    for take in sorted({s.take for s in scans}):
        in_take = [s for s in scans if s.take == take]
        ranges: dict[str, list[int]] = {}
        for s in in_take:
            if s.phase is not None:
                ranges.setdefault(s.phase, [s.index, s.index])[1] = s.index
        rig = take_cameras(width, height, seed, take, CAMERA_JITTER)
        write_take_files(out, take, len(in_take), rig, ranges or None)


def write_scan(
    out: Path,
    scan: ExportScan,
    items: Sequence[SampleItem],
    images: Sequence[Image.Image],
    masks: torch.Tensor | None,
    jpeg_quality: int,
    settings: dict,
) -> None:
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
    write_json(annotation_path(out, scan.take, scan.scan), document)


def exported_graph(scan: ExportScan) -> dict:
    """The scan's graph in 4D-OR's scan form, under its exported take and scan id."""
    return {**scan.record.to_json(), "take_idx": scan.take, "scan": scan.scan}


def source_scan(scan: ExportScan, settings: dict) -> dict:
    """Where an exported scan's graph came from (its annotation's and manifest lines' ``source_scan``)."""
    record = scan.record
    return {"take": record.take, "scan": record.scan, "copy": scan.copy, "graphs": settings["graphs"]}


def write_relationships(out: Path, scans: Sequence[ExportScan]) -> dict[str, str]:
    """``relationships_{split}.json`` of the exported scans; returns each file's content hash by split."""
    by_split: dict[str, list] = {}
    for scan in scans:
        by_split.setdefault(split_of(scan.take), []).append(exported_graph(scan))
    hashes = {}
    for split, graphs in by_split.items():
        write_json(out / f"relationships_{split}.json", {"scans": graphs})
        hashes[split] = file_sha256(out / f"relationships_{split}.json")[:16]
    return hashes


def write_image_manifest(
    out: Path, scans: Sequence[ExportScan], cameras: Sequence[int], seed: int, settings: dict, common: dict
) -> None:
    """``manifest.jsonl``: a line per image, its graph in the export's own relationships file (written first,
    :func:`write_relationships`), ``common`` the job's fields (:meth:`SamplingOptions.recorded`)."""
    hashes = write_relationships(out, scans)
    lines = []
    for scan in scans:
        split = split_of(scan.take)
        graphs = {"graphs": f"relationships_{split}.json", "graphs_hash": hashes[split]}
        for item in scan_items(scan, cameras, seed):
            image = color_image_path(
                out, scan.take, item.camera, frame_id(scan.take, scan.index, item.camera)
            )
            where = (path_in_folder(image, out), scan.take, scan.scan, item.camera)
            lines.append(
                ManifestLine(
                    *where, seed=item.seed, source_scan=source_scan(scan, settings), **graphs, **common
                )
            )
    write_manifest(out / MANIFEST, lines)


# --- resuming and overwriting ----------------------------------------------------------------------------------
def scan_finished(out: Path, scan: ExportScan, cameras: Sequence[int], seed: int, masks: bool) -> bool:
    """Whether ``scan`` is whole in ``out``: its annotation readable and naming the scan, each camera's frame
    and seed, and each camera's JPEG (and instance mask, with ``masks``) whole
    (:func:`~or_synth.sampling.files.image_complete`). A scan that is not is drawn again, to the same bytes."""
    try:
        document = json.loads(annotation_path(out, scan.take, scan.scan).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, cut off, not JSON
        return False
    views = document.get("cameras") if isinstance(document, dict) else None
    if not isinstance(views, dict) or (document.get("take_idx"), document.get("scan")) != (
        scan.take,
        scan.scan,
    ):
        return False
    for item in scan_items(scan, cameras, seed):
        frame = frame_id(scan.take, scan.index, item.camera)
        view = views.get(str(item.camera))
        if not isinstance(view, dict) or (view.get("frame_id"), view.get("seed")) != (frame, item.seed):
            return False
        if not image_complete(color_image_path(out, scan.take, item.camera, frame)):
            return False
        if masks and not image_complete(mask_path(out, scan.take, item.camera, frame)):
            return False
    return True


def export_files(out: Path) -> list[Path]:
    """The files an export in ``out`` wrote, as its own files list them, the record last (what ``overwrite``
    deletes): the card, the manifest (and every image a readable line of it names inside ``out``), per take
    folder its frame list, calibrations, phase ranges and, for every scan its frame list or annotations count,
    the annotation and each camera's image and mask; the relationships files of those takes' splits. A file
    of another name (a user's notes, an evaluation folder) is none of them."""
    files = [out / CARD, out / MANIFEST]
    if (out / MANIFEST).is_file():
        inside = out.resolve()
        for line in read_manifest(out / MANIFEST, tolerant=True).lines:
            if (out / line.image).resolve().is_relative_to(inside):
                files.append(out / line.image)
    takes = []
    for folder in sorted(p for p in out.glob("export_holistic_take*_processed") if p.is_dir()):
        match = TAKE_FOLDER.fullmatch(folder.name)
        if match is None:
            continue
        take = int(match[1])
        takes.append(take)
        files += [folder / FRAME_LIST, *(folder / f"camera0{c}.json" for c in CAMERAS)]
        files.append(out / "phases" / f"phase_to_frames_{take}.json")
        for index in range(scan_count(out, take)):
            files.append(annotation_path(out, take, f"{index:06d}"))
            for camera in CAMERAS:
                frame = frame_id(take, index, camera)
                files += [color_image_path(out, take, camera, frame), mask_path(out, take, camera, frame)]
    splits = sorted({split for split, split_takes in SPLIT_TAKES.items() if set(split_takes) & set(takes)})
    files += [out / f"relationships_{split}.json" for split in splits]
    return [*dict.fromkeys(files), out / EXPORT_MANIFEST]


def scan_count(out: Path, take: int) -> int:
    """How many scans an export wrote in ``take``: its frame list's length, or past the last annotation."""
    folder = annotation_path(out, take, "000000").parent
    numbered = [int(m[1]) for p in folder.glob("*.json") if (m := SCAN_FILE.fullmatch(p.name))]
    try:
        listed = len(json.loads((folder.parent / FRAME_LIST).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        listed = 0
    return max(listed, max(numbered, default=-1) + 1)
