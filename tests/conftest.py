"""Fixtures every test folder shares; the helpers themselves are in ``tests/helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import REAL_VALIDATION, render_tiny_dataset

# Tests never download: the Hugging Face libraries answer from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread beats two on a busy 2-core machine (no spin-waiting threads). Modules
    that train or sample tiny models opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def real_validation_file() -> Path:
    if not REAL_VALIDATION.is_file():
        pytest.skip(f"the shared 4D-OR annotation files are not beside the checkout ({REAL_VALIDATION})")
    return REAL_VALIDATION


@pytest.fixture(scope="session")
def tiny_render(tmp_path_factory) -> Path:
    """The embedded dataset at its smallest, rendered once for the whole session: 6 takes (train 1, 3 / validation
    4, 8 / test 2, 6) x 8 scans x 6 cameras at 32 px. Read it, never write into it (copy it first)."""
    return render_tiny_dataset(tmp_path_factory.mktemp("tiny_render") / "synthetic_or", size=32)
