"""Tiny generator components of the real architectures (AutoencoderKL or PatchPCACodec, UNet2DConditionModel,
GraphConditioner)."""

from __future__ import annotations

import pytest

from tests.helpers import knee_graphs


@pytest.fixture
def graphs():
    return knee_graphs()
