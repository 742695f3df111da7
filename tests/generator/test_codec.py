"""The closed-form first stage: PatchPCACodec fit, whitening, AutoencoderKL interface, save/load, pipeline."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput

from or_synth.generator import (
    ORScenePipeline,
    PatchPCACodec,
    build_autoencoder,
    check_pipeline_folder,
    downsampling_factor,
    load_pretrained_autoencoder,
    measure_scaling_factor,
    psnr,
    to_model_range,
    to_uint8,
    weights_hash,
)
from or_synth.generator import latents as latent_cache
from tests.helpers import tiny_pipeline


def scenes(count: int = 12, size: int = 32, noise: float = 2.0, seed: int = 0) -> torch.Tensor:
    """uint8 (count, 3, size, size): smooth colour fields (upsampled 4x4 noise) plus a little pixel noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 255
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    pixels = smooth + noise * torch.randn(smooth.shape, generator=generator)
    return pixels.round().clamp(0, 255).to(torch.uint8)


def reconstruct(codec: PatchPCACodec, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return codec.decode(codec.encode(to_model_range(images)).latent_dist.mode()).sample


@pytest.fixture(scope="module")
def fitted() -> PatchPCACodec:
    codec = PatchPCACodec(patch_size=4, latent_channels=12)
    codec.fit(scenes(), max_patches=None)
    return codec


def test_fit_reconstructs_and_full_components_are_exact(fitted):
    images = scenes()
    assert 0.9 < fitted.explained_variance < 1.0
    assert psnr(to_uint8(reconstruct(fitted, images)), images) > 35.0
    for whiten in (True, False):
        full = PatchPCACodec(patch_size=4, latent_channels=48, whiten=whiten)
        assert full.fit(images, max_patches=None) == pytest.approx(1.0)
        x = to_model_range(images)
        assert torch.allclose(reconstruct(full, images), x, atol=1e-5)  # an orthonormal basis: exact inverse


def test_whitened_latents_have_unit_variance_per_channel(fitted):
    with torch.no_grad():
        latents = fitted.encode(to_model_range(scenes())).latent_dist.mean  # (M, 12, 8, 8)
    per_channel = latents.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.var(1, correction=0), torch.ones(12), atol=1e-3)
    assert per_channel.mean(1).abs().max() < 1e-3
    assert measure_scaling_factor(fitted, scenes()) == pytest.approx(1.0, abs=1e-3)

    raw = PatchPCACodec(whiten=False)
    raw.fit(scenes(), max_patches=None)
    with torch.no_grad():
        variances = raw.encode(to_model_range(scenes())).latent_dist.mean.transpose(0, 1).flatten(1).var(1)
    assert variances[0] > 10 * variances[-1]  # without whitening the first components dominate


def test_autoencoder_kl_interface(fitted):
    x = to_model_range(scenes(3))
    encoded = fitted.encode(x)
    assert isinstance(encoded, AutoencoderKLOutput)
    posterior = encoded.latent_dist
    assert isinstance(posterior, DiagonalGaussianDistribution) and posterior.mean.shape == (3, 12, 8, 8)
    assert torch.equal(posterior.mode(), posterior.mean) and posterior.std.abs().max() == 0
    assert torch.equal(posterior.sample(torch.Generator().manual_seed(1)), posterior.mean)
    decoded = fitted.decode(posterior.mode())
    assert isinstance(decoded, DecoderOutput) and decoded.sample.shape == (3, 3, 32, 32)
    assert torch.equal(fitted.decode(posterior.mode(), return_dict=False)[0], decoded.sample)
    assert torch.equal(fitted(x).sample, decoded.sample)
    assert downsampling_factor(fitted) == 4 and fitted.config.sample_size == 32
    with pytest.raises(ValueError, match="not a multiple of patch_size=4"):
        fitted.encode(torch.zeros(1, 3, 30, 32))


def test_build_from_config_and_clear_errors():
    codec = build_autoencoder(
        {"kind": "pca_patch", "pretrained": None, "arch": {"patch_size": 2, "latent_channels": 6}}
    )
    assert isinstance(codec, PatchPCACodec) and downsampling_factor(codec) == 2
    with pytest.raises(RuntimeError, match="never fitted: call codec.fit"):
        codec.encode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(RuntimeError, match="never fitted"):
        codec.decode(torch.zeros(1, 6, 4, 4))
    with pytest.raises(ValueError, match="unknown autoencoder.kind='pca'"):
        build_autoencoder({"kind": "pca", "arch": {}})
    with pytest.raises(ValueError, match="latent_channels=49 must be between 1 and"):
        PatchPCACodec(latent_channels=49)
    with pytest.raises(ValueError, match="no variance"):
        PatchPCACodec().fit(torch.full((2, 3, 8, 8), 7, dtype=torch.uint8))


def test_fit_is_seeded_and_subsamples(fitted):
    images = scenes()
    first, second = PatchPCACodec(), PatchPCACodec()
    first.fit(images, max_patches=240, seed=3)
    second.fit(images, max_patches=240, seed=3)
    assert weights_hash(first) == weights_hash(second)  # same draw, same basis (signs fixed)
    other = PatchPCACodec()
    other.fit(images, max_patches=240, seed=4)
    assert weights_hash(other) != weights_hash(first)
    assert psnr(to_uint8(reconstruct(first, images)), images) > 30.0  # 20 patches per image suffice here


def test_save_load_round_trip_and_latent_cache(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "codec")
    assert (tmp_path / "codec" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_pretrained_autoencoder(tmp_path / "codec")
    assert isinstance(loaded, PatchPCACodec) and loaded.config.whiten is True
    assert weights_hash(loaded) == weights_hash(fitted)
    assert loaded.explained_variance == pytest.approx(fitted.explained_variance)
    configured = build_autoencoder({"kind": "pca_patch", "pretrained": str(tmp_path / "codec")})
    assert isinstance(configured, PatchPCACodec) and weights_hash(configured) == weights_hash(fitted)
    images = scenes(4)
    assert torch.equal(reconstruct(loaded, images), reconstruct(fitted, images))

    identity = {"split": "train"}
    cached = latent_cache.cached_latents(loaded, images, tmp_path / "cache", identity, progress=False)
    assert cached.mean.shape == (4, 12, 8, 8) and cached.std.abs().max() == 0
    refitted = PatchPCACodec()
    refitted.fit(scenes(seed=1), max_patches=None)
    moved = latent_cache.cached_latents(refitted, images, tmp_path / "cache", identity, progress=False)
    assert moved.folder != cached.folder  # the cache key covers the codec's buffers


def test_pipeline_with_the_codec_saves_reloads_and_samples(fitted, graphs, tmp_path):
    pipe = tiny_pipeline(vae=fitted)
    assert pipe.image_size == (16, 16) and pipe.latent_shape == (12, 4, 4)
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    first = pipe(graphs[:2], [1, 2], num_inference_steps=2, generator=generators, output_type="pt").images
    assert first.shape == (2, 3, 16, 16) and first.min() >= 0 and first.max() <= 1

    pipe.save_pretrained(tmp_path / "pipe")
    check_pipeline_folder(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["vae"] == ["or_synth.generator.codec", "PatchPCACodec"]
    loaded = ORScenePipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(loaded.vae, PatchPCACodec)
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    again = loaded(graphs[:2], [1, 2], num_inference_steps=2, generator=generators, output_type="pt").images
    assert torch.allclose(again, first, atol=1e-5)
