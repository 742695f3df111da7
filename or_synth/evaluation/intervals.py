"""How sure a consistency number is: per-scan counts, and a paired bootstrap over scans.

A predicate macro-F1 is not a mean over scans: it is computed from true/false positives and false negatives
summed over scans. So the unit the bootstrap resamples is the scan, and what it resamples is each scan's
(tp, fp, fn) per predicate (:class:`ScanCounts`); a resample of S scans is a weight vector over them, and the sums
are one matrix product. Every row scored on the same scans (the model, the ceiling, the floors, a control such as
the null graph) is resampled with the same weights (a *paired* bootstrap), so a difference between two rows gets
an interval of its own, narrower than the two intervals side by side suggest (evidence.md: "intervals from a
paired bootstrap over scans, model, ceiling and floor resampled together").

The macro average runs over one fixed predicate set for every row and every resample: the predicates present in
the scored graphs (a resample in which a predicate happens to have no support leaves it out of that resample's
mean, as the point estimate would).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.5
BOOTSTRAP_RESAMPLES = 2000


@dataclass
class ScanCounts:
    """Per-scan (tp, fp, fn) of each predicate: (S, C) integer arrays, rows in the order of ``keys``."""

    keys: list[str]
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def from_scores(
        cls, keys: Sequence[str], probabilities: np.ndarray, truth: np.ndarray, threshold: float = THRESHOLD
    ) -> ScanCounts:
        """One row per scan: ``probabilities`` (S, C) already averaged over the scan's views (and samples),
        ``truth`` (S, C) its graph's predicates."""
        predicted, actual = np.asarray(probabilities) >= threshold, np.asarray(truth) >= 0.5
        return cls(
            list(keys),
            (predicted & actual).astype(np.int64),
            (predicted & ~actual).astype(np.int64),
            (~predicted & actual).astype(np.int64),
        )

    @classmethod
    def from_rows(cls, keys: Sequence[str], tp, fp, fn) -> ScanCounts:
        return cls(list(keys), *(np.asarray(a, dtype=np.int64) for a in (tp, fp, fn)))

    def subset(self, keys: Sequence[str]) -> ScanCounts:
        index = {k: i for i, k in enumerate(self.keys)}
        rows = [index[k] for k in keys]
        return ScanCounts(list(keys), self.tp[rows], self.fp[rows], self.fn[rows])

    @property
    def support(self) -> np.ndarray:
        return self.tp + self.fn

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The counts as named arrays (for an ``.npz`` beside ``metrics.json``)."""
        return {f"{prefix}/tp": self.tp, f"{prefix}/fp": self.fp, f"{prefix}/fn": self.fn}


def macro_f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Macro-F1 over the ``present`` predicates of summed counts; ``tp`` etc. are (..., C). A predicate with
    nothing predicted and nothing true (0 / 0, possible in a resample) is left out of that mean."""
    denominator = (2 * tp + fp + fn)[..., present]
    f1 = np.where(denominator > 0, 2 * tp[..., present] / np.maximum(denominator, 1), 0.0)
    counted = (denominator > 0).sum(axis=-1)
    return np.where(counted > 0, f1.sum(axis=-1) / np.maximum(counted, 1), np.nan)


def resample_weights(n_scans: int, resamples: int, seed: int) -> np.ndarray:
    """(B, S) how often each scan is drawn in each of ``resamples`` bootstrap resamples (seeded)."""
    rng = np.random.default_rng([seed, 9_001])
    return rng.multinomial(n_scans, np.full(n_scans, 1.0 / n_scans), size=resamples)


def macro_f1_resamples(counts: ScanCounts, weights: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(B,) the macro-F1 of each resample (``weights`` from :func:`resample_weights`)."""
    w = weights.astype(np.float64)
    return macro_f1_from_counts(w @ counts.tp, w @ counts.fp, w @ counts.fn, present)


def interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of resampled values, rounded for a card."""
    low, high = np.nanpercentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return [round(float(low), 4), round(float(high), 4)]


def paired_bootstrap(
    rows: Mapping[str, ScanCounts | Sequence[ScanCounts]],
    present: np.ndarray,
    *,
    differences: Sequence[tuple[str, str]] = (),
    best_of: Mapping[str, Sequence[str]] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Point estimate and 95 % interval of every row's macro-F1, and of the differences asked for, all from one
    set of scan resamples.

    Args:
        rows: name -> its per-scan counts, or a list of them whose macro-F1s are averaged (the floor over
            several derangements). Every row must list the same scans in the same order.
        present: (C,) the predicates the macro average runs over.
        differences: (a, b) pairs: the interval of macro-F1(a) - macro-F1(b).
        best_of: name -> rows: a derived row, their maximum in each resample (the floor that counts:
            max(derangement floor, "always present")).

    Returns:
        ``{"rows": {name: {"value", "ci95"}}, "differences": {"a - b": {"value", "ci95"}}, "n_scans",
        "resamples"}``.
    """
    keys = None
    for counts in rows.values():
        for part in [counts] if isinstance(counts, ScanCounts) else counts:
            if keys is None:
                keys = part.keys
            elif part.keys != keys:
                raise ValueError("paired bootstrap: every row must list the same scans in the same order")
    n = len(keys or [])
    weights = resample_weights(n, resamples, seed)
    ones = np.ones((1, n), dtype=np.int64)
    point, resampled = {}, {}
    for name, counts in rows.items():
        parts = [counts] if isinstance(counts, ScanCounts) else list(counts)
        point[name] = float(np.mean([macro_f1_resamples(p, ones, present)[0] for p in parts]))
        resampled[name] = np.mean([macro_f1_resamples(p, weights, present) for p in parts], axis=0)
    for name, members in (best_of or {}).items():
        point[name] = max(point[m] for m in members)
        resampled[name] = np.max(np.stack([resampled[m] for m in members]), axis=0)
    out = {
        "rows": {k: {"value": round(point[k], 4), "ci95": interval(resampled[k])} for k in point},
        "differences": {},
        "n_scans": n,
        "resamples": resamples,
    }
    for a, b in differences:
        out["differences"][f"{a} - {b}"] = {
            "value": round(point[a] - point[b], 4),
            "ci95": interval(resampled[a] - resampled[b]),
        }
    return out


def always_present(keys: Sequence[str], truth: np.ndarray) -> ScanCounts:
    """The counts of a label-blind scorer that says every predicate is present in every scan (``truth`` (S, C))."""
    positives = (np.asarray(truth) >= 0.5).astype(np.int64)
    return ScanCounts(list(keys), positives, 1 - positives, np.zeros_like(positives))


def excludes(ci95: Sequence[float], value: float = 0.0) -> bool:
    """Whether an interval lies wholly above or below ``value`` (a claim holds only then)."""
    return ci95[0] > value or ci95[1] < value
