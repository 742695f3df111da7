"""How a scene graph (and optionally its layout) enters the denoiser, and classifier-free-guidance dropout.

:class:`GraphConditioner` wraps the :class:`~or_synth.encoders.SceneGraphEncoder` as a diffusers
``ModelMixin`` (so it saves and loads as a pipeline component) and produces, per image:

- ``tokens`` / ``mask``: node and triple tokens for cross-attention (SGDiff; the null graph when dropped);
- ``class_embedding``: the pooled graph token next to the camera-view embedding, for the UNet's projection
  class embedding (the view survives when the graph is dropped);
- ``layout``: SpaText's spatial map (Avrahami et al., CVPR 2023, §3.1): every node's instance mask filled with
  that node's label embedding (here a learned projection of the frozen CLIP / data2vec label embedding),
  pooled to the latent grid and concatenated to the latent. Zeros where the layout is absent or dropped.

Graph and layout are dropped independently (``force_drop`` semantics of DiT's ``LabelEmbedder``), so the
pipeline can apply a separate guidance scale to each (SpaText's multi-conditional guidance).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_batch

from or_synth.encoders.graph_encoder import GraphEncoderConfig, SceneGraphEncoder


@dataclass
class Conditioning:
    """Denoiser inputs for B images.

    Attributes:
        tokens: (B, L, D) cross-attention tokens. mask: (B, L) bool, True at real tokens.
        class_embedding: (B, 2D) pooled graph token and view embedding.
        layout: (B, C_layout, h, w) layout map on the latent grid, or None when the model has no layout input.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    class_embedding: torch.Tensor
    layout: torch.Tensor | None

    def cat(self, *others: Conditioning) -> Conditioning:
        """Stack several conditionings along the batch (one denoiser call for all guidance passes)."""
        items = (self, *others)
        length = max(c.tokens.shape[1] for c in items)
        tokens = torch.cat([F.pad(c.tokens, (0, 0, 0, length - c.tokens.shape[1])) for c in items])
        mask = torch.cat([F.pad(c.mask, (0, length - c.mask.shape[1])) for c in items])
        layout = None if self.layout is None else torch.cat([c.layout for c in items])
        return Conditioning(tokens, mask, torch.cat([c.class_embedding for c in items]), layout)


def as_batch(graphs: Data | Batch | list[Data]) -> Batch:
    if isinstance(graphs, list | tuple):
        return Batch.from_data_list(list(graphs))
    return graphs if isinstance(graphs, Batch) else Batch.from_data_list([graphs])


class GraphConditioner(ModelMixin, ConfigMixin):
    """Scene-graph encoder + layout map, saved as the pipeline's ``graph_encoder`` component.

    Args:
        encoder_config: :class:`GraphEncoderConfig` as a dict (label names, sizes).
        layout_channels: channels of the layout map (0: the model takes no layout).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, encoder_config: dict, layout_channels: int = 0) -> None:
        super().__init__()
        config = GraphEncoderConfig(**encoder_config)
        # Label tables are filled by the saved weights (or by from_encoder); their shapes come from the config.
        self.encoder = SceneGraphEncoder.from_config(config)
        self.layout_proj = nn.Linear(config.text_dim, layout_channels) if layout_channels > 0 else None

    @classmethod
    def from_encoder(cls, encoder: SceneGraphEncoder, layout_channels: int = 0) -> GraphConditioner:
        """A conditioner around an existing (e.g. ``align``-adapted) encoder, weights copied."""
        conditioner = cls(asdict(encoder.config), layout_channels)
        conditioner.encoder.load_state_dict(encoder.state_dict())
        return conditioner

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def layout_channels(self) -> int:
        return self.config.layout_channels

    @property
    def class_embedding_dim(self) -> int:
        return 2 * self.encoder.dim

    def forward(
        self,
        graphs: Data | Batch | list[Data],
        views: torch.Tensor,
        *,
        masks: torch.Tensor | None = None,
        latent_size: tuple[int, int] | None = None,
        drop_graph: torch.Tensor | bool = False,
        drop_layout: torch.Tensor | bool = False,
        layout_graphs: Data | Batch | list[Data] | None = None,
    ) -> Conditioning:
        """Conditioning for a batch of B graphs, each seen from ``views`` (B,) camera ids.

        Args:
            masks: (B, H, W) uint8 instance masks (node index + 1; 0 and values past the graph's nodes are
                background). None: no layout (zeros), as for real 4D-OR graphs.
            latent_size: (h, w) of the latent grid; required when the model has a layout input.
            drop_graph / drop_layout: (B,) bool or one bool: replace the graph by the learned null graph /
                the layout by zeros (classifier-free guidance; training draws these at random).
            layout_graphs: the graphs whose nodes the masks label, when they are not ``graphs`` (the conflict
                control: scan i's layout, drawn with i's node labels, beside scan j's graph tokens).
        """
        graphs = as_batch(graphs)
        device = self.encoder.node_text.device
        views = torch.as_tensor(views, device=device).long().reshape(-1)
        encoding = self.encoder(graphs.to(device), views, force_drop=drop_graph)
        view_embedding = self.encoder.view_embedding(views)  # (B, D)
        class_embedding = torch.cat([encoding.graph_token, view_embedding], dim=-1)
        layout = None
        if self.layout_proj is not None:
            if latent_size is None:
                raise ValueError("this model has a layout input: pass latent_size=(h, w)")
            if layout_graphs is None:
                layout = self.layout_map(graphs, masks, latent_size, encoding.node_batch)
            else:
                layout_graphs = as_batch(layout_graphs).to(device)
                if layout_graphs.num_graphs != graphs.num_graphs:
                    raise ValueError(
                        f"{graphs.num_graphs} graphs but {layout_graphs.num_graphs} layout graphs"
                    )
                layout = self.layout_map(layout_graphs, masks, latent_size, layout_graphs.batch)
            keep = ~torch.as_tensor(drop_layout, device=device).bool().expand(views.shape[0])
            layout = layout * keep[:, None, None, None].to(layout.dtype)
        return Conditioning(encoding.tokens, encoding.mask, class_embedding, layout)

    def layout_map(
        self,
        graphs: Batch,
        masks: torch.Tensor | None,
        latent_size: tuple[int, int],
        node_batch: torch.Tensor,
    ) -> torch.Tensor:
        """(B, C, h, w): for each latent cell, the label embeddings of the nodes covering it, weighted by the
        fraction of the cell each covers (area pooling of the one-hot instance masks)."""
        num_graphs = int(node_batch.max()) + 1 if node_batch.numel() else 0
        device = self.encoder.node_text.device
        h, w = latent_size
        channels = self.config.layout_channels
        if masks is None:
            return torch.zeros(num_graphs, channels, h, w, device=device, dtype=self.layout_proj.weight.dtype)
        labels = self.encoder.node_labels_of(graphs).to(device)
        node_embedding = self.layout_proj(self.encoder.node_text[labels])  # (N, C)
        dense, present = to_dense_batch(node_embedding, node_batch, batch_size=num_graphs)  # (B, K, C)
        k = dense.shape[1]
        masks = masks.to(device).long()
        masks = torch.where((masks >= 1) & (masks <= k), masks, torch.zeros_like(masks))
        one_hot = F.one_hot(masks, k + 1)[..., 1:].permute(0, 3, 1, 2).to(dense.dtype)  # (B, K, H, W)
        coverage = F.interpolate(one_hot, size=(h, w), mode="area")  # (B, K, h, w)
        coverage = coverage * present[:, :, None, None].to(coverage.dtype)
        return torch.einsum("bkhw,bkc->bchw", coverage, dense)

    def draw_dropout(
        self, batch_size: int, graph_prob: float, layout_prob: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Independent training-time drops of graph and layout (CFG), from ``generator``."""
        drop_graph = torch.rand(batch_size, generator=generator) < graph_prob
        drop_layout = torch.rand(batch_size, generator=generator) < layout_prob
        return drop_graph, drop_layout
