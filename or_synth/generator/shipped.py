"""Trained pipelines shipped with the repository, so sampling, evaluation and reports run on a fresh clone with
no training: ``python -m or_synth.sample pipeline=cpu_quality ...``.

Each lives in ``pretrained/<name>/`` at the repository root: a normal pipeline folder (``model_index.json``,
``unet/``, ``vae/``, ``scheduler/``, ``graph_encoder/``) plus ``shipped.json``, which records the SHA-256 of every
file, the command and training wall time that made it, and its measured scores. Loading verifies every hash
first: a missing or altered file is a clear error naming the file, never a silently different model.

Shipping a trained run (from a checkout, after the recipe)::

    python -m or_synth.generator.shipped runs/ldm/cpu_quality/pipeline --name cpu_quality \\
        --command "python -m or_synth.train experiment=cpu_quality" --scores benchmarks/results/X.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from or_synth.data.errors import UserError
from or_synth.data.io import file_sha256

SHIPPED_ROOT = Path(__file__).resolve().parents[2] / "pretrained"
MANIFEST = "shipped.json"


class ShippedPipelineError(UserError, RuntimeError):
    """A shipped pipeline folder that does not match its ``shipped.json`` (missing or altered file): a user error
    wherever it is raised (one ``error:`` line naming the file, exit 2), since restoring the file is the fix."""


def shipped_names() -> list[str]:
    return sorted(p.parent.name for p in SHIPPED_ROOT.glob(f"*/{MANIFEST}"))


def resolve_pipeline(spec: str | Path) -> Path:
    """The pipeline folder for ``pipeline=...``: an existing folder (verified when it carries ``shipped.json``),
    or the name of a shipped pipeline (``cpu_quality`` -> ``pretrained/cpu_quality``, verified)."""
    path = Path(spec)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            verify_shipped(path)
        return path
    shipped = SHIPPED_ROOT / str(spec)
    if "/" not in str(spec) and (shipped / MANIFEST).is_file():
        verify_shipped(shipped)
        return shipped
    names = ", ".join(shipped_names()) or f"none in {SHIPPED_ROOT}"
    raise FileNotFoundError(
        f"pipeline={spec}: no such folder, and not a shipped pipeline name (shipped: {names})"
    )


def verify_shipped(folder: Path) -> dict:
    """Check every file listed in ``folder/shipped.json`` exists with its recorded SHA-256; returns the manifest."""
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ValueError("it does not list files as {path: sha256}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ShippedPipelineError(
            f"{manifest_path}: unreadable shipped-pipeline manifest ({error}); restore it with "
            f"`git checkout -- {manifest_path}` or re-ship the pipeline"
        ) from None
    for relative, expected in files.items():
        file = folder / relative
        if not file.is_file():
            raise ShippedPipelineError(
                f"shipped pipeline {folder}: {file} is missing (listed in {MANIFEST}); restore it with "
                f"`git checkout -- {file}` or re-ship the pipeline"
            )
        actual = file_sha256(file)
        if actual != expected:
            raise ShippedPipelineError(
                f"shipped pipeline {folder}: {file} does not match {MANIFEST} (sha256 {actual[:16]}..., "
                f"expected {expected[:16]}...); restore it with `git checkout -- {file}` or re-ship the pipeline"
            )
    return manifest


def ship(pipeline: Path, name: str, *, command: str, notes: dict, root: Path = SHIPPED_ROOT) -> Path:
    """Copy a trained pipeline folder to ``root/name`` with its ``shipped.json`` (hashes + provenance)."""
    from or_synth.generator.pipeline import check_pipeline_folder, pipeline_hash

    check_pipeline_folder(pipeline)
    target, staging = root / name, root / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(pipeline, staging)
    files = {str(p.relative_to(staging)): file_sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = {
        "name": name,
        "pipeline_hash": pipeline_hash(staging),
        "source": str(pipeline),
        "command": command,
        **notes,
        "files": files,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.replace(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Ship a trained pipeline folder into pretrained/<name>.")
    parser.add_argument("pipeline", type=Path, help="a trained pipeline folder (<ldm run>/pipeline)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--scores", type=Path, default=None, help="its benchmarks.generator_quality result")
    args = parser.parse_args(argv)
    run_dir = args.pipeline.parent
    metrics = (
        json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    )
    notes = {
        "train_steps": metrics.get("step"),
        "train_wall_seconds": round(metrics["train_seconds"]) if "train_seconds" in metrics else None,
    }
    if args.scores:
        score = json.loads(args.scores.read_text())
        notes["scores"] = {
            "scorer": "SECONDARY: the TinyCNN of benchmarks/generator_quality.py (lever choices), not the scorer of "
            "record; headline numbers come from python -m or_synth.evaluate and benchmarks/evidence.py",
            "result": str(args.scores),
            **score["summary"],
            "setup": score["setup"],
        }
    target = ship(args.pipeline, args.name, command=args.command, notes=notes)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 2**20
    print(f"shipped {args.pipeline} -> {target} ({size:.1f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
