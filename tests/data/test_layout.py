"""Image resolution through the frame list, lazy reading, the dataset contract and batching."""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.loader import DataLoader

from or_synth.data import FourDORDataset, FrameIndex, Vocabulary, main_action, record_to_data
from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import MAIN_ACTIONS, canonical_split
from tests.helpers import scan_entry, small_scene, write_layout_dataset


@pytest.fixture
def root(tmp_path):
    train = [small_scene(1, f"{i:06d}") for i in range(3)] + [small_scene(3, "000000")]
    val = [small_scene(4, "000002")]
    return write_layout_dataset(tmp_path / "4D-OR", {"train": train, "validation": val})


def test_frame_ids_are_used_verbatim_not_scan_ids(root):
    index = FrameIndex(root, 1)
    assert index.frame_id("000002", 5) == "001014"  # 1000 + 7 * 2, as stored
    assert index.image_path("000002", 5).name == "camera05_colorimage-001014.jpg"


def test_images_are_read_lazily_and_resized(root):
    dataset = FourDORDataset(root, "train", load_images=True, cameras=[2, 5], image_size=(12, 16))
    graph = dataset[2]
    assert graph.images.shape == (1, 2, 3, 12, 16) and graph.images.dtype == torch.uint8
    # The flat colours say which file was read: take 1 -> 20, scan 2 -> 20, camera 5 -> 200.
    mean = graph.images[0, 1].float().mean(dim=(1, 2))
    assert torch.allclose(mean, torch.tensor([20.0, 20.0, 200.0]), atol=4)
    plain = FourDORDataset(root, "train")
    assert "images" not in plain[2]


def test_batches_stack_views_and_offset_indices(root):
    dataset = FourDORDataset(root, "train", load_images=True, image_size=8, dense=True)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch.images.shape == (4, 6, 3, 8, 8)
    assert batch.dense_edge_index.max() < batch.num_nodes
    assert batch.dense_edge_index[:, -1].min() >= batch.ptr[3]
    assert batch.scan == ["000000", "000001", "000002", "000000"]
    assert batch.take.tolist() == [1, 1, 1, 3]


def test_processed_cache_is_versioned_and_refreshed(root, tmp_path):
    dataset = FourDORDataset(root, "train")
    cached = list((root / "processed").glob("or_synth_v*/train_*.pt"))
    assert len(cached) == 1
    # Editing the raw file changes the fingerprint: the new content is processed, not the stale cache.
    path = root / "relationships_train.json"
    scans = json.loads(path.read_text())["scans"][:2]
    path.write_text(json.dumps({"scans": scans}))
    assert len(FourDORDataset(root, "train")) == 2 != len(dataset)


def test_download_explains_the_request_form(tmp_path):
    with pytest.raises(FileNotFoundError, match="request access") as info:
        FourDORDataset(tmp_path / "empty", "test")
    assert "relationships_test.json" in str(info.value) and "python -m or_synth.render" in str(info.value)


def test_graph_fields_of_a_small_scene():
    vocabulary = Vocabulary()
    record = parse_scan(small_scene(1, "000007"), vocabulary)
    data = record_to_data(record, vocabulary, dense=True)
    assert data.num_nodes == 6
    assert data.edge_index.tolist() == [[0, 5, 1, 0, 2, 3], [5, 0, 0, 1, 3, 2]]
    assert [vocabulary.predicates[i] for i in data.edge_attr] == [
        "LyingOn",
        "CloseTo",
        "Drilling",
        "CloseTo",
        "Holding",
        "CloseTo",
    ]
    assert [vocabulary.roles[i] for i in data.node_role] == [
        "Patient",
        "head-surgeon",
        "assistant-surgeon",
        "not-a-person",
        "not-a-person",
        "not-a-person",
    ]
    assert MAIN_ACTIONS[int(data.main_action)] == "Drilling"
    assert data.dense_edge_label.numel() == 30 and int((data.dense_edge_label != 14).sum()) == 6
    assert not data.node_is_virtual.any()  # the instrument is held
    assert parse_scan(record.to_json(vocabulary), vocabulary) == record


def test_virtual_instrument_and_empty_graph():
    vocabulary = Vocabulary()
    entry = scan_entry(8, "000000", ["anesthesia_equipment", "instrument", "instrument_table"], [])
    data = record_to_data(parse_scan(entry, vocabulary), vocabulary, dense=True)
    assert data.node_is_virtual.tolist() == [False, True, False]
    assert data.edge_index.shape == (2, 0) and data.predicate_multi_hot.sum() == 0
    assert (data.dense_edge_label == vocabulary.none_index).all()


def test_main_action_rule_includes_operating():
    assert main_action(["CloseTo", "Operating", "Touching"]) == "Operating"
    assert main_action(["Touching", "Sawing", "Cleaning"]) == "Sawing"
    assert main_action(["CloseTo", "LyingOn"]) == "none"
    assert canonical_split("val") == "validation"
    with pytest.raises(ValueError, match="unknown split"):
        canonical_split("dev")


def test_vocabulary_reads_files_when_present(tmp_path):
    (tmp_path / "relationships.txt").write_text("A\nB\n")
    vocabulary = Vocabulary.load(tmp_path)
    assert vocabulary.predicates == ("A", "B") and vocabulary.predicates_with_none == ("A", "B", "none")
    assert vocabulary.object_classes == Vocabulary().object_classes
    with pytest.raises(KeyError, match="unknown predicate 'C'"):
        vocabulary.predicate_id("C")
