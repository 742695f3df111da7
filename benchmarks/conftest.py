"""Benchmarks read the real 4D-OR files from ../shared; they skip when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_4DOR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "4d-or"


@pytest.fixture(scope="session")
def real_validation_root() -> Path:
    if not (SHARED_4DOR / "relationships_validation.json").is_file():
        pytest.skip(f"real 4D-OR annotations not found under {SHARED_4DOR}")
    return SHARED_4DOR
