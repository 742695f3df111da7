"""Frozen text towers that embed the label prompts: CLIP (open_clip) or data2vec (transformers).

A text tower is used once per (model, prompt set): :mod:`or_synth.encoders.label_embeddings` caches its output,
so the tower itself is never part of the trained graph encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from or_synth.encoders.towers import hf_model_id, load_data2vec_text, load_open_clip, open_clip_model_id


class TextTower(nn.Module):
    """Base class: ``encode(texts) -> (len(texts), dim)`` float32 embeddings, plus a cache identity.

    Attributes:
        model_id: identifies the weights (model + pretrained tag / local file fingerprint / random seed).
        dim: embedding width.
    """

    model_id: str
    dim: int

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError


class OpenClipTextTower(TextTower):
    """The text half of an open_clip ``CLIP`` model; embeddings are L2-normalised like CLIP's."""

    def __init__(self, clip: nn.Module, model_id: str, tokenizer: Any) -> None:
        super().__init__()
        self.clip = clip.eval().requires_grad_(False)
        self.model_id = model_id
        self.tokenizer = tokenizer
        self.dim = int(clip.text_projection.shape[-1]) if clip.text_projection is not None else clip.embed_dim

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts))
        return self.clip.encode_text(tokens, normalize=True).float()


class Data2VecTextTower(TextTower):
    """A ``Data2VecTextModel``; a prompt's embedding is the attention-masked mean of its last hidden states."""

    def __init__(self, model: nn.Module, tokenizer: Any, model_id: str) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.dim = int(model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, return_tensors="pt")
        hidden = self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state  # (T, L, D)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)).float()


def build_text_tower(towers: Mapping, prompts: Sequence[str] = ()) -> TextTower:
    """The text tower described by the ``encoder.towers`` config.

    Args:
        towers: ``{backend: open_clip, model, pretrained, arch, seed}`` or
            ``{backend: data2vec, text_model, pretrained, text_arch, seed}``.
        prompts: the texts to embed; a random data2vec tower builds its word-level tokenizer from them.

    Raises:
        PretrainedWeightsError: pretrained weights were asked for and cannot be loaded.
    """
    backend = towers["backend"]
    seed = int(towers.get("seed", 0))
    if backend == "open_clip":
        import open_clip

        arch = towers.get("arch")
        clip, model_id, _ = load_open_clip(towers.get("model"), towers.get("pretrained"), arch, seed)
        if arch:
            context = int(dict(arch["text_cfg"]).get("context_length", 77))
            tokenizer = open_clip.SimpleTokenizer(context_length=context)
        else:
            tokenizer = open_clip.get_tokenizer(towers["model"])
        return OpenClipTextTower(clip, model_id, tokenizer)
    if backend == "data2vec":
        model, tokenizer, model_id = load_data2vec_text(
            towers.get("text_model"),
            bool(towers.get("pretrained", True)),
            towers.get("text_arch"),
            seed,
            prompts,
        )
        return Data2VecTextTower(model, tokenizer, model_id)
    raise ValueError(f"unknown encoder.towers.backend {backend!r}; expected open_clip or data2vec")


def text_tower_model_id(towers: Mapping) -> str:
    """The model id :func:`build_text_tower` would report, without loading any weights."""
    seed = int(towers.get("seed", 0))
    if towers["backend"] == "open_clip":
        return open_clip_model_id(towers.get("model"), towers.get("pretrained"), towers.get("arch"), seed)
    if towers["backend"] == "data2vec":
        pretrained = bool(towers.get("pretrained", True))
        return hf_model_id(towers.get("text_model") or "", pretrained, towers.get("text_arch"), seed)
    raise ValueError(f"unknown encoder.towers.backend {towers['backend']!r}; expected open_clip or data2vec")
