"""Image towers for graph-image alignment: CLIP's vision transformer (open_clip) or data2vec-vision.

A tower takes the dataset's uint8 images, resizes and normalises them with the statistics of the model
(read from the component, never inlined), and returns one embedding per image. It is frozen by default;
``trainable_blocks`` unfreezes the last N transformer blocks plus the final norm / projection.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from or_synth.encoders.towers import load_data2vec_vision, load_open_clip


class ImageTower(nn.Module):
    """Base class: ``forward(images uint8 (B, 3, H, W)) -> (B, dim)`` float embeddings.

    Attributes:
        dim: embedding width. image_size: (H, W) the model expects. model_id: weights identity.
    """

    dim: int
    image_size: tuple[int, int]
    model_id: str

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.trainable_blocks = 0

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float (B, 3, *image_size), bicubic resize as CLIP's transform."""
        x = images.to(self.mean.device, torch.float32) / 255.0
        if tuple(x.shape[-2:]) != tuple(self.image_size):
            x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False, antialias=True)
        return (x.clamp(0, 1) - self.mean) / self.std

    def blocks(self) -> list[nn.Module]:
        """Transformer blocks, first to last."""
        raise NotImplementedError

    def head(self) -> list[nn.Module | nn.Parameter]:
        """What follows the last block (final norm, pooling, projection)."""
        raise NotImplementedError

    def set_trainable(self, blocks: int) -> None:
        """Freeze the tower, then unfreeze the last ``blocks`` blocks and the head (-1: everything)."""
        self.trainable_blocks = blocks
        self.requires_grad_(blocks < 0)
        if blocks > 0:
            for block in self.blocks()[-blocks:]:
                block.requires_grad_(True)
            for part in self.head():
                if part is not None:
                    part.requires_grad_(True)

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True) -> ImageTower:
        # A frozen tower stays in eval mode (no dropout / batch statistics), whatever the caller does.
        return super().train(mode and not self.frozen)


class OpenClipImageTower(ImageTower):
    """``clip.visual`` of an open_clip CLIP model; output in CLIP's joint space (``embed_dim``)."""

    def __init__(self, clip: nn.Module, model_id: str, preprocess: Mapping) -> None:
        super().__init__(preprocess["mean"], preprocess["std"])
        self.visual = clip.visual
        size = self.visual.image_size
        self.image_size = tuple(size) if isinstance(size, tuple | list) else (size, size)
        self.dim = int(self.visual.output_dim)
        self.model_id = model_id

    def blocks(self) -> list[nn.Module]:
        return list(self.visual.transformer.resblocks)

    def head(self) -> list[nn.Module | nn.Parameter]:
        return [getattr(self.visual, "ln_post", None), getattr(self.visual, "proj", None)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(self.preprocess(images)).float()


class Data2VecImageTower(ImageTower):
    """A ``Data2VecVisionModel``; output is its mean-pooled (and layer-normed) patch embedding."""

    def __init__(self, model: nn.Module, model_id: str, preprocess: Mapping) -> None:
        super().__init__(preprocess["mean"], preprocess["std"])
        self.model = model
        size = model.config.image_size
        self.image_size = tuple(size) if isinstance(size, tuple | list) else (size, size)
        self.dim = int(model.config.hidden_size)
        self.model_id = model_id

    def blocks(self) -> list[nn.Module]:
        return list(self.model.encoder.layer)

    def head(self) -> list[nn.Module | nn.Parameter]:
        return [getattr(self.model, "pooler", None), getattr(self.model, "layernorm", None)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.preprocess(images)).pooler_output.float()


def build_image_tower(towers: Mapping, trainable_blocks: int = 0) -> ImageTower:
    """The image tower described by ``encoder.towers`` (same backends and rules as the text tower).

    Raises:
        PretrainedWeightsError: pretrained weights were asked for and cannot be loaded.
    """
    seed = int(towers.get("seed", 0))
    if towers["backend"] == "open_clip":
        clip, model_id, preprocess = load_open_clip(
            towers.get("model"), towers.get("pretrained"), towers.get("arch"), seed
        )
        tower: ImageTower = OpenClipImageTower(clip, model_id, preprocess)
    elif towers["backend"] == "data2vec":
        model, preprocess, model_id = load_data2vec_vision(
            towers.get("vision_model"), bool(towers.get("pretrained", True)), towers.get("vision_arch"), seed
        )
        tower = Data2VecImageTower(model, model_id, preprocess)
    else:
        raise ValueError(
            f"unknown encoder.towers.backend {towers['backend']!r}; expected open_clip or data2vec"
        )
    tower.set_trainable(int(trainable_blocks))
    return tower.train(False)
