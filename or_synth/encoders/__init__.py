"""Scene-graph encoders: label-text embeddings (CLIP / data2vec), the PyG graph network, and its OR
domain adaptation (graph-image contrastive alignment, masked-graph modelling).

Imports only :mod:`or_synth.data` from the package; the generator imports this one.
"""

from or_synth.encoders.alignment import GraphImageAligner, info_nce, retrieval_recall
from or_synth.encoders.build import build_aligner, build_label_embeddings, build_scene_graph_encoder
from or_synth.encoders.graph_encoder import (
    GraphEncoderConfig,
    GraphEncoding,
    GraphTripleConv,
    SceneGraphEncoder,
)
from or_synth.encoders.image_towers import ImageTower, build_image_tower
from or_synth.encoders.label_embeddings import LabelEmbeddings, embed_labels
from or_synth.encoders.prompts import LabelPrompts, node_label_lookup
from or_synth.encoders.text_towers import TextTower, build_text_tower, text_tower_model_id
from or_synth.encoders.towers import PretrainedWeightsError, build_prompt_tokenizer

__all__ = [
    "GraphEncoderConfig",
    "GraphEncoding",
    "GraphImageAligner",
    "GraphTripleConv",
    "ImageTower",
    "LabelEmbeddings",
    "LabelPrompts",
    "PretrainedWeightsError",
    "SceneGraphEncoder",
    "TextTower",
    "build_aligner",
    "build_image_tower",
    "build_label_embeddings",
    "build_prompt_tokenizer",
    "build_scene_graph_encoder",
    "build_text_tower",
    "embed_labels",
    "info_nce",
    "node_label_lookup",
    "retrieval_recall",
    "text_tower_model_id",
]
