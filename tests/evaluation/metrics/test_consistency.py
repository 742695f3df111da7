"""The graph- and pair-consistency metrics through the suite: pairs scored wherever boxes exist (copies score
exactly the ceiling), said or refused where none do, and training graphs refused unless the user says so."""

from __future__ import annotations

import pytest

from or_synth.evaluation import EvaluationError
from or_synth.evaluation.metrics.consistency import TRAINING_GRAPHS_NOTE
from or_synth.evaluation.relation_classifier import classifier_hash
from tests.helpers import copy_as_samples, run_evaluate

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("layout", ["given", "saved"])
def test_pair_consistency_where_boxes_exist(tiny_render, classifier_dir, tmp_path, layout):
    """Copies drawn "from the dataset's masks" or saved with their label maps have boxes: every (subject, object)
    pair is scored, and copies score exactly the ceiling (same pixels, same boxes)."""
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies", layout=layout)
    document = run_evaluate(
        samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[graph_consistency]"
    )
    pairs = document["details"]["pair_consistency"]
    assert {"model", "ceiling", "floor", "labels_only", "chance"} <= set(pairs)
    assert pairs["n_pairs"] == pairs["n_real_pairs"] > 0 and pairs["n_pairs_with_a_relation"] > 0
    assert ("label maps" in pairs["box_source"]) == (layout == "saved")
    for unit in ("scan", "view"):
        key = f"predicate_macro_f1_per_{unit}"
        assert pairs["model"][key] == pairs["ceiling"][key]
    assert "pairs" not in document["details"]["graph_consistency"]  # measured: no "why not" note
    card = document["cards"]["pair_consistency"]
    assert card["value"]["scan"]["model"] == pairs["model"]["predicate_macro_f1_per_scan"]
    assert card["weights_hash"] == classifier_hash(classifier_dir) and card["n_pairs"] == pairs["n_pairs"]
    assert card["n_real"] == document["cards"]["graph_consistency"]["n_real"] == pairs["n_images_with_pairs"]
    assert (tmp_path / "eval/cards/pair_consistency.md").is_file()


def test_pair_consistency_without_boxes_is_said_or_refused(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies")  # no layout: no boxes
    document = run_evaluate(
        samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[graph_consistency]"
    )
    assert list(document["cards"]) == ["graph_consistency"]
    assert document["details"]["graph_consistency"]["pairs"]["measured"] is False
    assert "no boxes" in document["details"]["graph_consistency"]["pairs"]["why"]
    with pytest.raises(EvaluationError, match="pair_consistency cannot be measured.*layout=masks"):
        run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval2", "metrics=[pair_consistency]")
    assert not (tmp_path / "eval2").exists()


def test_graph_consistency_on_training_graphs_is_refused_unless_said(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "train", tmp_path / "train_copies")
    with pytest.raises(EvaluationError, match="TRAINING-split graphs"):
        run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[graph_consistency]")
    said = run_evaluate(
        samples,
        classifier_dir,
        tiny_render,
        tmp_path / "eval",
        "metrics=[graph_consistency]",
        "allow_training_graphs=true",
    )
    card = said["cards"]["graph_consistency"]
    assert card["training_graphs"] is True and card["split"] == "train"
    assert card["warnings"][0] == TRAINING_GRAPHS_NOTE
