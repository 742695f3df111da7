"""Fixtures for the encoder tests: tiny random towers of the real architectures, graphs, datasets."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import REAL_VALIDATION, knee_graphs, tiny_clip_cfg


@pytest.fixture
def clip_cfg(tmp_path) -> dict:
    return tiny_clip_cfg(tmp_path / "label_cache")


@pytest.fixture(scope="session")
def encoder():
    """A tiny SceneGraphEncoder (random CLIP label embeddings), in eval mode."""
    from or_synth.encoders import build_scene_graph_encoder

    torch.manual_seed(0)
    return build_scene_graph_encoder(tiny_clip_cfg(None)).eval()


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
