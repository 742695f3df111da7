"""Pixel ranges between the data layer and the first stage: images are uint8 in the data layer, the autoencoder
and the patch codec see floats in [-1, 1]."""

from __future__ import annotations

import torch


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8, clamped."""
    return images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
