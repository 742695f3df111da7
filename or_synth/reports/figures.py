"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display): a
scene graph as a picture, the sample-grid rows, per-predicate consistency bars beside the ceiling and floor,
training curves, the downstream study and graph-edit pairs. Each function returns PNG bytes, which the bundle
writes to ``figures/`` and embeds in the page, so a figure on disk and in the page are the same file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import NOT_A_PERSON, UNKNOWN_ROLE

DPI = 100
GRAPH_WIDTH = 4.9  # inches: room for the node labels left and right of the circle
# One colour per role (people) so a reader finds the head surgeon in every graph at a glance; objects are grey.
ROLE_COLOURS = {
    "Patient": "#d62728",
    "head-surgeon": "#1f77b4",
    "assistant-surgeon": "#2ca02c",
    "circulating-nurse": "#9467bd",
    "anaesthetist": "#ff7f0e",
    UNKNOWN_ROLE: "#8c564b",
}
OBJECT_COLOUR = "#c7c7c7"
SERIES_COLOURS = {"model": "#1f77b4", "ceiling": "#2ca02c", "floor": "#d62728"}
CLUTTER = (
    "CloseTo"  # drawn dashed and unlabelled: nearly every pair is CloseTo, its labels would hide the rest
)


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas, fixed DPI, no timestamp metadata so reruns give the same bytes)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def node_label(record: SceneGraphRecord, node: int) -> str:
    role = record.roles[node]
    if role not in (UNKNOWN_ROLE, NOT_A_PERSON):
        return role
    return record.object_names[node].replace("_", " ")


def node_colour(record: SceneGraphRecord, node: int) -> str:
    return ROLE_COLOURS.get(record.roles[node], OBJECT_COLOUR)


def draw_scene_graph(ax, record: SceneGraphRecord) -> None:
    """Nodes on a circle (coloured by role, objects grey), directed edges curved so that A->B and B->A stay
    apart, each labelled by its predicate except CloseTo (dashed). The unused virtual instrument is left out."""
    virtual = record.virtual_nodes()
    nodes = [i for i in range(record.num_nodes) if not virtual[i]]
    angle = {n: math.pi / 2 - 2 * math.pi * k / max(len(nodes), 1) for k, n in enumerate(nodes)}
    position = {n: (math.cos(a), math.sin(a)) for n, a in angle.items()}
    ax.set_xlim(-2.45, 2.45)
    ax.set_ylim(-1.5, 1.45)
    ax.set_aspect("equal")
    ax.axis("off")
    curvature = 0.2
    for subject, obj, predicate in record.triples:
        if subject not in position or obj not in position:
            continue
        (x1, y1), (x2, y2) = position[subject], position[obj]
        clutter = predicate == CLUTTER
        ax.add_patch(
            FancyArrowPatch(
                (x1, y1),
                (x2, y2),
                connectionstyle=f"arc3,rad={curvature}",
                arrowstyle="-|>",
                mutation_scale=9,
                shrinkA=13,
                shrinkB=13,
                linewidth=0.6 if clutter else 1.3,
                linestyle="--" if clutter else "-",
                color="#c8c8c8" if clutter else "#333333",
                zorder=1,
            )
        )
        if not clutter:
            # Midpoint of arc3's quadratic Bezier: the chord midpoint moved by rad/2 along (dy, -dx).
            mx = (x1 + x2) / 2 + curvature / 2 * (y2 - y1)
            my = (y1 + y2) / 2 - curvature / 2 * (x2 - x1)
            ax.text(
                mx,
                my,
                predicate,
                fontsize=7,
                ha="center",
                va="center",
                zorder=3,
                bbox={
                    "boxstyle": "round,pad=0.15",
                    "facecolor": "#fff8dc",
                    "edgecolor": "none",
                    "alpha": 0.9,
                },
            )
    for n, (x, y) in position.items():
        ax.scatter(
            [x], [y], s=260, color=node_colour(record, n), edgecolors="#333333", linewidths=0.6, zorder=2
        )
        # Labels outside the circle, aligned away from it, so they never sit on a node or an edge's middle.
        side = "left" if x > 0.25 else "right" if x < -0.25 else "center"
        ax.text(
            1.14 * x,
            1.14 * y + (0.1 if side == "center" else 0) * np.sign(y),
            node_label(record, n),
            fontsize=7.5,
            ha=side,
            va="center",
            zorder=4,
            color="#111111",
        )
    ax.text(
        -2.4, -1.45, f"take {record.take} scan {record.scan}; dashed: {CLUTTER}", fontsize=6.5, color="#666"
    )


def scene_graph_png(record: SceneGraphRecord) -> bytes:
    figure = Figure(figsize=(GRAPH_WIDTH, 3.0))
    draw_scene_graph(figure.add_axes((0, 0, 1, 1)), record)
    return png_bytes(figure)


def sample_row_png(
    record: SceneGraphRecord,
    generated: Sequence[tuple[str, np.ndarray]],
    real: Sequence[tuple[str, np.ndarray]],
) -> bytes:
    """One row of the sample grid: the scene graph picture, then each generated image, then each real image of
    the same views (``(caption, (H, W, 3) uint8)`` pairs), images drawn pixel for pixel without smoothing."""
    tiles = [*generated, *real]
    tile_width = 1.55
    figure = Figure(figsize=(GRAPH_WIDTH + tile_width * max(len(tiles), 1), 3.0))
    width = figure.get_figwidth()
    draw_scene_graph(figure.add_axes((0, 0, GRAPH_WIDTH / width, 1)), record)
    for k, (caption, image) in enumerate(tiles):
        left = (GRAPH_WIDTH + tile_width * k) / width
        ax = figure.add_axes((left + 0.05 / width, 0.2, (tile_width - 0.1) / width, 0.62))
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        is_real = k >= len(generated)
        ax.set_title(caption, fontsize=8, color="#2ca02c" if is_real else "#1f77b4")
        for spine in ax.spines.values():
            spine.set_color("#2ca02c" if is_real else "#1f77b4")
    return png_bytes(figure)


def predicate_bars_png(rows: Sequence[Mapping], unit: str = "scan") -> bytes:
    """Per-predicate F1 of the generated images (model) beside real images of the same graphs (ceiling) and
    shuffled graphs (floor); predicates the scorer is weak on are marked, since their bars say little.

    Args:
        rows: ``{"predicate", "model", "ceiling", "floor", "weak"}`` per predicate (F1 or None).
    """
    series = [s for s in ("model", "ceiling", "floor") if any(r.get(s) is not None for r in rows)]
    figure = Figure(figsize=(7.5, 0.36 * max(len(rows), 2) * max(len(series), 1) / 3 + 1.1))
    ax = figure.add_subplot(1, 1, 1)
    height = 0.8 / max(len(series), 1)
    y = np.arange(len(rows))
    for k, name in enumerate(series):
        values = [r.get(name) if r.get(name) is not None else 0.0 for r in rows]
        ax.barh(
            y + (k - (len(series) - 1) / 2) * height, values, height, label=name, color=SERIES_COLOURS[name]
        )
    ax.set_yticks(y)
    ax.set_yticklabels(
        [r["predicate"] + ("  (weak scorer)" if r.get("weak") else "") for r in rows], fontsize=8
    )
    for label, row in zip(ax.get_yticklabels(), rows, strict=True):
        if row.get("weak"):
            label.set_color("#b8860b")
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first predicate on top
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"F1 per {unit}", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(series), frameon=False)
    figure.tight_layout()
    return png_bytes(figure)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)  # a shorter window at the start, no lag gap
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def training_curves_png(label: str, log: Sequence[Mapping], max_panels: int = 4) -> bytes:
    """One panel per logged scalar of ``train_log.jsonl`` (loss first), raw in light colour and a moving average
    on top; a log scale when a positive series spans more than a decade."""
    keys = list(dict.fromkeys(k for row in log for k, v in row.items() if isinstance(v, int | float)))
    keys = [
        k for k in keys if k not in ("step", "time") and sum(k in row for row in log) > 1
    ]  # curves, not points
    keys = sorted(keys, key=lambda k: ("loss" not in k, k != "loss", k))[:max_panels]
    figure = Figure(figsize=(3.4 * max(len(keys), 1), 2.6))
    steps = np.array([row.get("step", i) for i, row in enumerate(log)], dtype=float)
    for k, key in enumerate(keys):
        ax = figure.add_subplot(1, len(keys), k + 1)
        values = np.array([row.get(key, np.nan) for row in log], dtype=float)  # NaN where a step lacks it
        finite = np.isfinite(values)
        ax.plot(steps[finite], values[finite], color="#9ecae1", linewidth=0.7)
        window = max(1, int(finite.sum()) // 50)
        ax.plot(steps[finite], moving_average(values[finite], window), color="#08519c", linewidth=1.3)
        positive = values[finite][values[finite] > 0]
        if len(positive) == finite.sum() and len(positive) and positive.max() / positive.min() > 10:
            ax.set_yscale("log")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    figure.suptitle(label, fontsize=9)
    figure.tight_layout()
    return png_bytes(figure)


def downstream_png(rows: Sequence[Mapping]) -> bytes:
    """Main-action macro-F1 (mean over seeds, 95% CI) against the synthetic:real ratio, one panel per real-data
    fraction: the synthetic arm, the oracle (real images in its place), real only (band) and matched compute."""
    fractions = sorted({r["fraction"] for r in rows}, reverse=True)
    figure = Figure(figsize=(3.6 * len(fractions), 2.9))
    for k, fraction in enumerate(fractions):
        ax = figure.add_subplot(1, len(fractions), k + 1)
        mine = [r for r in rows if r["fraction"] == fraction]
        ratios = [r["ratio"] for r in mine if r["arm"] != "matched_compute"] or [0.0]
        nudge = 0.02 * max(max(ratios), 1.0)  # the oracle beside the synthetic point, not hidden behind it
        for arm, colour, marker, shift in (
            ("synthetic", "#1f77b4", "o", 0.0),
            ("oracle", "#2ca02c", "s", nudge),
        ):
            points = sorted((r for r in mine if r["arm"] == arm), key=lambda r: r["ratio"])
            if points:
                x = [r["ratio"] + shift for r in points]
                mean = np.array([r["mean"] for r in points])
                ci = np.array([r.get("ci95") or [r["mean"], r["mean"]] for r in points])
                ax.errorbar(
                    x,
                    mean,
                    yerr=[mean - ci[:, 0], ci[:, 1] - mean],
                    color=colour,
                    marker=marker,
                    capsize=3,
                    label=arm,
                    linewidth=1.2,
                    markersize=4,
                )
        for row in mine:
            if row["arm"] == "real_only":
                low, high = row.get("ci95") or [row["mean"], row["mean"]]
                ax.axhspan(low, high, color="#999999", alpha=0.25)
                ax.axhline(row["mean"], color="#555555", linewidth=1, label="real only")
            if row["arm"] == "matched_compute":
                ax.scatter(
                    [max(ratios) - nudge], [row["mean"]], marker="x", color="#d62728", label="matched compute"
                )
        ax.set_xlim(-0.1 * max(max(ratios), 1.0), 1.1 * max(max(ratios), 1.0))
        ax.set_title(f"real fraction {fraction:g}", fontsize=9)
        ax.set_xlabel("synthetic : real ratio", fontsize=8)
        ax.set_ylabel("macro-F1 per scan", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return png_bytes(figure)


def image_pairs_png(columns: Mapping[str, Sequence[np.ndarray]], title: str) -> bytes:
    """Images in labelled columns, one row per view (graph-edit before/after when an edit has no pair.png)."""
    names = list(columns)
    rows = max(len(v) for v in columns.values())
    figure = Figure(figsize=(1.6 * len(names), 1.6 * rows + 0.5))
    for c, name in enumerate(names):
        for r, image in enumerate(columns[name]):
            ax = figure.add_subplot(rows, len(names), r * len(names) + c + 1)
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
    figure.suptitle(title, fontsize=8)
    return png_bytes(figure)
