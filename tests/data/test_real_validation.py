"""The parser on the real 4D-OR validation file, checked against counts made here with plain ``json``."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from torch_geometric.loader import DataLoader

from or_synth.data import (
    PHASES,
    FourDORDataset,
    PhaseTable,
    Vocabulary,
    load_scene_graphs,
    records_to_data,
)
from or_synth.data.summary import main as summary_main
from or_synth.data.summary import summarize

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def raw_scans():
    from tests.helpers import REAL_VALIDATION

    if not REAL_VALIDATION.is_file():
        pytest.skip("real 4D-OR annotations absent")
    return json.loads(REAL_VALIDATION.read_text())["scans"]


def test_vocabulary_defaults_equal_the_shipped_files(real_validation_file):
    assert Vocabulary.load(real_validation_file.parent) == Vocabulary()


def test_record_counts_match_an_independent_count(real_validation_file, raw_scans):
    records = load_scene_graphs(real_validation_file).records
    assert len(records) == len(raw_scans) == 1332
    assert sum(len(r.triples) for r in records) == sum(len(s["relationships"]) for s in raw_scans)
    ours = Counter(p for r in records for _, _, p in r.triples)
    theirs = Counter(rel[3] for s in raw_scans for rel in s["relationships"])
    assert ours == theirs
    # Node i is object key i+1, and triples keep file order.
    for record, raw in zip(records[::97], raw_scans[::97], strict=True):
        assert record.object_names == tuple(raw["objects"][str(k)] for k in range(1, len(raw["objects"]) + 1))
        assert [(s + 1, o + 1, p) for s, o, p in record.triples] == [
            (r[0], r[1], r[3]) for r in raw["relationships"]
        ]


def test_pyg_graphs_carry_ids_roles_and_dense_labels(real_validation_file, raw_scans):
    vocabulary = Vocabulary()
    records = load_scene_graphs(real_validation_file).records
    graphs = records_to_data(
        records, vocabulary, phases=PhaseTable.load(real_validation_file.parent), dense=True
    )
    # Dense protocol: n(n-1) ordered pairs per scan; unannotated pairs are 'none'.
    pairs = sum(len(s["objects"]) * (len(s["objects"]) - 1) for s in raw_scans)
    none_pairs = pairs - sum(len(s["relationships"]) for s in raw_scans)
    assert sum(g.dense_edge_label.numel() for g in graphs) == pairs
    assert sum(int((g.dense_edge_label == vocabulary.none_index).sum()) for g in graphs) == none_pairs
    # Roles: compare with human_idx_to_name, missing entries and 'none' -> unknown.
    for graph, raw in zip(graphs, raw_scans, strict=True):
        for node, name in enumerate(raw["objects"][str(k)] for k in range(1, len(raw["objects"]) + 1)):
            if name.startswith("human_"):
                role = raw["human_idx_to_name"].get(name, "unknown")
                role = "unknown" if role == "none" else role
                assert vocabulary.roles[graph.node_role[node]] == role
            assert vocabulary.object_classes[graph.node_class[node]] == name
        assert graph.edge_index.min() >= 0 if graph.edge_index.numel() else True
    # The virtual instrument is flagged exactly when it is in no relation (independent count).
    unused = 0
    for raw in raw_scans:
        key = next(int(k) for k, v in raw["objects"].items() if v == "instrument")
        unused += all(key not in r[:2] for r in raw["relationships"])
    assert sum(int(g.node_is_virtual.sum()) for g in graphs) == unused
    # Phase: the range of the phase file that contains the scan index.
    phase_files = {
        t: json.loads((real_validation_file.parent / "phases" / f"phase_to_frames_{t}.json").read_text())
        for t in (4, 8)
    }
    for graph, raw in list(zip(graphs, raw_scans, strict=True))[::53]:
        expected = [p for p, (a, b) in phase_files[raw["take_idx"]].items() if a <= int(raw["scan"]) <= b]
        assert PHASES[int(graph.phase)] == expected[0]
    # Multi-hot equals the set of predicates present.
    g = graphs[500]
    assert set(torch.nonzero(g.predicate_multi_hot[0]).flatten().tolist()) == set(g.edge_attr.tolist())


def test_summary_on_the_real_file(real_validation_file, raw_scans, capsys):
    assert summary_main([str(real_validation_file)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scans"] == len(raw_scans)
    assert summary["triples"] == sum(len(s["relationships"]) for s in raw_scans)
    assert summary["takes"] == {"4": 682, "8": 650}
    assert summary["object_classes"]["instrument"] == 1332
    assert sum(summary["phases"].values()) == 1332
    assert summary["phases"]["sterile"] == 46 + 35
    # Main action: Operating is included (LABRAD-OR's typo is not copied), so 'none' shrinks by its count.
    operating_only = sum(
        1
        for s in raw_scans
        if {"Operating"} <= {r[3] for r in s["relationships"]}
        and not {r[3] for r in s["relationships"]}
        & {"Cementing", "Cutting", "Drilling", "Hammering", "Preparing", "Sawing", "Suturing", "Cleaning"}
    )
    assert summary["main_actions"]["Operating"] == operating_only > 0
    assert summary == summarize(real_validation_file.parent)  # a dataset root gives the same figures


def test_dataset_class_on_the_real_file_with_a_readonly_root(real_validation_file, tmp_path):
    dataset = FourDORDataset(real_validation_file.parent, "val", processed_root=tmp_path, dense=True)
    assert len(dataset) == 1332
    assert dataset.keys[0] == (4, "000000")
    batch = next(iter(DataLoader(dataset, batch_size=8)))
    assert batch.num_graphs == 8 and batch.predicate_multi_hot.shape == (8, 14)
    # Second construction reads the cache instead of parsing.
    again = FourDORDataset(real_validation_file.parent, "validation", processed_root=tmp_path, dense=True)
    assert torch.equal(again[100].edge_index, dataset[100].edge_index)
