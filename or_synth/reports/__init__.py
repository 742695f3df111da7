"""Report bundles: one self-contained HTML page per run (summary, samples with their scene graphs, per-predicate
consistency, downstream study, training curves, graph edits, memorisation, cards), side-by-side comparisons
that refuse numbers whose metric cards make them incomparable, and the sample grids of runs and edits
(:mod:`or_synth.reports.grids`).

The bundle writer's imports (Jinja2, matplotlib) load on first use, so a training stage drawing a grid does not
pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from or_synth.reports.bundle import ReportError, build_report
    from or_synth.reports.compare import build_comparison

__all__ = ["ReportError", "build_comparison", "build_report"]


def __getattr__(name: str):
    if name in ("ReportError", "build_report"):
        from or_synth.reports import bundle

        return getattr(bundle, name)
    if name == "build_comparison":
        from or_synth.reports.compare import build_comparison

        return build_comparison
    raise AttributeError(f"module 'or_synth.reports' has no attribute {name!r}")
