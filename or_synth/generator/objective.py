"""The diffusion training objective beside the denoiser: what the denoiser is trained to predict, and how each
timestep's error is weighted (noise schedule and scheduler: diffusers ``DDPMScheduler``).

The target follows the scheduler's ``prediction_type``: the noise (``epsilon``), the velocity
``v = sqrt(alpha_bar) * noise - sqrt(1 - alpha_bar) * x0`` (``v_prediction``; Salimans & Ho 2022), or the clean
latent (``sample``). The optional min-SNR-gamma weighting (Hang et al., "Efficient Diffusion Training via Min-SNR
Weighting Strategy", ICCV 2023) clamps the x0-space weight ``SNR(t)`` at ``gamma`` and expresses it for the target
predicted: an epsilon error is an x0 error times ``1 / SNR``, a v error one times ``1 / (SNR + 1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _prediction_type(scheduler: DDPMScheduler) -> str:
    kind = scheduler.config.prediction_type
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"scheduler.prediction_type={kind!r}: use epsilon, v_prediction or sample")
    return kind


def training_target(
    scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the denoiser predicts for ``noisy = scheduler.add_noise(clean, noise, timesteps)``.

    Args:
        scheduler: the training noise schedule; its ``config.prediction_type`` picks the target.
        clean: (B, C, h, w) clean latents x0.
        noise: (B, C, h, w) the Gaussian noise added.
        timesteps: (B,) integer timesteps.

    Returns:
        (B, C, h, w): ``noise`` (epsilon), ``scheduler.get_velocity(clean, noise, timesteps)`` (v_prediction) or
        ``clean`` (sample).

    Raises:
        ValueError: another prediction type.
    """
    kind = _prediction_type(scheduler)
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    return clean


def min_snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, snr_gamma: float) -> torch.Tensor:
    """(B,) min-SNR-gamma loss weights of ``timesteps`` for the scheduler's prediction type.

    ``min(SNR, gamma) / SNR`` for epsilon, ``min(SNR, gamma) / (SNR + 1)`` for v_prediction and ``min(SNR,
    gamma)`` for sample, with ``SNR(t) = alpha_bar_t / (1 - alpha_bar_t)`` (diffusers ``compute_snr``).
    """
    kind = _prediction_type(scheduler)
    snr = compute_snr(scheduler, timesteps)
    weight = torch.clamp(snr, max=snr_gamma)
    if kind == "v_prediction":
        return weight / (snr + 1)
    if kind == "epsilon":
        return weight / snr
    return weight


def diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler: DDPMScheduler,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """The denoiser's loss: MSE, or with ``snr_gamma`` the mean over the batch of each item's MSE times its
    :func:`min_snr_weights`.

    Args:
        prediction, target: (B, C, h, w) the denoiser's output and :func:`training_target`.
        timesteps: (B,) the items' timesteps.
        scheduler: the training noise schedule.
        snr_gamma: gamma of the min-SNR weighting (5 in the paper); None: plain MSE.

    Returns:
        The scalar loss.
    """
    if snr_gamma is None:
        return F.mse_loss(prediction, target)
    weight = min_snr_weights(scheduler, timesteps, snr_gamma)
    per_item = F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3))
    return (per_item * weight).mean()
