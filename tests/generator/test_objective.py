"""The diffusion objective: targets against diffusers' own scheduler, the min-SNR weights of each prediction type
against their closed form (Hang et al. 2023, Eq. 9 and its epsilon / v forms), and where the weighting is plain
MSE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from or_synth.generator import diffusion_loss, min_snr_weights, training_target


def _scheduler(kind: str) -> DDPMScheduler:
    return DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type=kind
    )


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(4, 3, 5, 5, generator=generator)
    noise = torch.randn(4, 3, 5, 5, generator=generator)
    timesteps = torch.tensor([0, 10, 500, 999])
    return clean, noise, timesteps


def _snr(scheduler: DDPMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    alpha_bar = scheduler.alphas_cumprod[timesteps]
    return alpha_bar / (1 - alpha_bar)


def test_targets_are_the_noise_the_velocity_or_the_clean_latent(batch):
    clean, noise, timesteps = batch
    assert torch.equal(training_target(_scheduler("epsilon"), clean, noise, timesteps), noise)
    assert torch.equal(training_target(_scheduler("sample"), clean, noise, timesteps), clean)
    v_scheduler = _scheduler("v_prediction")
    velocity = training_target(v_scheduler, clean, noise, timesteps)
    assert torch.equal(velocity, v_scheduler.get_velocity(clean, noise, timesteps))
    alpha_bar = v_scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)  # v = sqrt(a) eps - sqrt(1 - a) x0
    assert torch.allclose(velocity, alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * clean, atol=1e-6)


def test_unknown_prediction_types_are_refused(batch):
    clean, noise, timesteps = batch
    scheduler = _scheduler("epsilon")
    scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="prediction_type='flow': use epsilon, v_prediction or sample"):
        training_target(scheduler, clean, noise, timesteps)
    with pytest.raises(ValueError, match="prediction_type='flow'"):
        min_snr_weights(scheduler, timesteps, 5.0)


@pytest.mark.parametrize(
    ("kind", "closed_form"),
    [
        ("epsilon", lambda snr, gamma: torch.minimum(snr, torch.tensor(gamma)) / snr),
        ("v_prediction", lambda snr, gamma: torch.minimum(snr, torch.tensor(gamma)) / (snr + 1)),
        ("sample", lambda snr, gamma: torch.minimum(snr, torch.tensor(gamma))),
    ],
)
def test_min_snr_weights_follow_the_closed_form_of_each_prediction_type(batch, kind, closed_form):
    _, _, timesteps = batch
    scheduler = _scheduler(kind)
    snr = _snr(scheduler, timesteps)
    assert snr[0] > 5.0 > snr[-1]  # the clamp is active at t=0 and not at t=999
    weights = min_snr_weights(scheduler, timesteps, 5.0)
    assert weights.shape == (4,) and torch.allclose(weights, closed_form(snr, 5.0), rtol=1e-5)


def test_epsilon_weights_are_one_below_gamma_and_v_weights_are_gamma_over_snr_plus_one_above_it():
    scheduler = _scheduler("epsilon")
    high_noise = torch.tensor([900, 999])  # SNR far below 5
    assert torch.allclose(min_snr_weights(scheduler, high_noise, 5.0), torch.ones(2))
    low_noise = torch.tensor([0, 1])  # SNR far above 5
    snr = _snr(_scheduler("v_prediction"), low_noise)
    assert torch.allclose(min_snr_weights(_scheduler("v_prediction"), low_noise, 5.0), 5.0 / (snr + 1))


def test_the_loss_is_plain_mse_without_gamma_and_for_epsilon_when_gamma_exceeds_every_snr(batch):
    clean, noise, timesteps = batch
    prediction = noise + 0.1 * clean
    for kind in ("epsilon", "v_prediction", "sample"):
        scheduler = _scheduler(kind)
        target = training_target(scheduler, clean, noise, timesteps)
        assert torch.equal(
            diffusion_loss(prediction, target, timesteps, scheduler), F.mse_loss(prediction, target)
        )
    scheduler = _scheduler("epsilon")
    gamma = float(_snr(scheduler, timesteps).max()) * 2  # min(SNR, gamma) / SNR = 1 everywhere
    weighted = diffusion_loss(prediction, noise, timesteps, scheduler, gamma)
    assert weighted == pytest.approx(F.mse_loss(prediction, noise).item(), rel=1e-6)


def test_the_weighted_loss_is_the_mean_of_each_items_mse_times_its_weight(batch):
    clean, noise, timesteps = batch
    scheduler = _scheduler("v_prediction")
    target = training_target(scheduler, clean, noise, timesteps)
    prediction = torch.zeros_like(target)
    per_item = target.pow(2).mean(dim=(1, 2, 3))
    expected = (per_item * min_snr_weights(scheduler, timesteps, 5.0)).mean()
    assert diffusion_loss(prediction, target, timesteps, scheduler, 5.0) == pytest.approx(
        expected.item(), rel=1e-6
    )
