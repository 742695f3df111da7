"""Fixtures of the sampling tests: tiny saved pipelines (with and without a layout input) and a tiny layout
predictor, each saved once for the session (read them, never write into them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_SCANS, saved_tiny_pipeline, tiny_predictor


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory) -> Path:
    """A saved tiny ORScenePipeline (random weights, layout input, 8x8 latents -> 16x16 images)."""
    return saved_tiny_pipeline(tmp_path_factory, layout_channels=4)


@pytest.fixture(scope="session")
def plain_pipeline_dir(tmp_path_factory) -> Path:
    """The same tiny pipeline without a layout input (graph only)."""
    return saved_tiny_pipeline(tmp_path_factory, layout_channels=0, name="plain")


@pytest.fixture(scope="session")
def predictor_dir(tmp_path_factory) -> Path:
    """A tiny layout predictor on the tiny pipeline's vocabulary that draws every node."""
    path = tmp_path_factory.mktemp("layout") / "predictor"
    tiny_predictor().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def three_graphs(tmp_path_factory) -> Path:
    """A validation relationships file of three small scenes (:data:`tests.helpers.SAMPLE_SCANS`)."""
    path = tmp_path_factory.mktemp("graphs") / "relationships_validation.json"
    path.write_text(json.dumps({"scans": SAMPLE_SCANS}))
    return path
