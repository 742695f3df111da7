"""The downstream study's second protocol on tiny inputs: equal steps for every arm, the synthetic-only arm, the
reference, gains paired over seeds and test scans, and the learning curve that sets the steps."""

from __future__ import annotations

import numpy as np
import pytest

from or_synth.evaluation.downstream import (
    equal_steps_study,
    learning_curve,
    paired_scan_bootstrap,
    plateau_steps,
    train_and_predict,
)
from tests.evaluation.test_action_recognition import colour_images

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def fake_runs(predictions: list[list[int]], truth: list[int]) -> list[dict]:
    return [{"scan_predictions": p, "scan_truth": truth} for p in predictions]


def test_the_paired_bootstrap_resamples_seeds_and_scans_together():
    truth = [0, 1, 2, 3] * 10
    perfect = fake_runs([truth, truth, truth], truth)
    wrong = fake_runs([[(t + 1) % 4 for t in truth]] * 3, truth)
    gain = paired_scan_bootstrap(perfect, wrong, resamples=200)
    assert gain == {"value": 1.0, "ci95": [1.0, 1.0], "shown": True}
    # Two arms that agree except by chance on a few scans: no gain shown.
    rng = np.random.default_rng(0)
    noisy = [[t if rng.random() < 0.7 else (t + 1) % 4 for t in truth] for _ in range(3)]
    other = [[t if rng.random() < 0.7 else (t + 1) % 4 for t in truth] for _ in range(3)]
    tie = paired_scan_bootstrap(fake_runs(noisy, truth), fake_runs(other, truth), resamples=300)
    assert tie["ci95"][0] < 0 < tie["ci95"][1] and tie["shown"] is False
    alone = paired_scan_bootstrap(fake_runs(noisy, truth), None, resamples=300)
    assert "shown" not in alone and alone["ci95"][0] <= alone["value"] <= alone["ci95"][1]
    with pytest.raises(ValueError, match="different seeds or scans"):
        paired_scan_bootstrap(perfect, wrong[:2])


def test_the_plateau_is_the_fewest_steps_within_tolerance_of_the_best():
    curve = [{"steps": 10, "mean": 0.30}, {"steps": 40, "mean": 0.61}, {"steps": 80, "mean": 0.615}]
    assert plateau_steps(curve, tolerance=0.01) == 40
    assert plateau_steps(curve, tolerance=0.0) == 80


def test_learning_curve_and_predictions_are_deterministic():
    train, validation = colour_images(16, seed=0), colour_images(8, seed=1, takes=(4,))
    curve = learning_curve(train, validation, step_grid=[4, 2], seeds=[0], batch_size=8, lr=3e-3)
    assert [p["steps"] for p in curve] == [2, 4] and all(len(p["macro_f1"]) == 1 for p in curve)
    first = train_and_predict(train, validation, steps=3, batch_size=8, seed=1, lr=3e-3)
    again = train_and_predict(train, validation, steps=3, batch_size=8, seed=1, lr=3e-3)
    assert first["scan_predictions"] == again["scan_predictions"] and len(first["scan_truth"]) == 8


def test_every_arm_trains_the_same_steps_with_its_own_images():
    real, test = colour_images(24, seed=0, takes=(3,)), colour_images(12, seed=1, takes=(2,))
    synthetic, oracle = colour_images(48, seed=2, takes=(1,)), colour_images(48, seed=3, takes=(1,))
    result = equal_steps_study(real, synthetic, test, oracle, steps=2, batch_size=8, seeds=(0,), ratios=(1.0,),
                               fractions=(1.0, 0.5), resamples=100)  # fmt: skip
    arms = [(r["fraction"], r["arm"], r["ratio"]) for r in result["rows"]]
    assert arms == [(f, a, r) for f in (1.0, 0.5)
                    for a, r in (("real_only", 0.0), ("synthetic", 1.0), ("oracle", 1.0), ("synthetic_only", 1.0))]  # fmt: skip
    assert {r["steps"] for r in result["rows"]} == {2}  # real only is the matched-compute control
    by = {(r["fraction"], r["arm"]): r for r in result["rows"]}
    assert by[(1.0, "real_only")]["real_images"] == 48 and by[(1.0, "synthetic")]["added_images"] == 48
    assert (
        by[(1.0, "synthetic_only")]["real_images"] == 0 and by[(1.0, "synthetic_only")]["added_images"] == 48
    )
    assert by[(0.5, "real_only")]["real_images"] == 24
    for row in result["rows"]:
        low, high = row["macro_f1_interval"]["ci95"]
        assert low <= row["macro_f1_interval"]["value"] <= high
        assert ("gain_over_real_only" in row) == (row["arm"] != "real_only")
    assert result["reference"]["mean"] == by[(1.0, "real_only")]["mean"]
    with pytest.raises(ValueError, match="held out"):
        equal_steps_study(real, colour_images(48, takes=(2,)), test, steps=2, batch_size=8, seeds=(0,))
