"""Data-layer speed: parsing all 1332 validation graphs vs loading them from the processed cache.

Target (issue #2): loading from the processed cache takes at most 1/5 of the time of the plain per-scan
``json`` + ``Data`` construction, measured in the same run. Run with ``bash scripts/benchmark.sh data``.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.data import Data

from or_synth.data import FourDORDataset, PhaseTable, Vocabulary, load_scene_graphs, records_to_data


def plain_json_to_data(path) -> list[Data]:
    """The baseline a user would write: json.load and one Data per scan, no validation."""
    vocabulary = Vocabulary()
    graphs = []
    for scan in json.loads(path.read_text())["scans"]:
        objects = scan["objects"]
        names = [objects[str(k)] for k in range(1, len(objects) + 1)]
        relations = scan["relationships"]
        edge_index = torch.tensor([[r[0] - 1, r[1] - 1] for r in relations], dtype=torch.long).view(-1, 2).t()
        graphs.append(
            Data(
                edge_index=edge_index,
                edge_attr=torch.tensor([r[2] for r in relations], dtype=torch.long),
                node_class=torch.tensor([vocabulary.class_id(n) for n in names]),
                num_nodes=len(names),
            )
        )
    return graphs


@pytest.mark.benchmark(group="validation graphs")
def test_plain_json_and_data(benchmark, real_validation_root):
    graphs = benchmark(plain_json_to_data, real_validation_root / "relationships_validation.json")
    assert len(graphs) == 1332


@pytest.mark.benchmark(group="validation graphs")
def test_validated_parse_to_data(benchmark, real_validation_root):
    path = real_validation_root / "relationships_validation.json"
    phases = PhaseTable.load(real_validation_root)

    def parse():
        return records_to_data(load_scene_graphs(path).records, phases=phases)

    assert len(benchmark(parse)) == 1332


@pytest.mark.benchmark(group="validation graphs")
def test_processed_cache_load(benchmark, real_validation_root, tmp_path):
    """The target's 'cache load': the dataset is ready to index and batch (graphs stay collated)."""
    FourDORDataset(real_validation_root, "validation", processed_root=tmp_path)  # writes the cache once

    def load():
        return FourDORDataset(real_validation_root, "validation", processed_root=tmp_path)

    assert len(benchmark(load)) == 1332


@pytest.mark.benchmark(group="validation graphs")
def test_processed_cache_load_and_first_pass(benchmark, real_validation_root, tmp_path):
    """Cache load plus one pass that separates every graph out of the collated storage (PyG then caches
    the separated graphs, so later epochs skip this cost)."""
    FourDORDataset(real_validation_root, "validation", processed_root=tmp_path)

    def load_and_touch_all():
        dataset = FourDORDataset(real_validation_root, "validation", processed_root=tmp_path)
        return [dataset[i] for i in range(len(dataset))]

    assert len(benchmark(load_and_touch_all)) == 1332
