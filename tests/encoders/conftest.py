"""Fixtures for the encoder tests: tiny random towers of the real architectures, graphs, datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import REAL_VALIDATION, scan_entry, small_scene

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
    "text_cfg": {"context_length": 32, "width": 32, "heads": 2, "layers": 2},
}
TINY_D2V_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_D2V_VISION = {**TINY_D2V_TEXT, "image_size": 32, "patch_size": 8}


def tiny_clip_cfg(cache_dir: Path | None, **graph) -> dict:
    return {
        "towers": {"backend": "open_clip", "model": None, "pretrained": None, "arch": TINY_CLIP, "seed": 0},
        "image_tower": {"trainable_blocks": 0},
        "graph": {"dim": 32, "hidden": 64, "layers": 2, **graph},
        "cache_dir": str(cache_dir) if cache_dir else None,
    }


@pytest.fixture
def clip_cfg(tmp_path) -> dict:
    return tiny_clip_cfg(tmp_path / "label_cache")


@pytest.fixture(scope="session")
def encoder():
    """A tiny SceneGraphEncoder (random CLIP label embeddings), in eval mode."""
    from or_synth.encoders import build_scene_graph_encoder

    torch.manual_seed(0)
    return build_scene_graph_encoder(tiny_clip_cfg(None)).eval()


def knee_graphs():
    """Four graphs of different sizes: the small knee scene, one without edges, one with an isolated node,
    a bigger one."""
    from or_synth.data import parse_scan, record_to_data
    from or_synth.data.vocabulary import Vocabulary

    vocab = Vocabulary()
    entries = [
        small_scene(1, "000000"),
        scan_entry(1, "000001", ["Patient", "instrument", "operating_table"], []),
        scan_entry(
            1,
            "000002",
            ["Patient", "human_0", "instrument", "secondary_table"],
            [(2, 1, "Preparing"), (1, 2, "CloseTo")],
            {"human_0": "circulating-nurse"},
        ),
        scan_entry(
            1,
            "000003",
            [
                "Patient",
                "anesthesia_equipment",
                "human_0",
                "human_1",
                "human_2",
                "instrument",
                "instrument_table",
                "operating_table",
                "secondary_table",
            ],
            [
                (1, 8, "LyingOn"),
                (8, 1, "CloseTo"),
                (3, 1, "Sawing"),
                (1, 3, "CloseTo"),
                (4, 6, "Holding"),
                (6, 4, "CloseTo"),
                (5, 2, "Operating"),
                (2, 5, "CloseTo"),
                (4, 3, "Assisting"),
                (3, 4, "CloseTo"),
            ],
            {"human_0": "head-surgeon", "human_1": "assistant-surgeon", "human_2": "anaesthetist"},
        ),
    ]
    return [record_to_data(parse_scan(e, vocab), vocab) for e in entries]


@pytest.fixture
def graphs():
    return knee_graphs()


@pytest.fixture
def real_graphs():
    """Real validation graphs (take 4), skipped when ../shared is absent."""
    if not REAL_VALIDATION.is_file():
        pytest.skip("real 4D-OR annotations not found")
    from or_synth.data import load_scene_graphs, record_to_data

    records = load_scene_graphs(REAL_VALIDATION, takes=[4]).records
    return [record_to_data(r) for r in records[300:340]]
