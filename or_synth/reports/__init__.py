"""Report bundles: one self-contained HTML page per run (summary, samples with their scene graphs, per-predicate
consistency, downstream study, training curves, graph edits, memorisation, cards), and side-by-side comparisons
that refuse numbers whose metric cards make them incomparable."""

from or_synth.reports.bundle import ReportError, build_report
from or_synth.reports.compare import build_comparison

__all__ = ["ReportError", "build_comparison", "build_report"]
