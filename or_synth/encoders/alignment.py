"""OR domain adaptation of the graph encoder: graph-image contrastive alignment and masked-graph modelling.

Both objectives follow SGDiff's graph pre-training (Yang et al., 2022, §3.2): the pooled graph embedding is
pulled towards the image embedding of its paired OR image (InfoNCE in both directions, CLIP-style learnable
temperature), and masked predicates / node labels are predicted from the rest of the graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from or_synth.encoders.graph_encoder import SceneGraphEncoder
from or_synth.encoders.image_towers import ImageTower


def info_nce(graph_emb: torch.Tensor, image_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): row i of each (B, E) L2-normalised batch is the positive pair."""
    logits = logit_scale * graph_emb @ image_emb.t()  # (B, B)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def retrieval_recall(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    targets: torch.Tensor | None = None,
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Recall@k of query -> gallery retrieval by cosine similarity.

    Args:
        queries: (Q, E) L2-normalised. gallery: (G, E) L2-normalised.
        targets: (Q,) index of each query's true gallery item (default: query i -> item i).

    Returns:
        ``{"R@1": ..., "R@5": ...}`` as fractions; ties are broken against the query (pessimistic).
    """
    targets = torch.arange(queries.shape[0]) if targets is None else targets
    sims = queries.float() @ gallery.float().t()  # (Q, G)
    true = sims.gather(1, targets.view(-1, 1))
    rank = (sims >= true).sum(1) - 1  # items scoring at least as high as the true one, excluding itself
    return {f"R@{k}": float((rank < k).float().mean()) for k in ks}


class GraphImageAligner(nn.Module):
    """The graph encoder, an image tower and the heads of the two adaptation objectives.

    Args:
        encoder: the scene-graph encoder being adapted.
        image_tower: image embeddings of the paired OR images (frozen, or last blocks unfrozen).
        embed_dim: width of the joint graph-image space.
        init_temperature: initial InfoNCE temperature (CLIP: 0.07); learnable, logit scale capped at 100.
    """

    def __init__(
        self,
        encoder: SceneGraphEncoder,
        image_tower: ImageTower,
        embed_dim: int = 256,
        init_temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.image_tower = image_tower
        self.graph_proj = nn.Linear(encoder.dim, embed_dim)
        self.image_proj = nn.Linear(image_tower.dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.predicate_head = nn.Linear(encoder.dim, encoder.num_predicates)
        self.node_head = nn.Linear(encoder.dim, encoder.num_node_labels)

    # --- embeddings -------------------------------------------------------------------------------------
    def graph_embedding(self, graph: Data, views: torch.Tensor | None = None) -> torch.Tensor:
        """(B, E) L2-normalised pooled graph(+view) embedding; never the null graph."""
        encoding = self.encoder(graph, views, force_drop=False)
        return F.normalize(self.graph_proj(encoding.graph_token).float(), dim=-1)

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """(B, E) L2-normalised embedding of uint8 (B, 3, H, W) images."""
        return F.normalize(self.image_proj(self.image_tower(images)).float(), dim=-1)

    # --- objectives -------------------------------------------------------------------------------------
    def contrastive_loss(self, graph: Data, views: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        g = self.graph_embedding(graph, views)
        i = self.image_embedding(images)
        return info_nce(g, i, self.logit_scale.clamp(max=math.log(100.0)).exp())

    def masked_graph_loss(
        self,
        graph: Data,
        views: torch.Tensor | None = None,
        *,
        mask_prob: float = 0.25,
        mask_nodes: bool = True,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Hide a random ``mask_prob`` of predicates (at least one per batch when there are edges) and of
        node labels, predict them from the rest of the graph.

        Returns:
            ``loss`` (sum of the predicate and node cross-entropies), ``predicate_acc``, ``node_acc``.
        """
        labels = self.encoder.node_labels_of(graph)
        device = self.encoder.node_text.device
        num_edges = graph.edge_attr.shape[0]
        predicate_mask = torch.rand(num_edges, generator=generator) < mask_prob
        if num_edges and not predicate_mask.any():
            predicate_mask[torch.randint(num_edges, (1,), generator=generator)] = True
        node_mask = torch.rand(labels.shape[0], generator=generator) < (mask_prob if mask_nodes else 0.0)
        predicate_mask, node_mask = predicate_mask.to(device), node_mask.to(device)
        encoding = self.encoder(
            graph, views, force_drop=False, node_mask=node_mask, predicate_mask=predicate_mask
        )
        zero = encoding.graph_token.sum() * 0.0
        out = {"loss": zero, "predicate_acc": zero.detach(), "node_acc": zero.detach()}
        if predicate_mask.any():
            logits = self.predicate_head(encoding.triple_tokens[predicate_mask]).float()
            target = graph.edge_attr.to(device)[predicate_mask]
            out["loss"] = out["loss"] + F.cross_entropy(logits, target)
            out["predicate_acc"] = (logits.argmax(-1) == target).float().mean().detach()
        if node_mask.any():
            logits = self.node_head(encoding.node_tokens[node_mask]).float()
            target = labels.to(device)[node_mask]
            out["loss"] = out["loss"] + F.cross_entropy(logits, target)
            out["node_acc"] = (logits.argmax(-1) == target).float().mean().detach()
        return out

    @torch.no_grad()
    def predict_masked_predicates(self, graph: Data, predicate_mask: torch.Tensor) -> torch.Tensor:
        """Predicted predicate ids (M,) of the triples hidden by ``predicate_mask`` (E,)."""
        encoding = self.encoder(graph, None, force_drop=False, predicate_mask=predicate_mask)
        return self.predicate_head(encoding.triple_tokens[predicate_mask]).argmax(-1)
