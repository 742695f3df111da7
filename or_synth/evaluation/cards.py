"""Metric cards: every number the suite writes carries what it takes to judge and reproduce it.

A card names the metric and its value, the implementation and library versions, the weights it was computed
with (hash), the preprocessing, N real and N generated, the dataset, split and cameras, the seeds, the
checkpoint hashes (generator pipeline, relation classifier) and every warning that qualifies it. Two numbers
are comparable only when their cards agree on :data:`COMPARABLE_FIELDS`.

:func:`write_document` writes one evaluation's ``metrics.json`` and its cards (``cards/<name>.json`` and ``.md``).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Sequence
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
        "git_commit": (commit := git_commit()),
        # Said in words, not only by the "-dirty" suffix: a number from a dirty tree is not reproducible from the commit.
        "git_tree": None
        if commit is None
        else ("dirty (uncommitted changes)" if commit.endswith("-dirty") else "clean"),
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


def consistency_card(title: str, report: dict, units: Sequence[str], **fields) -> dict:
    """A consistency card: predicate macro-F1 per unit for the model and every reference the report has."""
    value = {
        unit: {
            who: report[who][f"predicate_macro_f1_per_{unit}"]
            for who in ("model", "ceiling", "floor", "labels_only")
            if who in report
        }
        for unit in units
    }
    return make_card(title, value, chance=report["chance"], **fields)


def classifier_quality(folder: str | Path) -> dict:
    """The relation classifier's own scores on real held-out images (its ``quality.json``; empty without one)."""
    path = Path(folder) / "quality.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def weak_predicate_warnings(report: dict, what: str = "images", floor_f1: float = 0.5) -> list[str]:
    """A scorer that cannot see a predicate on real images cannot judge a generator on it: name those (by its
    per-scan F1 on the real ``what`` of the same graphs, the report's ceiling)."""
    warnings = []
    for name, row in report["predicates"].items():
        ceiling = row.get("ceiling", {}).get("f1_per_scan")
        if ceiling is not None and ceiling < floor_f1 and row["ceiling"].get("support_per_scan", 0) > 0:
            warnings.append(
                f"the relation classifier is weak on {name} (F1 {ceiling:.2f} on real {what} of these graphs): "
                f"its {name} score says little about the generator"
            )
    return warnings


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


def write_document(out: Path, cards: dict[str, dict], details: dict, timings: dict, config: dict) -> dict:
    """``out/metrics.json`` (values, cards, details, every warning once, timings, the config) and the cards.

    Returns:
        What ``metrics.json`` holds.
    """
    document = {
        "metrics": {name: card["value"] for name, card in cards.items()},
        "cards": cards,
        "details": details,
        "warnings": sorted({w for card in cards.values() for w in card.get("warnings") or []}),
        "timings_seconds": timings,
        "config": config,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_cards(out, cards)
    atomic_write_json(out / "metrics.json", document, indent=2)
    return document


def incomparable_fields(a: dict, b: dict) -> list[str]:
    """The :data:`COMPARABLE_FIELDS` on which two cards differ (empty: the values may be compared)."""
    return [k for k in COMPARABLE_FIELDS if a.get(k) != b.get(k)]
