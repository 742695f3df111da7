"""Build the encoder stack from the ``encoder`` config group (``configs/encoder/{clip,data2vec}.yaml``)."""

from __future__ import annotations

from collections.abc import Mapping

from or_synth.data.vocabulary import Vocabulary
from or_synth.encoders.alignment import GraphImageAligner
from or_synth.encoders.graph_encoder import GraphEncoderConfig, SceneGraphEncoder
from or_synth.encoders.image_towers import build_image_tower
from or_synth.encoders.label_embeddings import LabelEmbeddings, embed_labels
from or_synth.encoders.prompts import LabelPrompts, node_label_lookup
from or_synth.encoders.text_towers import (
    build_sentence_transformer,
    build_text_tower,
    label_text_spec,
    sentence_transformer_model_id,
    text_tower_model_id,
)


def build_label_embeddings(encoder_cfg: Mapping, vocabulary: Vocabulary | None = None) -> LabelEmbeddings:
    """Prompts of ``vocabulary`` embedded by the configured text tower (cached under ``cache_dir``)."""
    prompts = LabelPrompts.from_vocabulary(vocabulary)
    label_text = label_text_spec(encoder_cfg.get("label_text"))
    if (
        label_text is not None
    ):  # label embeddings from another text model than the towers' (the image tower stays)
        return embed_labels(
            prompts,
            lambda: build_sentence_transformer(label_text),
            model_id=sentence_transformer_model_id(label_text.get("model")),
            cache_dir=encoder_cfg.get("cache_dir"),
        )
    towers = encoder_cfg["towers"]
    return embed_labels(
        prompts,
        lambda: build_text_tower(towers, prompts.texts),
        model_id=text_tower_model_id(towers),
        cache_dir=encoder_cfg.get("cache_dir"),
    )


def build_scene_graph_encoder(
    encoder_cfg: Mapping, vocabulary: Vocabulary | None = None
) -> SceneGraphEncoder:
    """A freshly initialised :class:`SceneGraphEncoder` on top of the configured label embeddings."""
    vocabulary = vocabulary or Vocabulary()
    labels = build_label_embeddings(encoder_cfg, vocabulary)
    graph = dict(encoder_cfg.get("graph", {}))
    config = GraphEncoderConfig(
        text_dim=labels.dim,
        node_labels=list(labels.prompts.node_labels),
        predicates=list(labels.prompts.predicates),
        object_classes=list(vocabulary.object_classes),
        roles=list(vocabulary.roles),
        text_model_id=labels.model_id,
        **graph,
    )
    lookup = node_label_lookup(vocabulary, labels.prompts.node_labels)
    return SceneGraphEncoder(config, labels.node, labels.predicate, lookup)


def build_aligner(
    encoder_cfg: Mapping, vocabulary: Vocabulary | None = None, *, embed_dim: int = 256
) -> GraphImageAligner:
    """Graph encoder + image tower (``encoder.image_tower.trainable_blocks``) + adaptation heads."""
    encoder = build_scene_graph_encoder(encoder_cfg, vocabulary)
    image_cfg = encoder_cfg.get("image_tower", {}) or {}
    tower = build_image_tower(encoder_cfg["towers"], int(image_cfg.get("trainable_blocks", 0)))
    return GraphImageAligner(encoder, tower, embed_dim=embed_dim)
