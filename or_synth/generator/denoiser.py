"""The denoiser: diffusers ``UNet2DConditionModel`` conditioned on a scene graph.

The graph's node and triple tokens enter through cross-attention (with their mask), the pooled graph token and
the camera view through the UNet's projection class embedding, and the optional layout map is concatenated to
the noisy latent (SpaText). :class:`GraphConditionedDenoiser` holds the UNet and the
:class:`~or_synth.generator.conditioning.GraphConditioner` together so that training, EMA and DDP see one
module; the pipeline stores them as two components.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from diffusers import UNet2DConditionModel
from torch import nn
from torch_geometric.data import Batch

from or_synth.generator.conditioning import Conditioning, GraphConditioner


def build_unet(
    denoiser_cfg: Mapping, *, latent_channels: int, sample_size: int, conditioner: GraphConditioner
) -> UNet2DConditionModel:
    """A ``UNet2DConditionModel`` of the named size (``configs/denoiser/{tiny,cpu,base,large}.yaml``)."""
    arch = dict(denoiser_cfg["arch"])
    for key in ("down_block_types", "up_block_types", "block_out_channels"):
        arch[key] = tuple(arch[key])
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels + conditioner.layout_channels,
        out_channels=latent_channels,
        cross_attention_dim=conditioner.dim,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=conditioner.class_embedding_dim,
        **arch,
    )


def denoise(unet: UNet2DConditionModel, latents: torch.Tensor, timesteps, cond: Conditioning) -> torch.Tensor:
    """The UNet's prediction (noise, or v) for noisy ``latents`` (B, C, h, w) under ``cond``."""
    sample = latents if cond.layout is None else torch.cat([latents, cond.layout.to(latents.dtype)], dim=1)
    return unet(
        sample,
        timesteps,
        encoder_hidden_states=cond.tokens.to(latents.dtype),
        encoder_attention_mask=cond.mask,
        class_labels=cond.class_embedding.to(latents.dtype),
    ).sample


class GraphConditionedDenoiser(nn.Module):
    """UNet + graph conditioner, trained jointly (SGDiff) or with the conditioner frozen."""

    def __init__(self, unet: UNet2DConditionModel, conditioner: GraphConditioner) -> None:
        super().__init__()
        self.unet = unet
        self.conditioner = conditioner

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        graphs: Batch,
        views: torch.Tensor,
        *,
        masks: torch.Tensor | None = None,
        drop_graph: torch.Tensor | bool = False,
        drop_layout: torch.Tensor | bool = False,
    ) -> torch.Tensor:
        cond = self.conditioner(
            graphs,
            views,
            masks=masks,
            latent_size=tuple(noisy_latents.shape[-2:]),
            drop_graph=drop_graph,
            drop_layout=drop_layout,
        )
        return denoise(self.unet, noisy_latents, timesteps, cond)
