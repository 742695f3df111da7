"""The paired bootstrap over scans: point estimates agree with the consistency scores, paired differences are
exact where rows agree, and a real gap gets an interval that excludes 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from or_synth.evaluation.consistency import macro_f1
from or_synth.evaluation.intervals import (
    ScanCounts,
    always_present,
    excludes,
    macro_f1_from_counts,
    paired_bootstrap,
)


@pytest.fixture
def scans():
    rng = np.random.default_rng(0)
    truth = (rng.random((120, 6)) < 0.35).astype(float)
    truth[:, 5] = 0  # a predicate no scan has: outside the macro average
    good = np.clip(truth * 0.4 + rng.random(truth.shape) * 0.55, 0, 1)  # mostly right
    noise = rng.random(truth.shape)  # label-blind
    return [f"4/{i:06d}" for i in range(120)], truth, good, noise


def test_point_estimates_are_the_consistency_macro_f1(scans):
    keys, truth, good, noise = scans
    present = truth.sum(0) > 0
    out = paired_bootstrap(
        {
            "good": ScanCounts.from_scores(keys, good, truth),
            "noise": ScanCounts.from_scores(keys, noise, truth),
        },
        present,
        resamples=300,
    )
    for name, probs in (("good", good), ("noise", noise)):
        expected = macro_f1(torch.tensor(probs).float(), torch.tensor(truth).float())
        assert out["rows"][name]["value"] == pytest.approx(expected, abs=1e-4)
        low, high = out["rows"][name]["ci95"]
        assert low <= out["rows"][name]["value"] <= high and high - low > 0


def test_paired_differences_are_exact_for_equal_rows_and_exclude_zero_for_a_real_gap(scans):
    keys, truth, good, noise = scans
    present = truth.sum(0) > 0
    good_counts = ScanCounts.from_scores(keys, good, truth)
    out = paired_bootstrap(
        {"a": good_counts, "b": good_counts, "noise": ScanCounts.from_scores(keys, noise, truth),
         "always": always_present(keys, truth)},
        present,
        differences=[("a", "b"), ("a", "noise")],
        best_of={"floor": ("noise", "always")},
        resamples=500,
    )  # fmt: skip
    assert out["differences"]["a - b"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    gap = out["differences"]["a - noise"]
    assert gap["value"] > 0.3 and excludes(gap["ci95"]) and not excludes([-0.1, 0.2])
    assert out["rows"]["floor"]["value"] == max(out["rows"]["noise"]["value"], out["rows"]["always"]["value"])
    # "always present" scores 2p / (1 + p) per predicate, p its prevalence.
    p = truth[:, present].mean(0)
    assert out["rows"]["always"]["value"] == pytest.approx(float(np.mean(2 * p / (1 + p))), abs=1e-4)


def test_rows_must_list_the_same_scans_and_averaged_rows(scans):
    keys, truth, good, noise = scans
    present = truth.sum(0) > 0
    counts = ScanCounts.from_scores(keys, good, truth)
    with pytest.raises(ValueError, match="same scans"):
        paired_bootstrap({"a": counts, "b": counts.subset(keys[:50])}, present, resamples=10)
    halves = paired_bootstrap(
        {"mean": [counts, ScanCounts.from_scores(keys, noise, truth)]}, present, resamples=10
    )
    each = [macro_f1_from_counts(c.tp.sum(0), c.fp.sum(0), c.fn.sum(0), present) for c in
            (counts, ScanCounts.from_scores(keys, noise, truth))]  # fmt: skip
    assert halves["rows"]["mean"]["value"] == pytest.approx(float(np.mean(each)), abs=1e-4)
