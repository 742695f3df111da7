"""Small renders shared by the renderer tests (a few scans per take, so the suite stays fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from or_synth.render import load_config, render

SMALL = ["takes=3", "scans_per_take=8", "image_size=[48,64]", "progress=false"]


def render_small(root: Path, *extra: str) -> dict:
    return render(load_config([*SMALL, f"root={root}", *extra]))


@pytest.fixture(scope="session")
def small_render(tmp_path_factory) -> Path:
    """Takes 1 (train), 4 (validation), 2 (test), 8 scans each, 48 x 64 px."""
    root = tmp_path_factory.mktemp("render") / "synthetic_or"
    render_small(root)
    return root


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "processed"
    }
