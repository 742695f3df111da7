"""Small renders shared by the renderer tests (a few scans per take, so the suite stays fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import render_small


@pytest.fixture(scope="session")
def small_render(tmp_path_factory) -> Path:
    """Takes 1 (train), 4 (validation), 2 (test), 8 scans each, 48 x 64 px."""
    root = tmp_path_factory.mktemp("render") / "synthetic_or"
    render_small(root)
    return root
