"""The downstream action-recognition study through the suite: rows with intervals, a card, and synthetic
training images of held-out takes refused before any work."""

from __future__ import annotations

import pytest

from or_synth.evaluation import EvaluationError
from tests.helpers import copy_as_samples, run_evaluate

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SETTINGS = (
    "metrics=[action_recognition]",
    "action_recognition.seeds=[0,1]",
    "action_recognition.ratios=[0.0,1.0]",
    "action_recognition.fractions=[1.0]",
    "action_recognition.steps=2",
    "action_recognition.batch_size=8",
)


def test_action_recognition_through_evaluate(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "train", tmp_path / "train_copies")
    document = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval", *SETTINGS)
    rows = document["metrics"]["action_recognition"]
    assert {(r["arm"], r["ratio"]) for r in rows} >= {("real_only", 0.0), ("synthetic", 1.0)}
    for row in rows:
        low, high = row["ci95"]
        assert low <= row["mean"] <= high
    card = document["cards"]["action_recognition"]
    assert any("oracle" in w for w in card["warnings"]) and card["seeds"] == [0, 1]
    assert card["n_generated"] == 32 and card["samples"] == str(samples)


def test_held_out_synthetic_images_are_refused_before_any_work(tiny_render, classifier_dir, tmp_path):
    held_out = copy_as_samples(tiny_render, "validation", tmp_path / "val_copies")
    with pytest.raises(EvaluationError, match="TRAINING-split graphs.*held-out takes \\[4, 8\\]"):
        run_evaluate(held_out, classifier_dir, tiny_render, tmp_path / "eval", *SETTINGS)
    assert not (tmp_path / "eval").exists()
