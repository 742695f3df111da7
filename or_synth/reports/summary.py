"""The summary table a supervisor reads first: one row per headline number (FID / KID and the second FD with N,
graph consistency with its ceiling, floor and chance, downstream gains with CIs and the oracle and matched-compute
controls, memorisation against its real baseline, relation sensitivity), each with the warnings that qualify it.
Metrics that were not run get a row with the command that runs them, not a silent gap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from or_synth.reports.sections import HIGHER, LOWER, condensed_warnings, fmt, fmt_ci, signed


def row(
    metric: str,
    label: str,
    value: str,
    *,
    reference: str = "",
    n: str = "",
    card: str | None = None,
    warnings: Sequence[str] = (),
    better: str | None = None,
    command: str = "",
) -> dict:
    return {
        "metric": metric,
        "label": label,
        "value": value,
        "reference": reference,
        "n": n,
        "card": card,
        "warnings": list(warnings),
        "better": better,
        "command": command,
        "absent": not value,
    }


def absent_row(metric: str, label: str, command: str) -> dict:
    """The row of a metric this evaluation did not run, with the command that would run it."""
    return row(metric, label, "", reference="not in this evaluation", command=command)


def n_text(card: Mapping) -> str:
    parts = []
    if card.get("n_generated") is not None:
        parts.append(f"N generated {fmt(card['n_generated'])}")
    if card.get("n_real") is not None:
        parts.append(f"N real {fmt(card['n_real'])} ({card.get('split', '?')})")
    return "; ".join(parts)


def real_vs_real(card: Mapping) -> str:
    """The FD / KID card's real-vs-real row at the generated N, as the reference beside the number."""
    matched = card.get("matched_real_reference") or {}
    if not matched.get("measured"):
        return ""
    return f" · real vs real at N = {matched['n']}: {fmt(matched['real_vs_real']['frechet_distance'], 2)}"


def fidelity_rows(cards: Mapping, commands: Mapping) -> list[dict]:
    rows = []
    for fd, kid, label, kid_label in (
        ("fid", "kid", "FID (Inception)", "KID (Inception)"),
        (
            "classifier_fd",
            "classifier_kid",
            "second FD (relation-classifier features; not FID)",
            "second KID (relation-classifier features)",
        ),
    ):
        if fd in cards:
            card = cards[fd]
            rows.append(
                row(
                    fd,
                    label,
                    fmt(card["value"], 2),
                    reference="0 = same distribution" + real_vs_real(card),
                    n=n_text(card),
                    card=fd,
                    warnings=card.get("warnings") or [],
                    better=LOWER,
                )
            )
        if kid in cards:
            card, value = cards[kid], cards[kid]["value"]
            rows.append(
                row(
                    kid,
                    kid_label,
                    f"{fmt(value.get('mean'), 4)} ± {fmt(value.get('std'), 4)}",
                    reference=f"subsets of {value.get('subset_size')}; 0 = same distribution",
                    n=n_text(card),
                    card=kid,
                    warnings=card.get("warnings") or [],
                    better=LOWER,
                )
            )
    if "classifier_prdc" in cards:
        card, value = cards["classifier_prdc"], cards["classifier_prdc"]["value"]
        matched = card.get("matched_real_reference") or {}
        real = matched.get("real_vs_real") if matched.get("measured") else None
        rows.append(
            row(
                "classifier_prdc",
                "precision / recall / density / coverage (relation-classifier features)",
                " / ".join(fmt(value.get(k)) for k in ("precision", "recall", "density", "coverage")),
                reference=(
                    "real images at the same N: " + " / ".join(fmt(real.get(k)) for k in ("precision", "recall", "density", "coverage"))
                    if real
                    else "realism (precision, density) and diversity (recall, coverage); 1 = as real"
                ),
                n=n_text(card),
                card="classifier_prdc",
                warnings=card.get("warnings") or [],
                better=HIGHER,
            )
        )
    if "fid" not in cards:
        rows.insert(
            0,
            row(
                "fid",
                "FID (Inception)",
                "",
                reference="not computed: needs the FID Inception weights",
                command=commands["fid"],
                warnings=["missing weights: FID / KID were not computed"],
            ),
        )
    return rows


def consistency_reference(report: Mapping, unit: str, ceiling_is: str) -> str:
    """What a consistency score stands against: ceiling, floor, labels only (pair level), chance, and the
    model's share of the ceiling."""
    key = f"predicate_macro_f1_per_{unit}"
    chance = (report.get("chance") or {}).get(f"per_{unit}", {})
    parts = [
        f"ceiling {fmt((report.get('ceiling') or {}).get(key))} ({ceiling_is})",
        f"floor {fmt(report['floor'].get(key))} (shuffled graphs)",
    ]
    if "labels_only" in report:
        parts.append(f"labels only {fmt(report['labels_only'].get(key))} (blank images)")
    parts.append(f"chance {fmt(chance.get('random'))} random / {fmt(chance.get('always'))} always")
    share = report.get(f"model_over_ceiling_per_{unit}")
    if share is not None:
        parts.append(f"model / ceiling {share:.0%}")
    return " · ".join(parts)


def consistency_rows(cards: Mapping, details: Mapping, commands: Mapping) -> list[dict]:
    card, report = cards.get("graph_consistency"), details.get("graph_consistency")
    if card is None or report is None:
        return [absent_row("graph_consistency", "graph consistency (predicate macro-F1)", commands["evaluate"])]
    other = condensed_warnings(card)
    rows = []
    for unit in ("scan", "image"):
        key = f"predicate_macro_f1_per_{unit}"
        reference = consistency_reference(report, unit, "real images of the same graphs")
        rows.append(
            row(
                "graph_consistency",
                f"graph consistency (predicate macro-F1 per {unit})",
                fmt(report["model"].get(key)),
                reference=reference,
                n=f"{fmt(report.get('n_images'))} images of {fmt(report.get('n_scans'))} scans; {n_text(card)}",
                card="graph_consistency",
                warnings=other if unit == "scan" else [],
                better=HIGHER,
            )
        )
    return rows


def pair_consistency_rows(cards: Mapping, details: Mapping, commands: Mapping) -> list[dict]:
    """Pair-level consistency per scan where boxes existed; a row saying why where they did not."""
    card, report = cards.get("pair_consistency"), details.get("pair_consistency")
    label = "pair consistency (pair-level predicate macro-F1 per scan)"
    if card is None or report is None:
        why = ((details.get("graph_consistency") or {}).get("pairs") or {}).get("why")
        if why is None:
            return []
        return [row("pair_consistency", label, "", reference=f"not measured: {why}")]
    key = "predicate_macro_f1_per_scan"
    reference = consistency_reference(report, "scan", "real images, their boxes")
    return [
        row(
            "pair_consistency",
            label,
            fmt(report["model"].get(key)),
            reference=reference,
            n=f"{fmt(report.get('n_pairs'))} pairs in {fmt(report.get('n_images_with_pairs'))} images; "
            f"boxes: {report.get('box_source')}",
            card="pair_consistency",
            warnings=condensed_warnings(card),
            better=HIGHER,
        )
    ]


def downstream_rows(cards: Mapping, details: Mapping, commands: Mapping) -> list[dict]:
    card, study = cards.get("action_recognition"), details.get("action_recognition")
    if card is None and study is None:
        return [absent_row("action_recognition", "downstream gain (main-action macro-F1)", commands["action_recognition"])]
    warnings = (card or {}).get("warnings") or []
    if not study or not study.get("rows"):
        return [
            row(
                "action_recognition",
                "downstream gain (main-action macro-F1)",
                "",
                reference="the evaluation has a card but no study results",
                warnings=warnings,
            )
        ]
    rows = []
    for fraction in sorted({r["fraction"] for r in study["rows"]}, reverse=True):
        mine = [r for r in study["rows"] if r["fraction"] == fraction]
        synthetic = [r for r in mine if r["arm"] == "synthetic"]
        baseline = next((r for r in mine if r["arm"] == "real_only"), None)
        if not synthetic or baseline is None:
            continue
        best = max(synthetic, key=lambda r: r["mean"])
        gain = best.get("gain_over_real_only") or {}
        oracle = next((r for r in mine if r["arm"] == "oracle" and r["ratio"] == best["ratio"]), None)
        matched = next((r for r in mine if r["arm"] == "matched_compute"), None)
        reference = [f"real only {fmt(baseline['mean'])} {fmt_ci(baseline.get('ci95'))}"]
        if oracle:
            og = oracle.get("gain_over_real_only") or {}
            reference.append(
                f"oracle (real in place of synthetic) {signed(og.get('mean'))} {fmt_ci(og.get('ci95'))}"
            )
        else:
            reference.append("no oracle control")
        if matched:
            mg = matched.get("gain_over_real_only") or {}
            reference.append(f"matched compute {signed(mg.get('mean'))} {fmt_ci(mg.get('ci95'))}")
        rows.append(
            row(
                "action_recognition",
                f"downstream gain, real fraction {fraction:g} (best ratio {best['ratio']:g})",
                f"{signed(gain.get('mean'))} {fmt_ci(gain.get('ci95'))}",
                reference=" · ".join(reference),
                n=f"{len(best.get('seeds') or [])} seeds; {fmt(best.get('real_images'))} real + "
                f"{fmt(best.get('added_images'))} synthetic images",
                card="action_recognition",
                warnings=warnings if not rows else [],
                better=HIGHER,
            )
        )
    return rows


def memorisation_rows(cards: Mapping, details: Mapping, commands: Mapping) -> list[dict]:
    card, report = cards.get("memorisation"), details.get("memorisation")
    if card is None:
        return [absent_row("memorisation", "memorisation (near-duplicates of training images)", commands["evaluate"])]
    summary = (report or {}).get("summary") or card["value"]
    baseline = (report or {}).get("heldout_baseline")
    reference = "near-duplicate: feature cosine and pixel SSIM both over their thresholds"
    if baseline:
        reference = (
            f"real held-out images flagged the same way: {fmt(baseline.get('n_flagged'))} of "
            f"{fmt(baseline.get('n_heldout'))} (consecutive frames resemble each other)"
        )
    value = f"{fmt(summary.get('n_flagged'))} flagged ({fmt(summary.get('fraction_flagged'))})"
    return [
        row(
            "memorisation",
            "memorisation (near-duplicates of training images)",
            value,
            reference=reference,
            n=n_text(card),
            card="memorisation",
            warnings=card.get("warnings") or [],
            better=LOWER,
        )
    ]


def sensitivity_rows(cards: Mapping, details: Mapping, commands: Mapping) -> list[dict]:
    card = cards.get("relation_sensitivity")
    if card is None:
        return [absent_row("relation_sensitivity", "relation sensitivity (graph edits)", commands["edits"])]
    value = card["value"]
    after, full = value.get("after") or {}, value.get("full") or {}
    null, beyond = value.get("null") or {}, (value.get("after_minus_null") or {}).get("direction_accuracy")
    control = ""
    if null:
        shown = "" if beyond and beyond.get("excludes_0") else ", not shown"
        control = (
            f" · null edit (same region, unchanged graph) {fmt(null.get('direction_accuracy'))}, difference "
            f"{signed(beyond.get('value')) if beyond else fmt(None)} {fmt_ci(beyond.get('ci95') if beyond else None)}"
            f"{shown}"
        )
    return [
        row(
            "relation_sensitivity",
            "relation sensitivity (changed labels moving the right way, inpainted)",
            fmt(after.get("direction_accuracy")),
            reference=f"chance 0.5 · full regeneration {fmt(full.get('direction_accuracy'))} · flip rate "
            f"{fmt(after.get('flip_rate'))} · unchanged labels stable {fmt(after.get('unchanged_stability'))}"
            f"{control}",
            n=f"{fmt(card.get('n_edits'))} edits, {fmt(after.get('changed_labels'))} changed labels",
            card="relation_sensitivity",
            warnings=card.get("warnings") or [],
            better=HIGHER,
        )
    ]


def summary_rows(document: Mapping, commands: Mapping) -> list[dict]:
    """The supervisor's table, in reading order: fidelity, graph consistency, downstream gains, memorisation,
    relation sensitivity; metrics that were not run appear as rows with the command that runs them."""
    cards, details = document.get("cards", {}), document.get("details", {})
    return [
        *fidelity_rows(cards, commands),
        *consistency_rows(cards, details, commands),
        *pair_consistency_rows(cards, details, commands),
        *downstream_rows(cards, details, commands),
        *memorisation_rows(cards, details, commands),
        *sensitivity_rows(cards, details, commands),
    ]
