"""The content of each section of a report page, built from an evaluation's ``metrics.json`` (and the samples,
edits and training runs it names) into plain dicts the Jinja2 template lays out. Every builder tolerates a
missing input: it returns None and the page says what is absent and which command would fill it.

Warnings travel with the number they qualify: a card's warnings go on its row of the summary table, and a
"the relation classifier is weak on X" warning goes on predicate X's row of the per-predicate table.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from or_synth.data import DatasetFormatError
from or_synth.evaluation.image_sets import (
    ImageSetError,
    load_generated,
    load_real_counterparts,
    read_manifest,
)
from or_synth.evaluation.sensitivity import edit_folders
from or_synth.reports import figures

WEAK_PREDICATE = re.compile(r"weak on (\S+) \(")
# What "better" means for each headline number (None: context, neither better nor worse).
HIGHER, LOWER = "higher", "lower"


class Assets:
    """Figures and files that go beside ``index.html``; figures are also embedded in the page as data URIs, so
    the page never points at a file it needs (the copies are for people and tools that want the PNGs)."""

    def __init__(self) -> None:
        self.figures: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}

    def figure(self, name: str, png: bytes) -> str:
        self.figures[name] = png
        return data_uri(png)

    def file(self, relative: str, content: bytes) -> None:
        self.files[relative] = content


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def fmt(value, digits: int = 3) -> str:
    """A number as a reader wants it: ints whole, floats to ``digits`` significant decimals, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not np.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 10 ** -(digits - 1):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""


def signed(value) -> str:
    return ("+" if value is not None and value > 0 else "") + fmt(value)


def weak_predicates(card: Mapping | None) -> dict[str, str]:
    """Predicate -> the card's warning that the scorer cannot judge it."""
    found = {}
    for warning in (card or {}).get("warnings") or []:
        match = WEAK_PREDICATE.search(warning)
        if match:
            found[match.group(1)] = warning
    return found


def condensed_warnings(card: Mapping | None) -> list[str]:
    """The card's warnings with the per-predicate "weak scorer" ones folded into one line: beside a macro
    average they qualify it together; each one in full sits beside its predicate's own number."""
    weak = weak_predicates(card)
    other = [w for w in (card or {}).get("warnings") or [] if w not in weak.values()]
    if weak:
        other.append(
            f"the scorer is weak on {len(weak)} predicate(s) ({', '.join(weak)}): their per-predicate scores say "
            "little about the generator (marked in the per-predicate table)"
        )
    return other


# --- per-predicate consistency ----------------------------------------------------------------------------------
def consistency_section(document: Mapping, assets: Assets) -> dict | None:
    card = document.get("cards", {}).get("graph_consistency")
    report = document.get("details", {}).get("graph_consistency")
    if not report or "predicates" not in report:
        return None
    weak = weak_predicates(card)
    quality = ((card or {}).get("classifier_quality") or {}).get("validation", {}).get("predicates", {})
    rows = []
    for predicate, entry in report["predicates"].items():
        support = (entry.get("model") or {}).get("support_per_scan") or 0
        if not support:
            continue  # no scan of these graphs has it: no F1 to show
        rows.append(
            {
                "predicate": predicate,
                "support": support,
                **{k: (entry.get(k) or {}).get("f1_per_scan") for k in ("model", "ceiling", "floor")},
                "scorer": (quality.get(predicate) or {}).get("f1_per_scan"),
                "weak": predicate in weak,
                "warnings": [weak[predicate]] if predicate in weak else [],
            }
        )
    return {
        "rows": rows,
        "figure": assets.figure("consistency_per_predicate.png", figures.predicate_bars_png(rows))
        if rows
        else None,
        "per_camera": report.get("per_camera") or {},
        "view_agreement": report.get("view_agreement"),
        "triples": {k: (report.get(k) or {}).get("triples_per_scan") for k in ("model", "ceiling", "floor")},
        "pairs": pair_rows(document.get("details", {}).get("pair_consistency")),
    }


def pair_rows(report: Mapping | None) -> dict | None:
    """The pair-level per-predicate table (F1 per scan), where boxes existed."""
    if not report or "predicates" not in report:
        return None
    rows = [
        {
            "predicate": predicate,
            "support": (entry.get("model") or {}).get("support_per_scan"),
            **{
                k: (entry.get(k) or {}).get("f1_per_scan")
                for k in ("model", "ceiling", "floor", "labels_only")
            },
        }
        for predicate, entry in report["predicates"].items()
        if (entry.get("model") or {}).get("support_per_scan")
    ]
    return {"rows": rows, "box_source": report.get("box_source"), "n_pairs": report.get("n_pairs")}


# --- downstream study -------------------------------------------------------------------------------------------
ARM_NAMES = {
    "real_only": "real only",
    "synthetic": "real + synthetic",
    "oracle": "real + extra real (oracle)",
    "matched_compute": "real only, matched compute",
}


def downstream_section(document: Mapping, assets: Assets) -> dict | None:
    study = document.get("details", {}).get("action_recognition")
    if not study or not study.get("rows"):
        return None
    rows = study["rows"]
    table = [
        {
            "fraction": r["fraction"],
            "arm": ARM_NAMES.get(r["arm"], r["arm"]),
            "ratio": r["ratio"],
            "steps": r.get("steps"),
            "real_images": r.get("real_images"),
            "added_images": r.get("added_images"),
            "mean": r.get("mean"),
            "ci95": r.get("ci95"),
            "per_seed": r.get("macro_f1"),
            "gain": (r.get("gain_over_real_only") or {}).get("mean"),
            "gain_ci95": (r.get("gain_over_real_only") or {}).get("ci95"),
        }
        for r in rows
    ]
    # Per-class table at the largest real fraction: real only, the best synthetic ratio, its oracle, matched compute.
    top = max(r["fraction"] for r in rows)
    mine = [r for r in rows if r["fraction"] == top]
    columns = [r for r in mine if r["arm"] == "real_only"]
    synthetic = [r for r in mine if r["arm"] == "synthetic"]
    if synthetic:
        best = max(synthetic, key=lambda r: r["mean"])
        columns.append(best)
        columns += [r for r in mine if r["arm"] == "oracle" and r["ratio"] == best["ratio"]]
    columns += [r for r in mine if r["arm"] == "matched_compute"]
    classes = list((columns[0].get("per_class") or {}) if columns else {})
    per_class = [
        {
            "action": name,
            "support": (columns[0]["per_class"][name] or {}).get("support"),
            "f1": [((c.get("per_class") or {}).get(name) or {}).get("f1") for c in columns],
        }
        for name in classes
    ]
    headers = [
        f"{ARM_NAMES.get(c['arm'], c['arm'])}" + (f" r={c['ratio']:g}" if c["ratio"] else "") for c in columns
    ]
    return {
        "rows": table,
        "figure": assets.figure("action_recognition.png", figures.downstream_png(rows)),
        "per_class": per_class,
        "per_class_headers": headers,
        "per_class_fraction": top,
        "definitions": study.get("definitions") or {},
        "settings": study.get("settings") or {},
    }


# --- memorisation -----------------------------------------------------------------------------------------------
def memorisation_section(
    document: Mapping, folder: Path | None, assets: Assets, max_pairs: int
) -> dict | None:
    report = document.get("details", {}).get("memorisation")
    if not report:
        return None
    stats = ("similarity_median", "similarity_p95", "similarity_max", "ssim_median", "ssim_p95", "ssim_max")
    summary, baseline = report.get("summary") or {}, report.get("heldout_baseline") or {}
    table = [
        {
            "name": "generated images",
            "n": summary.get("n_generated"),
            "flagged": summary.get("n_flagged"),
            **{k: summary.get(k) for k in stats},
        },
    ]
    if baseline:
        table.append(
            {
                "name": "real held-out images (calibration)",
                "n": baseline.get("n_heldout"),
                "flagged": baseline.get("n_flagged"),
                **{k: baseline.get(k) for k in stats},
            }
        )
    pairs = []
    for pair in (report.get("pairs") or [])[:max_pairs]:
        path = folder / "memorisation_pairs" / pair["file"] if folder and pair.get("file") else None
        if path is None or not path.is_file():
            continue
        png = path.read_bytes()
        assets.file(f"memorisation_pairs/{pair['file']}", png)
        pairs.append({**pair, "uri": data_uri(png)})
    return {
        "table": table,
        "stats": stats,
        "n_training": summary.get("n_training"),
        "thresholds": {k: report.get(k) for k in ("feature_threshold", "ssim_threshold")},
        "pairs": pairs,
        "pairs_total": len(report.get("pairs") or []),
    }


# --- graph edits ------------------------------------------------------------------------------------------------
def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def edits_section(edits: Path | None, document: Mapping, assets: Assets, max_edits: int) -> dict | None:
    """Each edit's before/after picture (its ``pair.png``, else one drawn from its before/after/full images),
    what it changed, how much of the rest of the image stayed put, and what the scorer saw move."""
    if edits is None:
        return None
    try:
        folders = edit_folders(edits)
    except ImageSetError:
        return None
    scored = {
        e["folder"]: e
        for e in (document.get("details", {}).get("relation_sensitivity") or {}).get("edits", [])
    }
    items = []
    for k, folder in enumerate(folders[:max_edits]):
        summary = json.loads((folder / "edit.json").read_text())
        if (folder / "pair.png").is_file():
            png = (folder / "pair.png").read_bytes()
        else:
            columns = {
                kind: [read_rgb(p) for p in sorted(folder.glob(f"{kind}_cam*.png"))]
                for kind in ("before", "after", "full")
            }
            columns = {kind: images for kind, images in columns.items() if images}
            if not columns:
                continue
            png = figures.image_pairs_png(columns, summary.get("edit", folder.name))
        assets.file(f"edits/{folder.name}/edit.json", (folder / "edit.json").read_bytes())
        cameras = []
        for camera, entry in (summary.get("cameras") or {}).items():
            if isinstance(entry, Mapping):
                cameras.append(
                    {
                        "camera": camera,
                        "regenerated": entry.get("regenerated"),
                        "inpainted": entry.get("inpainted"),
                        "full": entry.get("full_regeneration"),
                    }
                )
        items.append(
            {
                "edit": summary.get("edit", folder.name),
                "folder": folder.name,
                "take": summary.get("take"),
                "scan": summary.get("scan"),
                "uri": assets.figure(f"edit_{k:02d}_{folder.name}.png", png),
                "cameras": cameras,
                "changed_labels": (scored.get(folder.name) or {}).get("changed_labels"),
            }
        )
    return {"items": items, "total": len(folders), "folder": str(edits)} if items else None


# --- sequences -------------------------------------------------------------------------------------------------
SEQUENCE_RECORD = (
    "or_synth_sequence.json"  # or_synth.sampling.sequence.RECORD (the report does not import sampling)
)
STABILITY = "stability.json"  # beside it, from ``bash scripts/benchmark.sh sequence``


def sequence_section(manifest: Path | None, assets: Assets) -> dict | None:
    """A sequence's videos (one animated WebP per camera, embedded), its contact strip, what each frame cost and
    regenerated, and, where the sequence benchmark wrote them beside it, the stability and per-frame consistency
    numbers against independent sampling. None when the samples are not a finished ``or_synth.sequence``."""
    if manifest is None or not (manifest.parent / SEQUENCE_RECORD).is_file():
        return None
    folder = manifest.parent
    record = json.loads((folder / SEQUENCE_RECORD).read_text())
    if not record.get("complete"):
        return None
    videos = []
    for camera in record.get("cameras", []):
        path = folder / "videos" / f"camera0{camera}.webp"
        if path.is_file():
            content = path.read_bytes()
            assets.file(f"sequence/camera0{camera}.webp", content)
            videos.append(
                {"camera": camera, "uri": "data:image/webp;base64," + base64.b64encode(content).decode()}
            )
    strip = None
    if (folder / "strip.png").is_file():
        strip = assets.figure("sequence_strip.png", (folder / "strip.png").read_bytes())
    job = record.get("job", {})
    stability = json.loads((folder / STABILITY).read_text()) if (folder / STABILITY).is_file() else None
    return {
        "folder": str(folder),
        "take": job.get("take"),
        "scans": job.get("scans"),
        "frames": record.get("frames"),
        "temporal": job.get("temporal"),
        "regenerated": record.get("regenerated_share", {}),
        "seconds": record.get("seconds_per_frame_per_camera"),
        "videos": videos,
        "strip": strip,
        "stability": stability,
    }


# --- training curves --------------------------------------------------------------------------------------------
def read_train_log(path: Path) -> list[dict]:
    rows = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: the rest of the log still reads
        if isinstance(line, dict):
            rows.append(line)
    return rows


def read_tensorboard(folder: Path) -> list[dict]:
    """Scalars of a run that logs only to TensorBoard (stage ``align``), one row per step like train_log.jsonl."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    by_step: dict[int, dict] = {}
    for tag in events.Tags().get("scalars", []):
        for event in events.Scalars(tag):
            by_step.setdefault(int(event.step), {"step": int(event.step), "time": event.wall_time})[tag] = (
                event.value
            )
    return [by_step[s] for s in sorted(by_step)]


def training_warnings(stage: str, config: Mapping) -> list[str]:
    warnings = []
    towers = ((config.get("encoder") or {}).get("towers") or {}) if isinstance(config, Mapping) else {}
    if stage in ("align", "ldm") and "pretrained" in towers and not towers.get("pretrained"):
        warnings.append(
            "the scene-graph encoder's CLIP towers start from RANDOM weights (encoder.towers.pretrained="
            f"{towers.get('pretrained')}): no pretrained language/vision knowledge enters this run"
        )
    return warnings


def training_section(runs: Sequence[tuple[str, Path]], assets: Assets) -> dict | None:
    from omegaconf import OmegaConf

    items = []
    for label, run in runs:
        log_path = run / "train_log.jsonl"
        log = read_train_log(log_path) if log_path.is_file() else []
        if not log and (run / "tensorboard").is_dir():
            log = read_tensorboard(run / "tensorboard")
        config = {}
        if (run / "config.yaml").is_file():
            config = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=False) or {}
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        # The final scalars only (step, loss, ...); nested results such as a classifier's quality have their own table.
        metrics = {k: v for k, v in metrics.items() if isinstance(v, int | float | str) and len(str(v)) < 40}
        quality_path = run / "classifier" / "quality.json"
        quality = json.loads(quality_path.read_text()) if quality_path.is_file() else {}
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{run.parent.name}_{run.name}")
        item = {
            "label": label,
            "path": str(run),
            "steps": len(log),
            "metrics": metrics,
            "quality": {s: {k: v for k, v in q.items() if k != "predicates"} for s, q in quality.items()},
            "warnings": training_warnings(run.parent.name, config),
            "figure": None,
            "grid": None,
            "wall_seconds": round(log[-1]["time"] - log[0]["time"], 1)
            if len(log) > 1 and "time" in log[0]
            else None,
        }
        if log:
            item["figure"] = assets.figure(f"training_{slug}.png", figures.training_curves_png(label, log))
        grid = run / "samples" / "grid_final.png"
        if grid.is_file():
            item["grid"] = assets.figure(f"training_{slug}_grid_final.png", grid.read_bytes())
        items.append(item)
    return {"items": items} if items else None


# --- sample grid ------------------------------------------------------------------------------------------------
def pick_scans(lines: Sequence[Mapping], count: int, views: int) -> list[list[Mapping]]:
    """``count`` scans spread evenly over the manifest (every phase of a take shows), each with up to ``views``
    of its images: distinct cameras first, the first sample of each."""
    by_scan: dict[tuple[int, str], list[Mapping]] = {}
    for line in lines:
        by_scan.setdefault((int(line["take"]), str(line["scan"])), []).append(line)
    keys = list(by_scan)
    chosen = sorted({round(i) for i in np.linspace(0, len(keys) - 1, min(count, len(keys)))})
    picked = []
    for index in chosen:
        seen, kept = set(), []
        for line in sorted(by_scan[keys[index]], key=lambda x: (int(x.get("sample", 0)), int(x["camera"]))):
            if int(line["camera"]) not in seen and len(kept) < views:
                seen.add(int(line["camera"]))
                kept.append(line)
        picked.append(kept)
    return picked


def tiles(images, rows: range, kind: str) -> list[tuple[str, np.ndarray]]:
    """(caption, (H, W, 3) uint8) per image of ``rows`` of an ImageSet."""
    return [(f"{kind} cam {int(images.cameras[i])}", images.images[i].permute(1, 2, 0).numpy()) for i in rows]


def sample_grid_section(
    manifest: Path, dataset_root: Path | None, assets: Assets, count: int, views: int
) -> tuple[dict | None, list[str]]:
    """Rows of (scene-graph picture, generated views, real views of the same scan). Reads only the chosen images:
    a subset manifest (absolute paths) goes through :func:`load_generated` and :func:`load_real_counterparts`,
    the evaluation's own readers, so the grid shows exactly what was scored."""
    notes = []
    lines = read_manifest(manifest)
    picked = pick_scans(lines, count, views)
    with tempfile.TemporaryDirectory() as scratch:
        subset = Path(scratch) / "manifest.jsonl"
        rewritten = []
        for line in (x for scan in picked for x in scan):  # `graphs` is already absolute (read_manifest)
            rewritten.append({**line, "image": str((manifest.parent / line["image"]).resolve())})
        subset.write_text("".join(json.dumps(x) + "\n" for x in rewritten))
        try:
            generated = load_generated(subset)
        except (ImageSetError, DatasetFormatError, OSError) as error:
            return None, [f"the sample grid could not read the samples: {error}"]
    real = None
    if dataset_root is None:
        notes.append("no dataset_root: the grid shows generated images without their real counterparts")
    else:
        try:
            real = load_real_counterparts(dataset_root, generated)
        except (ImageSetError, DatasetFormatError, OSError) as error:
            notes.append(f"real images not shown: {error}")
    rows, start = [], 0
    for k, scan in enumerate(picked):
        span = range(start, start + len(scan))
        start += len(scan)
        record = generated.records[span[0]]
        png = figures.sample_row_png(
            record, tiles(generated, span, "generated"), tiles(real, span, "real") if real else []
        )
        actions = sorted(record.predicates - {figures.CLUTTER})
        rows.append(
            {
                "uri": assets.figure(f"sample_{k:02d}_take{record.take}_scan{record.scan}.png", png),
                "caption": f"take {record.take} scan {record.scan}: {', '.join(actions) or 'only CloseTo'}",
            }
        )
    return {
        "rows": rows,
        "manifest": str(manifest),
        "n_images": len(lines),
        "n_scans": len({(x["take"], str(x["scan"])) for x in lines}),
    }, notes
