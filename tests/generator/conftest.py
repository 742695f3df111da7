"""Tiny generator components of the real architectures (AutoencoderKL or PatchPCACodec, UNet2DConditionModel,
GraphConditioner)."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler

from or_synth.encoders import build_scene_graph_encoder
from or_synth.generator import GraphConditioner, ORScenePipeline, build_unet, downsampling_factor
from tests.encoders.conftest import knee_graphs, tiny_clip_cfg

TINY_UNET = {
    "arch": {
        "block_out_channels": [16, 32],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    }
}


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )


def tiny_pipeline(layout_channels: int = 4, vae=None) -> ORScenePipeline:
    """A pipeline drawing 16 px images through ``vae`` (default: :func:`tiny_vae`, f=2, 4 latent channels)."""
    torch.manual_seed(0)
    conditioner = GraphConditioner.from_encoder(
        build_scene_graph_encoder(tiny_clip_cfg(None)), layout_channels
    )
    channels, factor = (4, 2) if vae is None else (vae.config.latent_channels, downsampling_factor(vae))
    unet = build_unet(TINY_UNET, latent_channels=channels, sample_size=16 // factor, conditioner=conditioner)
    vae = tiny_vae() if vae is None else vae  # built after the UNet: the seeded weights stay as they were
    return ORScenePipeline(unet=unet, vae=vae, scheduler=DDPMScheduler(), graph_encoder=conditioner)


@pytest.fixture
def graphs():
    return knee_graphs()


def saved_tiny_pipeline(tmp_path_factory, layout_channels: int = 4, name: str = "pipe"):
    """:func:`tiny_pipeline` saved as a pipeline folder (for the commands that take ``pipeline=DIR``)."""
    path = tmp_path_factory.mktemp("pipeline") / name
    tiny_pipeline(layout_channels=layout_channels).save_pretrained(path)
    return path
