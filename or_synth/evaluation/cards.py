"""Metric cards: every number the suite writes carries what it takes to judge and reproduce it.

A card names the metric and its value, the implementation and library versions, the weights it was computed
with (hash), the preprocessing, N real and N generated, the dataset, split and cameras, the seeds, the
checkpoint hashes (generator pipeline, relation classifier) and every warning that qualifies it. Two numbers
are comparable only when their cards agree on :data:`COMPARABLE_FIELDS`.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path

import torch

from or_synth.data.io import atomic_path, atomic_write_json

# What must be equal for two values of one metric to be compared (the report's `compare` refuses otherwise).
COMPARABLE_FIELDS = (
    "metric",
    "n_real",
    "n_generated",
    "split",
    "cameras",
    "size",
    "weights_hash",
    "preprocessing",
)
PACKAGES = (
    "or_synth",
    "torch",
    "torchvision",
    "torchmetrics",
    "torch-fidelity",
    "numpy",
    "scikit-image",
    "scipy",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(path: Path | None = None) -> str | None:
    """The checkout's commit (with ``-dirty`` when it has changes), or None outside a git checkout."""
    where = Path(path or Path(__file__).resolve().parents[2])
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit or None


def environment() -> dict:
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "git_commit": git_commit(),
    }


def make_card(metric: str, value, *, implementation: str, **fields) -> dict:
    """One card: ``metric``, ``value``, ``implementation`` and any further fields (N, weights hash, ...)."""
    return {"metric": metric, "value": value, "implementation": implementation, **fields}


def card_markdown(card: dict) -> str:
    lines = [f"# {card['metric']}", "", f"**Value:** `{json.dumps(card['value'])}`", ""]
    for warning in card.get("warnings") or []:
        lines.append(f"> **Warning:** {warning}")
    if card.get("warnings"):
        lines.append("")
    lines += ["| field | value |", "|---|---|"]
    for key, value in card.items():
        if key in ("metric", "value", "warnings"):
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        lines.append(f"| {key} | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_cards(out: Path, cards: dict[str, dict]) -> list[Path]:
    """``out/cards/<name>.json`` and ``.md`` per card, atomically."""
    folder = Path(out) / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, card in cards.items():
        atomic_write_json(folder / f"{name}.json", card, indent=2)
        with atomic_path(folder / f"{name}.md") as tmp:
            tmp.write_text(card_markdown(card))
        written.append(folder / f"{name}.md")
    return written


def incomparable_fields(a: dict, b: dict) -> list[str]:
    """The :data:`COMPARABLE_FIELDS` on which two cards differ (empty: the values may be compared)."""
    return [k for k in COMPARABLE_FIELDS if a.get(k) != b.get(k)]
