"""The relation classifier stage (``python -m or_synth.train stage=classifier``) as the suite loads it: weights,
a quality record on real held-out images that adds up, a stable hash, and the pin that refuses another one."""

from __future__ import annotations

import json
import statistics

import pytest

from or_synth.evaluation.relation_classifier import RelationClassifier, classifier_hash


def present_predicate_mean(scores: dict) -> float:
    """The mean per-scan F1 over the predicates the scans show: what the macro-F1 is defined as."""
    return statistics.mean(
        row["f1_per_scan"] for row in scores["predicates"].values() if row["support_per_scan"] > 0
    )


def test_classifier_stage_saves_weights_quality_and_a_stable_hash(classifier_dir):
    config = json.loads((classifier_dir / "config.json").read_text())
    assert config["training"]["real_images_only"] and config["image_size"] == 32 and config["triples"]
    quality = json.loads((classifier_dir / "quality.json").read_text())
    assert set(quality) == {"validation", "test"}
    for split in ("validation", "test"):  # each macro-F1 is the mean over the predicates present, as defined
        scores = quality[split]
        assert scores["predicate_macro_f1_per_scan"] == pytest.approx(
            present_predicate_mean(scores), abs=1e-4
        )
    digest = classifier_hash(classifier_dir)
    assert digest == classifier_hash(classifier_dir) and len(digest) == 16
    assert RelationClassifier.from_pretrained(classifier_dir, digest).triples == tuple(config["triples"])
    # The rendered dataset has boxes, so the pair-level head was trained and measured on real boxed pairs too.
    assert "Patient" in config["node_labels"] and config["training"]["pairs"] > 0
    pairs = quality["validation"]["pairs"]
    assert pairs["n_pairs"] > 0
    assert pairs["predicate_macro_f1_per_scan"] == pytest.approx(present_predicate_mean(pairs), abs=1e-4)
    with pytest.raises(ValueError, match="pinned"):
        RelationClassifier.from_pretrained(classifier_dir, "0" * 16)
