"""A report bundle: ``<out>/<name>/index.html`` plus everything a reader may want to check beside it.

The page answers "is this generator any good, and what did it cost" without the toolkit: it is one HTML file
with every figure embedded as a ``data:`` URI, inline CSS and a Content-Security-Policy that forbids any
fetch, so it opens offline from a file. Beside it: ``metrics.json``, ``cards/``, ``figures/*.png`` (the embedded
figures), ``configs/`` (the evaluation config, each training run's ``config.yaml``), ``environment.json``
(package versions, device, git commit) and ``hashes.json`` (pipeline, classifier, samples manifest, checkpoints).

Inputs (:func:`collect`) are an evaluation output, a samples folder or a training run, and what they name: an
evaluation's samples and dataset, its edits, the classifier's and the pipeline's training runs. Whatever is
missing becomes an "absent" note with the command that would fill it. The bundle is built in a temporary folder
beside the target and renamed into place, so a reader never sees half a report.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from omegaconf import DictConfig, OmegaConf

from or_synth.data.errors import UserError
from or_synth.evaluation.cards import card_markdown, environment
from or_synth.reports import sections
from or_synth.reports.sections import Assets, fmt
from or_synth.data.manifest import first_line
from or_synth.reports.summary import summary_rows
from or_synth.data.io import REPO_ROOT, check_output_folder, file_sha256, json_text, repo_relative

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Folder names that say nothing about the run: the report is named after the parent too.
GENERIC_NAMES = {"eval", "evaluation", "evaluation_out", "samples", "out", "pipeline", "report"}
REPORT_PACKAGES = ("jinja2", "matplotlib")
SECTIONS = (
    ("summary", "Summary"),
    ("samples", "Sample grid"),
    ("consistency", "Graph consistency per predicate"),
    ("action_recognition", "Downstream action recognition"),
    ("training", "Training curves"),
    ("edits", "Graph edits: before / after"),
    ("sequence", "Sequences"),
    ("memorisation", "Memorisation"),
    ("cards", "Metric cards"),
    ("environment", "Environment and hashes"),
)
# The page may load nothing from anywhere: images are data: URIs, styles inline; the browser enforces it.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class ReportError(UserError, ValueError):
    """A report that cannot be built from what was given; the message says what to pass instead."""


@dataclass
class Inputs:
    """What one report is built from (paths resolved; None where absent)."""

    run: Path
    kind: str  # "evaluation" | "samples" | "training"
    name: str
    document: dict | None = None  # the evaluation's metrics.json, merged with any `merge=` evaluations
    metric_folders: dict[str, Path] = field(
        default_factory=dict
    )  # metric -> the evaluation folder it came from
    evaluations: list[Path] = field(default_factory=list)
    manifest: Path | None = None
    dataset_root: Path | None = None
    edits: Path | None = None
    training_runs: list[tuple[str, Path]] = field(default_factory=list)
    pipeline: dict = field(default_factory=dict)
    classifier: Path | None = None


# --- inputs -----------------------------------------------------------------------------------------------------
def resolve(text, *bases: Path) -> Path | None:
    """A path as written in a config or manifest: absolute, or relative to where the command ran (here, the
    repository root, or one of ``bases``); None when it exists nowhere."""
    if text in (None, ""):
        return None
    path = Path(str(text)).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for base in (Path.cwd(), REPO_ROOT, *bases):
        if (base / path).exists():
            return (base / path).resolve()
    return None


def read_evaluation(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    return document if isinstance(document, dict) and "cards" in document else None


def detect_kind(folder: Path) -> str:
    """Evaluation output (metrics.json with cards), samples folder (manifest.jsonl) or training run."""
    if not folder.is_dir():
        raise ReportError(f"run={folder}: no such folder")
    if read_evaluation(folder) is not None:
        return "evaluation"
    if (folder / "manifest.jsonl").is_file():
        return "samples"
    if (folder / "train_log.jsonl").is_file() or (folder / "config.yaml").is_file():
        return "training"
    raise ReportError(
        f"run={folder} is none of: an evaluation output (metrics.json with cards, from python -m or_synth.evaluate), "
        "a samples folder (manifest.jsonl) or a training run (train_log.jsonl / config.yaml under runs/<stage>/<name>)"
    )


def report_name(folder: Path) -> str:
    folder = folder.resolve()
    name = folder.name
    return f"{folder.parent.name}_{name}" if name in GENERIC_NAMES else name


def merge(document: dict, extra: Mapping, folder: Path, folders: dict[str, Path]) -> None:
    """Metrics of a further evaluation of the same samples (e.g. a ``metrics=[relation_sensitivity]`` run) join
    the report; a metric already present is kept (the first evaluation wins)."""
    for name, card in extra.get("cards", {}).items():
        if name in document["cards"]:
            continue
        document["cards"][name] = card
        document["metrics"][name] = extra.get("metrics", {}).get(name, card.get("value"))
        if name in extra.get("details", {}):
            document["details"][name] = extra["details"][name]
        folders[name] = folder
    document["warnings"] = sorted(set(document.get("warnings", [])) | set(extra.get("warnings", [])))
    if extra.get("config", {}).get("edits") and not document.get("config", {}).get("edits"):
        document.setdefault("config", {})["edits"] = extra["config"]["edits"]


def pipeline_info(manifest: Path | None) -> dict:
    """The pipeline the samples came from (its hash, and its ``shipped.json`` when it is a shipped one)."""
    first = first_line(manifest)
    if first is None:
        return {}
    info = {"path": first.pipeline, "hash": first.pipeline_hash}
    folder = resolve(first.pipeline)
    if folder is not None and (folder / "shipped.json").is_file():
        info["shipped"] = json.loads((folder / "shipped.json").read_text())
    info["folder"] = folder
    return info


def training_run_of_pipeline(pipeline: Mapping) -> Path | None:
    """``runs/ldm/<name>`` for ``runs/ldm/<name>/pipeline``, or the run a shipped pipeline names as its source."""
    folder = pipeline.get("folder")
    candidates = []
    if pipeline.get("shipped", {}).get("source"):
        candidates.append(resolve(pipeline["shipped"]["source"]))
    if folder is not None:
        candidates.append(folder.parent if folder.name == "pipeline" else None)
    for run in candidates:
        if run is not None and (run.parent / "train_log.jsonl").is_file() and run.name == "pipeline":
            return run.parent
        if run is not None and (run / "train_log.jsonl").is_file():
            return run
    return None


def recipe_runs(run: Path) -> list[Path]:
    """The stages of one recipe (``runs/<stage>/<name>`` sharing the name), the given run first. A relation
    classifier of the same name is a scorer trained beside the recipe, not one of its stages: left out."""
    siblings = sorted(
        p
        for p in run.parent.parent.glob(f"*/{run.name}")
        if (p / "config.yaml").is_file() and p.parent.name != "classifier"
    )
    return [run, *(p for p in siblings if p.resolve() != run.resolve())]


def collect(cfg: DictConfig) -> Inputs:
    if not cfg.run:
        raise ReportError("run=DIR is required: an evaluation output, a samples folder or a training run")
    run = Path(str(cfg.run)).expanduser()
    kind = detect_kind(run)
    inputs = Inputs(run=run.resolve(), kind=kind, name=str(cfg.name or report_name(run)))
    if kind == "evaluation":
        inputs.document = read_evaluation(run)
        inputs.evaluations = [run]
        inputs.metric_folders = dict.fromkeys(inputs.document["cards"], run)
        for extra in cfg.merge or []:
            extra_document = read_evaluation(Path(str(extra)))
            if extra_document is None:
                raise ReportError(f"merge: {extra} is no evaluation output (metrics.json with cards)")
            merge(inputs.document, extra_document, Path(str(extra)), inputs.metric_folders)
            inputs.evaluations.append(Path(str(extra)))
        config = inputs.document.get("config", {})
        manifest = resolve(config.get("samples"), run.parent)
        if manifest is not None and manifest.is_dir():
            manifest = manifest / "manifest.jsonl"
        inputs.manifest = manifest if manifest is not None and manifest.is_file() else None
        inputs.classifier = resolve(config.get("classifier"))
        inputs.edits = resolve(cfg.edits) or resolve(config.get("edits"))
        inputs.dataset_root = resolve(cfg.dataset_root) or resolve(config.get("dataset_root"))
    elif kind == "samples":
        inputs.manifest = run / "manifest.jsonl"
        inputs.edits = resolve(cfg.edits)
    else:
        inputs.training_runs = [(f"{p.parent.name} / {p.name}", p) for p in recipe_runs(run)]
        inputs.edits = resolve(cfg.edits)
        if (run / "classifier").is_dir():
            inputs.classifier = run / "classifier"
    if inputs.manifest is not None and inputs.dataset_root is None:
        inputs.dataset_root = resolve(cfg.dataset_root) or manifest_dataset_root(inputs.manifest)
    inputs.pipeline = pipeline_info(inputs.manifest)
    generator_run = training_run_of_pipeline(inputs.pipeline)
    if generator_run is not None and all(generator_run != p for _, p in inputs.training_runs):
        inputs.training_runs += [
            (f"generator: {p.parent.name} / {p.name}", p) for p in recipe_runs(generator_run)
        ]
    if inputs.classifier is not None and (inputs.classifier.parent / "train_log.jsonl").is_file():
        scorer = inputs.classifier.parent
        if all(scorer.resolve() != p.resolve() for _, p in inputs.training_runs):
            inputs.training_runs.append((f"scorer: relation classifier {scorer.name}", scorer))
    for extra in cfg.training_runs or []:
        path = resolve(extra)
        if path is None:
            raise ReportError(f"training_runs: {extra} does not exist")
        inputs.training_runs.append((f"{path.parent.name} / {path.name}", path))
    return inputs


def manifest_dataset_root(manifest: Path) -> Path | None:
    """The dataset a manifest's graphs came from: the folder of the relationships file it names. None for an
    export, whose graphs are its own (its source dataset is named in its ``or_synth_export.json``)."""
    first = first_line(manifest)
    if first is None or first.source_scan is not None:
        return None
    source = resolve(first.graphs, manifest.parent)
    return source.parent if source is not None else None


# --- commands that fill absent sections -------------------------------------------------------------------------
def commands(inputs: Inputs) -> dict[str, str]:
    config = (inputs.document or {}).get("config", {})
    samples = str(inputs.manifest.parent) if inputs.manifest else f"samples/{inputs.name}"
    sample = ""
    if inputs.kind == "training" and (inputs.run / "pipeline").is_dir():
        sample = (
            f"python -m or_synth.sample pipeline={inputs.run / 'pipeline'} graphs=validation out={samples}\n"
        )
    classifier = inputs.classifier or "runs/classifier/NAME/classifier"
    evaluation = str(inputs.run) if inputs.kind == "evaluation" else f"{samples}_eval"
    pipeline = inputs.pipeline.get("path") or (
        inputs.run / "pipeline" if inputs.kind == "training" else "PIPELINE"
    )
    base = f"python -m or_synth.evaluate samples={samples} classifier={classifier}"
    merged = f"python -m or_synth.report run={evaluation} merge=[{{out}}]"
    return {
        "evaluate": f"{sample}{base} metrics=[fid,kid,classifier_fd,graph_consistency,memorisation] "
        f"out={evaluation}\npython -m or_synth.report run={evaluation}",
        "fid": f"{base} metrics=[fid,kid] inception_weights=pt_inception-2015-12-05-6726825d.pth "
        f"dataset_root={config.get('dataset_root', 'DATASET')} out={evaluation}_fid\n"
        + merged.format(out=f"{evaluation}_fid"),
        "action_recognition": f"{base} metrics=[action_recognition] action_recognition.samples=SAMPLES_OF_TRAINING_GRAPHS "
        f"action_recognition.extra_real_root=RENDER_OF_TRAINING_TAKES out={evaluation}_downstream\n"
        + merged.format(out=f"{evaluation}_downstream"),
        "edits": f'python -m or_synth.edit pipeline={pipeline} scan=TAKE/SCAN edit="predicate head-surgeon Patient '
        f'Sawing" out=edits/{inputs.name}\npython -m or_synth.evaluate metrics=[relation_sensitivity] '
        f"edits=edits/{inputs.name} classifier={classifier} out={evaluation}_edits\n"
        + merged.format(out=f"{evaluation}_edits"),
        "training": f"python -m or_synth.report run={inputs.run} training_runs=[runs/ldm/NAME]",
        "samples": f"{sample}python -m or_synth.report run={samples}" if sample else "",
        "sequence": f"python -m or_synth.sequence pipeline={pipeline} graphs=validation take=4 scans=0:40 "
        f"out=sequences/{inputs.name}\npython -m or_synth.report run=sequences/{inputs.name}\n"
        "bash scripts/benchmark.sh sequence   # stability against independent sampling, beside the sequence",
    }


def absent(section: str, reason: str, command: str = "") -> dict:
    return {"id": section, "title": dict(SECTIONS)[section], "reason": reason, "command": command}


# --- files beside the page --------------------------------------------------------------------------------------


def checkpoint_hashes(run: Path) -> dict[str, str]:
    """SHA-256 of the weights a run produced: its latest checkpoint and its exported artefacts (``pipeline/``,
    ``classifier/``, ``encoder/``, ``autoencoder/``, ...): what a reader needs to tell whether a model file is the
    one this report describes. Optimizer state (``state.pt``) is left out."""
    folders = [
        p
        for p in sorted(run.iterdir())
        if p.is_dir() and p.name not in ("checkpoints", "tensorboard", ".hydra")
    ]
    checkpoints = run / "checkpoints"
    pointer = checkpoints / "latest"
    if pointer.is_file() and (checkpoints / pointer.read_text().strip()).is_dir():
        folders.insert(0, checkpoints / pointer.read_text().strip())
    files = [f for folder in folders for f in sorted(folder.rglob("*.safetensors"))]
    if not pointer.is_file() and checkpoints.is_dir():
        files += sorted(checkpoints.glob("*.pt"))  # single-file checkpoints (stage align)
    return {str(f.relative_to(run)): file_sha256(f) for f in files}


def hashes(inputs: Inputs) -> dict:
    document = inputs.document or {}
    cards = document.get("cards", {})
    pick = next(iter(cards.values()), {})
    result = {
        "pipeline": {
            "path": inputs.pipeline.get("path"),
            "pipeline_hash": inputs.pipeline.get("hash") or pick.get("pipeline_hash"),
            "shipped_files_sha256": inputs.pipeline.get("shipped", {}).get("files"),
        },
        "classifier": {
            "path": str(inputs.classifier) if inputs.classifier else None,
            "classifier_hash": pick.get("classifier_hash"),
        },
        "samples_manifest": {
            "path": str(inputs.manifest) if inputs.manifest else None,
            "sha256": file_sha256(inputs.manifest) if inputs.manifest else None,
            "card_samples_sha256": pick.get("samples_sha256"),
        },
        "cards": {
            name: {
                k: card.get(k) for k in ("pipeline_hash", "classifier_hash", "weights_hash", "samples_sha256")
            }
            for name, card in cards.items()
        },
        "checkpoints": {str(run): checkpoint_hashes(run) for _, run in inputs.training_runs},
    }
    return result


def report_environment(inputs: Inputs) -> dict:
    report = environment()
    for name in REPORT_PACKAGES:
        try:
            report["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            report["packages"][name] = "not installed"
    cards = (inputs.document or {}).get("cards", {})
    evaluated = next((c["environment"] for c in cards.values() if c.get("environment")), None)
    return {"evaluation": evaluated, "report": report}


# --- writing ----------------------------------------------------------------------------------------------------
def template_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    env.filters.update(num=fmt, ci=sections.fmt_ci, signed=sections.signed)
    env.filters["pretty"] = lambda value: json.dumps(value, indent=1, sort_keys=True, default=str)
    return env


# What marks a folder as a bundle this command wrote (a report, or a comparison): only such a folder is replaced.
BUNDLE_MARKERS = (("index.html", "hashes.json", "environment.json"), ("index.html", "comparison.json"))


def is_bundle(folder: Path) -> bool:
    return folder.is_dir() and any(
        all((folder / name).is_file() for name in names) for names in BUNDLE_MARKERS
    )


def check_replaceable(final: Path) -> None:
    """``out/name`` may be new or an earlier bundle; anything else (a file, a samples folder, a user's notes) is
    refused before any work, and never moved or deleted."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise ReportError(f"out/name={final} is a file, not a report folder; choose another out= or name=")
    check_output_folder(final.parent, "out")
    if final.is_dir() and any(final.iterdir()) and not is_bundle(final):
        raise ReportError(
            f"out/name={final} holds files that are not a report bundle; nothing was changed. Choose another "
            "out= or name= (a report replaces only an earlier report)"
        )


def write_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Build into a temporary folder beside ``final``, then swap it in: readers see the old or the new bundle.
    ``final`` must be new, empty or an earlier bundle (:func:`check_replaceable`)."""
    check_replaceable(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        write(staging)
        staging.chmod(0o755)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def check_target(final: Path, inputs: list[Path]) -> None:
    for folder in inputs:
        if final.resolve() == folder.resolve() or final.resolve() in folder.resolve().parents:
            raise ReportError(
                f"out/name={final} would replace the input {folder}; choose another out= or name="
            )


def save_files(folder: Path, assets: Assets, texts: Mapping[str, str]) -> None:
    for name, png in assets.figures.items():
        (folder / "figures").mkdir(exist_ok=True)
        (folder / "figures" / name).write_bytes(png)
    for relative, content in assets.files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content)
    for relative, text in texts.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text, encoding="utf-8")


def build_report(cfg: DictConfig) -> Path:
    """Collect the inputs of ``cfg.run``, build every section and write ``<cfg.out>/<name>/``; returns that folder."""
    inputs = collect(cfg)
    final = Path(str(cfg.out)) / inputs.name
    check_target(final, [inputs.run, *inputs.evaluations])
    check_replaceable(final)  # before any section is built
    assets, missing, notes = Assets(), [], {}
    todo = commands(inputs)
    document = inputs.document or {"cards": {}, "details": {}, "metrics": {}, "warnings": []}

    if inputs.document is None:
        why = f"{inputs.run} is a {'samples folder' if inputs.kind == 'samples' else 'training run'} with no evaluation"
        for section in ("summary", "consistency", "action_recognition", "memorisation", "cards"):
            missing.append(absent(section, why, todo["evaluate"]))
    summary = summary_rows(document, todo) if inputs.document is not None else []

    grid = None
    if inputs.manifest is not None:
        grid, notes["samples"] = sections.sample_grid_section(
            inputs.manifest, inputs.dataset_root, assets, int(cfg.grid_scans), int(cfg.grid_views)
        )
    if grid is None:
        reason = "no samples folder (manifest.jsonl) to draw from"
        if inputs.kind == "evaluation":
            reason = f"the evaluation's samples ({document.get('config', {}).get('samples')}) are not on this machine"
        missing.append(absent("samples", reason, todo["samples"]))
    consistency = sections.consistency_section(document, assets)
    if consistency is None and inputs.document is not None:
        missing.append(absent("consistency", "graph_consistency was not evaluated", todo["evaluate"]))
    downstream = sections.downstream_section(document, assets)
    if downstream is None and inputs.document is not None:
        missing.append(
            absent("action_recognition", "action_recognition was not evaluated", todo["action_recognition"])
        )
    training = sections.training_section(inputs.training_runs, assets)
    shipped = inputs.pipeline.get("shipped")
    if shipped and not any(label.startswith("generator") for label, _ in inputs.training_runs):
        # What the generator cost, from the shipped pipeline's own record when its run folder is elsewhere.
        notes["training"] = [
            f"generator: the shipped pipeline {shipped.get('name')} was trained by `{shipped.get('command')}` "
            f"({fmt(shipped.get('train_steps'))} steps, {fmt(shipped.get('train_wall_seconds'))} s of training); "
            f"its run folder ({shipped.get('source')}) is not on this machine, so its curves are not shown"
        ]
    if training is None:
        missing.append(
            absent("training", "no training run found for the pipeline or the scorer", todo["training"])
        )
    edits = sections.edits_section(inputs.edits, document, assets, int(cfg.max_edits))
    if edits is None:
        missing.append(
            absent("edits", "no graph edits (or_synth.edit outputs) were given or named", todo["edits"])
        )
    sequence = sections.sequence_section(inputs.manifest, assets)
    if sequence is None:
        missing.append(
            absent("sequence", "the samples are not a finished scene-graph sequence (or_synth.sequence)",
                   todo["sequence"])
        )  # fmt: skip
    memorisation = sections.memorisation_section(
        document, inputs.metric_folders.get("memorisation"), assets, int(cfg.memorisation_pairs)
    )
    if memorisation is None and inputs.document is not None:
        missing.append(absent("memorisation", "memorisation was not evaluated", todo["evaluate"]))

    env, digests = report_environment(inputs), hashes(inputs)
    texts = {
        "environment.json": json_text(env, indent=2) + "\n",
        "hashes.json": json_text(digests, indent=2) + "\n",
    }
    if inputs.document is not None:
        texts["metrics.json"] = json_text(inputs.document, indent=2) + "\n"
        texts["configs/evaluate.yaml"] = OmegaConf.to_yaml(OmegaConf.create(document.get("config", {})))
        for name, card in document["cards"].items():
            texts[f"cards/{name}.json"] = json_text(card, indent=2) + "\n"
            texts[f"cards/{name}.md"] = card_markdown(card)
    for _, run in inputs.training_runs:
        if (run / "config.yaml").is_file():
            texts[f"configs/{run.parent.name}_{run.name}.yaml"] = (run / "config.yaml").read_text()
    if inputs.pipeline.get("shipped"):
        texts["configs/pipeline_shipped.json"] = json_text(inputs.pipeline["shipped"], indent=2) + "\n"

    missing_ids = {m["id"] for m in missing}
    context = {
        "title": f"or_synth report: {inputs.name}",
        "csp": CONTENT_SECURITY_POLICY,
        "inputs": {
            "run": str(inputs.run),
            "kind": inputs.kind,
            "evaluations": [str(p) for p in inputs.evaluations],
        },
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "sections": [{"id": s, "title": t, "absent": s in missing_ids} for s, t in SECTIONS],
        "missing": missing,
        "notes": notes,
        "summary": summary,
        "grid": grid,
        "consistency": consistency,
        "downstream": downstream,
        "training": training,
        "edits": edits,
        "sequence": sequence,
        "memorisation": memorisation,
        "cards": document["cards"],
        "environment": env,
        "hashes": digests,
        "files": sorted([*texts, *(f"figures/{n}" for n in assets.figures), *assets.files]),
        "n_warnings": sum(len(r["warnings"]) for r in summary)
        + sum(len(r["warnings"]) for r in (consistency or {}).get("rows", [])),
    }
    page = template_environment().get_template("report.html.j2").render(**context)

    def write(folder: Path) -> None:
        # Paths in the repository as relative ones: a committed bundle shows no machine's absolute paths.
        texts_out = {name: repo_relative(text) for name, text in {**texts, "index.html": page}.items()}
        save_files(folder, assets, texts_out)

    return write_atomically(final, write)
