"""Fixtures of the sampling tests: tiny saved pipelines (with and without a layout input) and a tiny layout
predictor, each saved once for the session (read them, never write into them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import saved_tiny_pipeline, tiny_predictor


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
