"""Graph-consistency arithmetic with a scorer whose answers are known: a perfect scorer reaches F1 1 on the true
graphs and falls to the floor on shuffled ones; per-scan averaging, chance levels and view agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from or_synth.data import load_scene_graphs
from or_synth.evaluation.consistency import (
    chance_levels,
    consistency_report,
    derangement,
    graph_targets,
    per_scan,
    view_agreement,
)
from or_synth.evaluation.image_sets import ImageSet
from or_synth.evaluation.relation_classifier import RelationLabels, triple_vocabulary


class PerfectScorer:
    """Reads the graph an image really shows from its first pixel (the record index) and answers exactly it."""

    def __init__(self, records, triples) -> None:
        self.records, self.triples = records, tuple(triples)
        self.labels = RelationLabels(self.triples)

    def predict(self, images, cameras, batch_size=128):
        shown = [self.records[int(i)] for i in images[:, 0, 0, 0]]
        return {
            "predicates": self.labels.predicates(shown),
            "triples": self.labels.triple_targets(shown),
            "features": torch.zeros(len(images), 4),
        }


@pytest.fixture
def records(real_validation_file):
    return load_scene_graphs(real_validation_file).records[::130]  # 11 scans across both takes


def image_set(records, shown, cameras=(1, 2, 3)) -> ImageSet:
    """Views of every record in ``records``, each image showing the graph ``shown[i]`` (an index)."""
    rows = [(i, c) for i in range(len(records)) for c in cameras]
    images = torch.zeros(len(rows), 3, 4, 4, dtype=torch.uint8)
    for row, (i, _) in enumerate(rows):
        images[row, 0, 0, 0] = shown[i]
    return ImageSet(
        images,
        [records[i] for i, _ in rows],
        torch.tensor([c for _, c in rows]),
        [f"{i}/{c}" for i, c in rows],
        "test",
        {},
    )


def test_a_perfect_scorer_scores_one_and_shuffled_graphs_fall_to_the_floor(records):
    scorer = PerfectScorer(records, triple_vocabulary(records, 1))
    honest = image_set(records, list(range(len(records))))
    report = consistency_report(scorer, honest, honest, seed=0)
    for unit in ("image", "scan"):
        assert report["model"][f"predicate_macro_f1_per_{unit}"] == 1.0
        assert report["ceiling"][f"predicate_macro_f1_per_{unit}"] == 1.0
        assert report["floor"][f"predicate_macro_f1_per_{unit}"] < 1.0
        assert report["model"][f"triples_per_{unit}"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert (
        report["model_over_ceiling_per_scan"] == 1.0 and report["model_above_floor_fraction_per_scan"] == 1.0
    )
    assert report["view_agreement"] == 1.0 and set(report["per_camera"]) == {1, 2, 3}
    assert report["per_camera_ceiling"] == report["per_camera"] and report["view_agreement_real"] == 1.0

    # Images that show another scan's graph score what the floor measures, not the ceiling.
    shifted = image_set(records, [(i + 1) % len(records) for i in range(len(records))])
    wrong = consistency_report(scorer, shifted, honest, seed=0)
    assert wrong["model"]["predicate_macro_f1_per_scan"] < 1.0
    assert wrong["ceiling"]["predicate_macro_f1_per_scan"] == 1.0


def test_real_set_must_list_the_same_views(records):
    scorer = PerfectScorer(records, triple_vocabulary(records, 1))
    generated = image_set(records, list(range(len(records))))
    other = image_set(records, list(range(len(records))), cameras=(4, 5, 6))
    with pytest.raises(ValueError, match="same"):
        consistency_report(scorer, generated, other)


def test_derangement_per_scan_chance_and_agreement():
    for n in (2, 5, 17):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n)) and not (perm == np.arange(n)).any()
    values = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert per_scan(values, torch.tensor([0, 0, 1])).tolist() == [[0.5, 0.0], [1.0, 1.0]]
    levels = chance_levels(torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]))
    assert levels["random"] == pytest.approx((1.0 + 0.25) / 2, abs=1e-4)
    assert levels["always"] == pytest.approx((1.0 + 0.4) / 2, abs=1e-4)
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.9, 0.9], [0.1, 0.9]])
    assert view_agreement(probs, torch.tensor([0, 0, 1, 1])) == 0.5


def test_targets_follow_the_triple_vocabulary(records):
    triples = triple_vocabulary(records, 1)
    targets = graph_targets(RelationLabels(triples), image_set(records, list(range(len(records)))))
    assert targets["triples"].shape == (len(records) * 3, len(triples)) and targets["triples"].sum() > 0
    assert any(t.startswith("head-surgeon ") for t in triples)  # people are named by role, not human_0
    assert not any("human_" in t for t in triples)
