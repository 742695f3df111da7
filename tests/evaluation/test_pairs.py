"""Pair-level relations: which pairs an image has, their targets (true and shuffled-graph), boxes from label maps,
boxes that follow the training augmentation, the classifier's pair head (save / load, refusal without one) and
pair consistency with a scorer whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from or_synth.data import PREDICATES, load_scene_graphs
from or_synth.evaluation.consistency import pair_consistency_report
from or_synth.evaluation.image_sets import ImageSet
from or_synth.evaluation.pairs import MIN_BOX_SIDE, build_pairs, label_map_boxes
from or_synth.evaluation.relation_classifier import RelationClassifier, node_label, node_label_vocabulary
from or_synth.training.classifier import augment, augment_boxes


@pytest.fixture
def records(real_validation_file):
    return load_scene_graphs(real_validation_file).records[::130]  # 11 scans across both takes


def all_boxes(record, side=0.2):
    """Every node of the record visible, in a distinct box."""
    return {
        n: (0.05 * n % 0.8, 0.1, 0.05 * n % 0.8 + side, 0.1 + side) for n in range(len(record.object_names))
    }


def test_pairs_are_ordered_distinct_visible_nodes_and_targets_follow_the_graph(records):
    record = next(r for r in records if len(r.triples) >= 2)
    n = len(record.object_names)
    boxes = all_boxes(record)
    boxes[0] = (0.0, 0.0, MIN_BOX_SIDE / 2, 0.5)  # too thin to read: no pair has node 0
    pairs = build_pairs([boxes, None], "test")
    assert len(pairs) == (n - 1) * (n - 2) and set(pairs.image_index.tolist()) == {0}
    assert 0 not in pairs.subject.tolist() + pairs.object.tolist()
    assert not (pairs.subject == pairs.object).any()
    targets = pairs.targets([record, record])
    for row, (s, o) in enumerate(zip(pairs.subject.tolist(), pairs.object.tolist(), strict=True)):
        expected = {p for ts, to, p in record.triples if (ts, to) == (s, o)}
        assert {PREDICATES[i] for i in torch.nonzero(targets[row]).flatten().tolist()} == expected
    # Against a donor graph: the relations the donor states between nodes of the same labels.
    donor = next(r for r in records if r is not record and r.triples)
    shuffled = pairs.targets([record], [donor])
    donor_facts = {(node_label(donor, s), p, node_label(donor, o)) for s, o, p in donor.triples}
    subjects, objects = pairs.labels([record])
    for row in range(len(pairs)):
        expected = {p for p in PREDICATES if (subjects[row], p, objects[row]) in donor_facts}
        assert {PREDICATES[i] for i in torch.nonzero(shuffled[row]).flatten().tolist()} == expected


def test_pairs_of_a_batch_of_images(records):
    pairs = build_pairs([all_boxes(r) for r in records[:4]], "test")
    index, position = pairs.in_images(torch.tensor([3, 1]))
    assert pairs.image_index[index].tolist() == [3] * int((pairs.image_index == 3).sum()) + [1] * int(
        (pairs.image_index == 1).sum()
    )
    assert position.tolist() == [0 if i == 3 else 1 for i in pairs.image_index[index].tolist()]


def test_boxes_of_a_label_map(tmp_path):
    labels = np.zeros((20, 40), dtype=np.uint8)
    labels[2:6, 10:30] = 1  # node 0
    labels[10:20, 0:4] = 3  # node 2
    labels[0, 0] = 255  # clutter
    Image.fromarray(labels).save(tmp_path / "map.png")
    boxes = label_map_boxes(tmp_path / "map.png", num_nodes=3)
    assert boxes == {0: (10 / 40, 2 / 20, 30 / 40, 6 / 20), 2: (0.0, 10 / 20, 4 / 40, 1.0)}
    with pytest.raises(ValueError, match="missing"):
        label_map_boxes(tmp_path / "none.png", num_nodes=3)


def test_boxes_follow_the_flips_and_shifts_of_augmentation():
    images = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    images[:, :, 5:12, 3:20] = 255
    box = torch.tensor([[3 / 32, 5 / 32, 20 / 32, 12 / 32]]).repeat(8, 1)
    moved, flipped, shift = augment(images, torch.Generator().manual_seed(3), max_shift=4)
    assert flipped.any() and not flipped.all() and shift != (0, 0)
    expected = augment_boxes(box, flipped, shift, 32)
    for i in range(8):
        ys, xs = torch.nonzero(moved[i, 0] > 128, as_tuple=True)
        seen = torch.tensor([xs.min() / 32, ys.min() / 32, (xs.max() + 1) / 32, (ys.max() + 1) / 32])
        assert torch.allclose(seen, expected[i], atol=1e-6)


def test_pair_head_saves_loads_and_older_classifiers_refuse_clearly(records, tmp_path):
    torch.manual_seed(0)
    labels = node_label_vocabulary(records)
    model = RelationClassifier(["a b c"], 32, labels).eval()
    images = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)
    pairs = build_pairs([all_boxes(r) for r in records[:3]], "test")
    out = model.predict(images, torch.tensor([1, 2, 3]), 2, pairs=pairs, records=records[:3])
    assert out["pairs"].shape == (len(pairs), len(PREDICATES)) and (out["pairs"] > 0).all()
    # Batching does not change the answers: each pair is scored in its own image.
    whole = model.predict(images, torch.tensor([1, 2, 3]), 8, pairs=pairs, records=records[:3])
    assert torch.allclose(out["pairs"], whole["pairs"], atol=1e-5)
    assert torch.allclose(out["features"], model.features(images), atol=1e-5)  # the unrolled forward agrees

    # Blank images: one forward pass serves every pair, and gives what a batch of blank images would.
    blank = torch.full_like(images, 128)
    blind = model.predict(blank, torch.tensor([1, 2, 3]), 8, pairs=pairs, records=records[:3])["pairs"]
    assert torch.allclose(model.predict_blank(pairs, records[:3]), blind, atol=1e-5)

    loaded = RelationClassifier.from_pretrained(model.save_pretrained(tmp_path / "c"))
    assert loaded.node_labels == labels and loaded.has_pair_head
    again = loaded.predict(images, torch.tensor([1, 2, 3]), 8, pairs=pairs, records=records[:3])
    assert torch.allclose(again["pairs"], whole["pairs"], atol=1e-6)

    older = RelationClassifier(["a b c"], 32)  # no node labels: trained without boxes
    assert not older.has_pair_head
    with pytest.raises(ValueError, match="no pair-level head"):
        older.predict(images, torch.tensor([1, 2, 3]), pairs=pairs, records=records[:3])


class PerfectPairScorer:
    """Answers each pair with the relations of the graph its image really shows (the first pixel's record
    index); blank images (any other value) get nothing."""

    def __init__(self, records) -> None:
        self.records = records

    def predict(self, images, cameras, batch_size=128, *, pairs=None, records=None):
        shown = [int(i) for i in images[:, 0, 0, 0]]
        out = torch.zeros(len(pairs), len(PREDICATES))
        for row, (i, s, o) in enumerate(
            zip(pairs.image_index.tolist(), pairs.subject.tolist(), pairs.object.tolist(), strict=True)
        ):
            if shown[i] < len(self.records) and self.records[shown[i]] is records[i]:
                for ts, to, p in records[i].triples:
                    if (ts, to) == (s, o):
                        out[row, PREDICATES.index(p)] = 1.0
        return {"pairs": out}

    def predict_blank(self, pairs, records):
        return torch.zeros(len(pairs), len(PREDICATES))  # a blank image shows no relation


def test_pair_consistency_of_a_perfect_scorer_and_its_references(records):
    cameras = (1, 2)
    rows = [(i, c) for i in range(len(records)) for c in cameras]
    images = torch.zeros(len(rows), 3, 4, 4, dtype=torch.uint8)
    for row, (i, _) in enumerate(rows):
        images[row, 0, 0, 0] = i
    image_set = ImageSet(
        images,
        [records[i] for i, _ in rows],
        torch.tensor([c for _, c in rows]),
        [str(r) for r in rows],
        "t",
        {},
    )
    pairs = build_pairs([all_boxes(records[i]) for i, _ in rows], "test")
    report = pair_consistency_report(PerfectPairScorer(records), image_set, pairs, image_set, pairs, seed=0)
    for unit in ("view", "scan"):
        key = f"predicate_macro_f1_per_{unit}"
        assert report["model"][key] == report["ceiling"][key] == 1.0
        assert report["floor"][key] < 1.0
        assert report["labels_only"][key] == 0.0  # blank images: the scorer sees nothing
    assert report["model"]["facts_per_scan"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert report["n_pairs"] == len(pairs) and report["n_images_with_pairs"] == len(rows)
    assert report["model_above_floor_fraction_per_scan"] == 1.0
    with pytest.raises(ValueError, match="no pair to score"):
        pair_consistency_report(PerfectPairScorer(records), image_set, build_pairs([None] * len(rows), "t"))
