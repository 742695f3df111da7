"""The first stage: pretrained loading errors, losses, scaling factor, the latent cache."""

from __future__ import annotations

import pytest
import torch

from or_synth.encoders import PretrainedWeightsError
from or_synth.generator import AutoencoderLoss, build_autoencoder, measure_scaling_factor, to_model_range
from or_synth.generator import latents as latent_cache
from tests.helpers import tiny_vae


def test_unloadable_pretrained_autoencoder_is_a_clear_error(tmp_path):
    with pytest.raises(
        PretrainedWeightsError, match="autoencoder.pretrained=.*is not a folder. Set autoencoder.pretrained"
    ):
        build_autoencoder({"pretrained": str(tmp_path / "no-such-vae"), "arch": None})


def test_loss_terms_and_adversarial_warmup():
    torch.manual_seed(0)
    vae = tiny_vae()
    loss = AutoencoderLoss(adversarial_start=2, discriminator_channels=8, ms_ssim_scales=2, ms_ssim_kernel=3)
    images = to_model_range(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8))
    posterior = vae.encode(images).latent_dist
    reconstruction = vae.decode(posterior.sample()).sample
    early = loss.generator_loss(reconstruction, images, posterior, step=0)
    assert set(early) == {"l1", "kl", "ms_ssim", "loss"} and torch.isfinite(early["loss"])
    late = loss.generator_loss(reconstruction, images, posterior, step=2)
    assert "adversarial" in late
    late["loss"].backward()
    assert all(p.grad is not None for p in vae.decoder.parameters() if p.requires_grad)
    assert torch.isfinite(loss.discriminator_loss(reconstruction, images))


def test_scaling_factor_is_one_over_latent_std():
    torch.manual_seed(0)
    vae = tiny_vae()
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    scale = measure_scaling_factor(vae, images)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        std = vae.encode(to_model_range(images)).latent_dist.sample(generator).std()
    assert scale == pytest.approx(1 / float(std), rel=1e-4)


def test_latent_cache_is_read_once_and_never_stale(tmp_path, monkeypatch):
    torch.manual_seed(0)
    vae = tiny_vae()
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    identity = {"split": "train", "cameras": [1]}
    first = latent_cache.cached_latents(vae, images, tmp_path, identity, progress=False)
    assert (first.folder / "meta.json").is_file() and first.mean.shape == (5, 4, 8, 8)

    def no_encoding(*args, **kwargs):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(latent_cache, "encode_views", no_encoding)
    again = latent_cache.cached_latents(vae, images, tmp_path, identity, progress=False)
    assert torch.equal(again.mean, first.mean) and again.folder == first.folder
    monkeypatch.undo()

    with torch.no_grad():  # a retrained autoencoder gets its own folder
        next(vae.parameters()).add_(0.1)
    changed = latent_cache.cached_latents(vae, images, tmp_path, identity, progress=False)
    assert changed.folder != first.folder and not torch.equal(changed.mean, first.mean)
    other_data = latent_cache.cached_latents(
        vae, images, tmp_path, {**identity, "cameras": [2]}, progress=False
    )
    assert other_data.folder != changed.folder
    (changed.folder / "meta.json").unlink()  # an interrupted write is rebuilt, not read
    rebuilt = latent_cache.cached_latents(vae, images, tmp_path, identity, progress=False)
    assert torch.equal(rebuilt.mean, changed.mean)
