"""Two runs side by side: ``python -m or_synth.report compare A B``.

Each metric present in both runs is compared only when its two cards agree on
:data:`or_synth.evaluation.cards.COMPARABLE_FIELDS` (N, split, cameras, size, weights, preprocessing, the metric's
definition); otherwise the row is a refusal that names what differs ("N differs: 120 vs 240"), never a
difference. Comparable numbers get B - A and a mark saying which run is better where "better" has a direction
(lower FD, higher consistency); reference numbers (ceiling, floor) are shown without a verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig

from or_synth.data.io import json_text, repo_relative
from or_synth.evaluation.cards import incomparable_fields
from or_synth.reports.bundle import (
    CONTENT_SECURITY_POLICY,
    ReportError,
    check_target,
    read_evaluation,
    report_name,
    template_environment,
    check_replaceable,
    write_atomically,
)
from or_synth.reports.sections import HIGHER, LOWER, condensed_warnings, fmt

# How a refusal names each comparability field, in the order a reader checks them.
FIELD_NAMES = {
    "n_generated": "N",
    "n_real": "N real",
    "split": "split",
    "cameras": "cameras",
    "size": "image size",
    "weights_hash": "weights",
    "preprocessing": "preprocessing",
    "metric": "metric definition",
}
# Card fields that may differ (they are what is being compared) but a reader should see.
CONTEXT_FIELDS = (
    "samples",
    "samples_sha256",
    "pipeline_hash",
    "sampling",
    "classifier_hash",
    "dataset",
    "evaluation_seed",
)
ORDER = (
    "fid",
    "kid",
    "classifier_fd",
    "classifier_kid",
    "classifier_prdc",
    "graph_consistency",
    "pair_consistency",
    "action_recognition",
    "memorisation",
    "relation_sensitivity",
)
TIE = 1e-9


def refusal_reason(a: Mapping, b: Mapping) -> str:
    """Why two cards' values must not be compared, e.g. "N differs: 120 vs 240"; empty when they may be."""
    reasons = []
    differing = incomparable_fields(a, b)
    for key in sorted(
        differing, key=lambda k: list(FIELD_NAMES).index(k) if k in FIELD_NAMES else len(FIELD_NAMES)
    ):
        name = FIELD_NAMES.get(key, key)
        left, right = a.get(key), b.get(key)
        if isinstance(left, str) and isinstance(right, str) and max(len(left), len(right)) > 40:
            left, right = f"{left[:37]}...", f"{right[:37]}..."
        verb = "differ" if name.endswith("s") and not name.startswith("N") else "differs"
        reasons.append(
            f"{name} {verb}: {fmt(left) if left is not None else 'absent'} vs "
            f"{fmt(right) if right is not None else 'absent'}"
        )
    return "; ".join(reasons)


def numbers(name: str, card: Mapping, details: Mapping) -> list[tuple[str, float | None, str | None]]:
    """The headline numbers of one metric as (label, value, which direction is better)."""
    value = card.get("value")
    if name in ("fid", "classifier_fd"):
        return [("Fréchet distance", value, LOWER)]
    if name == "classifier_prdc":
        return [(key, value.get(key), HIGHER) for key in ("precision", "recall", "density", "coverage")]
    if name in ("kid", "classifier_kid"):
        return [("KID mean", value.get("mean"), LOWER), ("KID std", value.get("std"), None)]
    if name in ("graph_consistency", "pair_consistency"):
        units = ("scan", "image") if name == "graph_consistency" else ("scan", "view")
        return [
            (f"{who} macro-F1 per {unit}", value.get(unit, {}).get(who), HIGHER if who == "model" else None)
            for unit in units
            for who in ("model", "ceiling", "floor")
        ]
    if name == "memorisation":
        return [
            ("flagged fraction", value.get("fraction_flagged"), LOWER),
            ("flagged images", value.get("n_flagged"), LOWER),
            ("feature similarity median", value.get("similarity_median"), None),
            ("SSIM median", value.get("ssim_median"), None),
        ]
    if name == "relation_sensitivity":
        return [
            (f"{kind}: {key.replace('_', ' ')}", value.get(kind, {}).get(key), HIGHER)
            for kind in ("after", "full")
            for key in ("direction_accuracy", "flip_rate", "unchanged_stability")
        ]
    if name == "action_recognition" and (details.get("action_recognition") or {}).get("rows"):
        found = []
        for row in details["action_recognition"]["rows"]:
            label = f"fraction {row['fraction']:g}, {row['arm'].replace('_', ' ')}" + (
                f" r={row['ratio']:g}" if row["ratio"] else ""
            )
            found.append(
                (f"{label}: macro-F1", row.get("mean"), HIGHER if row["arm"] == "synthetic" else None)
            )
            if row["arm"] == "synthetic" and row.get("gain_over_real_only"):
                found.append(
                    (f"{label}: gain over real only", row["gain_over_real_only"].get("mean"), HIGHER)
                )
        return found
    return [(label, v, None) for label, v in flatten(value)]


def flatten(value, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(value, Mapping):
        return [item for k, v in value.items() for item in flatten(v, f"{prefix}{k} ".lstrip())]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [(prefix.strip() or "value", value)]
    return []


def verdict(a, b, better: str | None) -> dict:
    """B - A, and which run is better (``up``: B, ``down``: A) where the metric says which way is better."""
    if a is None or b is None:
        return {"delta": None, "mark": "", "css": "same", "text": "missing on one side"}
    delta = b - a
    if abs(delta) <= TIE:
        return {"delta": delta, "mark": "=", "css": "same", "text": "same"}
    if better is None:
        return {
            "delta": delta,
            "mark": "▲" if delta > 0 else "▼",
            "css": "same",
            "text": "reference, no verdict",
        }
    b_wins = (delta < 0) == (better == LOWER)
    return {
        "delta": delta,
        "mark": "▲" if delta > 0 else "▼",
        "css": "up" if b_wins else "down",
        "text": "B better" if b_wins else "A better",
    }


def side_warnings(a: list[str], b: list[str]) -> list[str]:
    """Each warning once, prefixed with the run(s) it concerns."""
    both = [f"A and B: {w}" for w in a if w in b]
    return both + [f"A: {w}" for w in a if w not in b] + [f"B: {w}" for w in b if w not in a]


def compare_documents(a: Mapping, b: Mapping) -> list[dict]:
    """One entry per metric: ``status`` compared / refused / only_a / only_b, with rows or the reason."""
    cards_a, cards_b = a.get("cards", {}), b.get("cards", {})
    names = [n for n in ORDER if n in cards_a or n in cards_b]
    names += sorted((set(cards_a) | set(cards_b)) - set(names))
    result = []
    for name in names:
        card_a, card_b = cards_a.get(name), cards_b.get(name)
        entry = {"name": name, "metric": (card_a or card_b)["metric"], "rows": [], "reason": ""}
        entry["warnings"] = side_warnings(condensed_warnings(card_a), condensed_warnings(card_b))
        if card_a is None or card_b is None:
            entry["status"] = "only_b" if card_a is None else "only_a"
            result.append(entry)
            continue
        reason = refusal_reason(card_a, card_b)
        values_a = numbers(name, card_a, a.get("details", {}))
        values_b = dict((label, v) for label, v, _ in numbers(name, card_b, b.get("details", {})))
        rows = [
            {"label": label, "a": va, "b": values_b.get(label), "better": better}
            for label, va, better in values_a
        ]
        if reason:
            entry.update(status="refused", reason=reason, rows=rows)
        else:
            entry.update(
                status="compared", rows=[{**r, **verdict(r["a"], r["b"], r["better"])} for r in rows]
            )
        result.append(entry)
    return result


def context_fields(a: Mapping, b: Mapping) -> list[dict]:
    first_a = next(iter(a.get("cards", {}).values()), {})
    first_b = next(iter(b.get("cards", {}).values()), {})
    return [
        {
            "field": k,
            "a": json.dumps(first_a.get(k)),
            "b": json.dumps(first_b.get(k)),
            "differs": first_a.get(k) != first_b.get(k),
        }
        for k in CONTEXT_FIELDS
        if k in first_a or k in first_b
    ]


def build_comparison(cfg: DictConfig) -> Path:
    """Write ``<cfg.out>/compare_<a>_<b>/index.html`` (and ``comparison.json``) for ``cfg.compare = [A, B]``."""
    folders = [Path(str(p)) for p in cfg.compare]
    documents = []
    for label, folder in zip("AB", folders, strict=True):
        document = read_evaluation(folder) if folder.is_dir() else None
        if document is None:
            raise ReportError(
                f"compare {label}={folder}: no metrics.json with cards there; pass an evaluation output "
                "(python -m or_synth.evaluate) or a report folder (python -m or_synth.report)"
            )
        documents.append(document)
    names = [report_name(f) for f in folders]
    final = Path(str(cfg.out)) / (str(cfg.name) if cfg.name else f"compare_{names[0]}_{names[1]}")
    check_target(final, folders)
    check_replaceable(final)
    metrics = compare_documents(*documents)
    context = {
        "title": f"or_synth comparison: {names[0]} vs {names[1]}",
        "csp": CONTENT_SECURITY_POLICY,
        "a": {"name": names[0], "path": str(folders[0].resolve())},
        "b": {"name": names[1], "path": str(folders[1].resolve())},
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "metrics": metrics,
        "context": context_fields(*documents),
        "refused": [m for m in metrics if m["status"] == "refused"],
    }
    page = template_environment().get_template("compare.html.j2").render(**context)
    record = {"a": context["a"], "b": context["b"], "metrics": metrics}

    def write(folder: Path) -> None:
        (folder / "index.html").write_text(repo_relative(page), encoding="utf-8")
        text = json_text(record, indent=2, default=str) + "\n"
        (folder / "comparison.json").write_text(repo_relative(text), encoding="utf-8")

    return write_atomically(final, write)
