"""Label-embedding tables: every node-label and predicate prompt embedded once, cached on disk.

The cache key is (text-tower model id, prompt digest): a changed prompt, model or checkpoint file gives a new
file, and a hit never loads the text tower at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from or_synth.data.io import atomic_path
from or_synth.encoders.prompts import LabelPrompts
from or_synth.encoders.text_towers import TextTower

log = logging.getLogger(__name__)


@dataclass
class LabelEmbeddings:
    """Text embeddings of the node labels and predicates of one vocabulary.

    Attributes:
        prompts: the prompts that were embedded.
        model_id: the text tower that embedded them.
        node: (num_node_labels, D) float32.
        predicate: (num_predicates, D) float32.
        cache_file: where the table was read from / written to (None without a cache dir).
        cache_hit: whether it came from the cache.
    """

    prompts: LabelPrompts
    model_id: str
    node: torch.Tensor
    predicate: torch.Tensor
    cache_file: Path | None = None
    cache_hit: bool = False

    @property
    def dim(self) -> int:
        return int(self.node.shape[-1])


def cache_key(model_id: str, prompts: LabelPrompts) -> str:
    """sha256 over the model id and the prompt digest."""
    return hashlib.sha256(f"{model_id}\n{prompts.digest()}".encode()).hexdigest()


def cache_path(cache_dir: str | Path, model_id: str, prompts: LabelPrompts) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id.split(":")[0] + "-" + model_id.split(":")[1])[:60]
    return Path(cache_dir).expanduser() / f"{slug}-{cache_key(model_id, prompts)[:16]}.safetensors"


def embed_labels(
    prompts: LabelPrompts,
    tower: TextTower | Callable[[], TextTower],
    *,
    model_id: str | None = None,
    cache_dir: str | Path | None = None,
) -> LabelEmbeddings:
    """Embed all prompts with ``tower``, or read them from ``cache_dir`` when already embedded.

    Args:
        prompts: node-label and predicate prompts.
        tower: a text tower, or a zero-argument factory so a cache hit never builds the tower. With a
            factory, pass ``model_id`` (known from the config) to look the cache up first.
        model_id: the tower's model id; defaults to ``tower.model_id``.
        cache_dir: folder of cached tables (safetensors); None disables caching.
    """
    if model_id is None:
        if not isinstance(tower, TextTower):
            raise ValueError("embed_labels: pass model_id when tower is a factory")
        model_id = tower.model_id
    path = cache_path(cache_dir, model_id, prompts) if cache_dir is not None else None
    if path is not None and path.is_file():
        tensors = load_file(str(path))
        log.info("label embeddings: cache hit %s", path)
        return LabelEmbeddings(prompts, model_id, tensors["node"], tensors["predicate"], path, True)

    text_tower = tower if isinstance(tower, TextTower) else tower()
    if text_tower.model_id != model_id:
        raise ValueError(f"tower model id {text_tower.model_id!r} != expected {model_id!r}")
    embeddings = text_tower.encode(prompts.texts)  # (num_node_labels + num_predicates, D)
    n = len(prompts.node_prompts)
    node, predicate = embeddings[:n].contiguous(), embeddings[n:].contiguous()
    if path is not None:
        metadata = {"model_id": model_id, "prompts": json.dumps(prompts.texts), "digest": prompts.digest()}
        with atomic_path(path) as tmp:  # a concurrent reader never sees half a file
            save_file({"node": node, "predicate": predicate}, str(tmp), metadata=metadata)
        log.info("label embeddings: wrote %s", path)
    return LabelEmbeddings(prompts, model_id, node, predicate, path, False)
