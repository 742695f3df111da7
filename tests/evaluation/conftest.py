"""Fixtures of the evaluation tests; the helpers are in ``tests/helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import train_classifier


@pytest.fixture(scope="session")
def classifier_dir(tiny_render, tmp_path_factory) -> Path:
    """A relation classifier (image and pair heads) trained once on the tiny render, on one thread as the tiny
    tests run: read it, never write into it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_classifier(tiny_render, tmp_path_factory.mktemp("classifier"))
    finally:
        torch.set_num_threads(threads)
