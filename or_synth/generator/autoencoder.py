"""The first stage: diffusers ``AutoencoderKL``, pretrained or trained on the dataset, and its losses; or the
closed-form :class:`~or_synth.generator.codec.PatchPCACodec` (``kind: pca_patch``), fitted in about a second.

Images are uint8 in the data layer; the autoencoder sees floats in [-1, 1] (:mod:`~or_synth.generator.pixels`). The
latent scaling factor is measured on the training data (1 / std of the latents) and stored in the
autoencoder's own config, as diffusers does, so every later stage reads ``vae.config.scaling_factor``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from or_synth.encoders.towers import PretrainedWeightsError, looks_like_path
from or_synth.generator.codec import PatchPCACodec
from or_synth.generator.pixels import to_model_range, to_uint8

# ``autoencoder.kind`` -> the class it builds; every one has AutoencoderKL's encode/decode interface.
AUTOENCODER_KINDS: dict[str, type] = {"kl": AutoencoderKL, "pca_patch": PatchPCACodec}
FirstStage = AutoencoderKL | PatchPCACodec


def autoencoder_kind(cfg: Mapping) -> str:
    """The ``autoencoder.kind`` of a config (``kl`` when unset), checked against the known kinds."""
    kind = cfg.get("kind") or "kl"
    if kind not in AUTOENCODER_KINDS:
        raise ValueError(f"unknown autoencoder.kind={kind!r}; choose one of {', '.join(AUTOENCODER_KINDS)}")
    return kind


def build_autoencoder(cfg: Mapping) -> FirstStage:
    """The first stage from the ``autoencoder`` config group: ``kind`` ``kl`` (default) builds diffusers
    ``AutoencoderKL``, ``pca_patch`` the closed-form :class:`PatchPCACodec`.

    ``pretrained`` (a hub id or a local folder, with an optional ``subfolder``) loads weights; otherwise
    ``arch`` holds the constructor arguments of a fresh model, trained (``kl``) or fitted (``pca_patch``) by
    ``stage=vae``.

    Raises:
        PretrainedWeightsError: the weights cannot be loaded (no hub access, a missing folder); names the key.
        ValueError: an unknown ``kind``.
    """
    model_class = AUTOENCODER_KINDS[autoencoder_kind(cfg)]
    pretrained = cfg.get("pretrained")
    if pretrained:
        subfolder = cfg.get("subfolder")
        source = str(pretrained)
        hint = (
            f"Set autoencoder.pretrained to a local diffusers {model_class.__name__} folder (config.json + "
            "diffusion_pytorch_model.safetensors), or to null to train (or fit) one with stage=vae."
        )
        if looks_like_path(source):
            source = str(Path(source).expanduser())
            if not Path(source).is_dir():  # a path that is not there: never ask the hub about it
                raise PretrainedWeightsError(f"autoencoder.pretrained={pretrained!r} is not a folder. {hint}")
        try:
            return model_class.from_pretrained(source, subfolder=subfolder)
        except (OSError, ValueError) as exc:
            raise PretrainedWeightsError(
                f"cannot load the autoencoder from autoencoder.pretrained={pretrained!r}"
                f"{f' (subfolder {subfolder!r})' if subfolder else ''}: {' '.join(str(exc).split())[:300]}. {hint}"
            ) from exc
    arch = dict(cfg["arch"])
    if model_class is AutoencoderKL:
        for key in ("down_block_types", "up_block_types", "block_out_channels"):
            arch[key] = tuple(arch[key])
    return model_class(**arch)


def load_pretrained_autoencoder(folder: str | Path) -> FirstStage:
    """A saved first stage (``save_pretrained`` folder), of the class its ``config.json`` names.

    Raises:
        FileNotFoundError: no ``config.json`` in ``folder``.
        ValueError: the config names a class that is not a first stage.
    """
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} is not an autoencoder folder: config.json is missing")
    name = json.loads(config_file.read_text()).get("_class_name")
    classes = {cls.__name__: cls for cls in AUTOENCODER_KINDS.values()}
    if name not in classes:
        raise ValueError(f"{config_file} describes a {name!r}, not one of {', '.join(classes)}")
    return classes[name].from_pretrained(folder)


def downsampling_factor(vae: FirstStage) -> int:
    """Pixels per latent cell along each side: a patch codec's ``patch_size``, or for ``AutoencoderKL`` one
    halving per down block but the last."""
    patch_size = vae.config.get("patch_size")
    if patch_size:
        return int(patch_size)
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def measure_scaling_factor(vae: FirstStage, images: torch.Tensor, batch_size: int = 32) -> float:
    """1 / std of the latents (posterior samples) of ``images`` (uint8 (M, 3, H, W)); Rombach et al., §G."""
    vae.eval()
    device = vae.device  # parameters or buffers: the codec has only buffers
    latents = []
    generator = torch.Generator(device=device).manual_seed(0)
    for start in range(0, images.shape[0], batch_size):
        batch = to_model_range(images[start : start + batch_size].to(device))
        latents.append(vae.encode(batch).latent_dist.sample(generator).float().cpu())
    return float(1.0 / torch.cat(latents).std().clamp_min(1e-6))


@torch.no_grad()
def reconstruct(vae: FirstStage, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """uint8 (M, 3, H, W) -> uint8 reconstructions through the posterior mean."""
    vae.eval()
    device = vae.device  # parameters or buffers: the codec has only buffers
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = to_model_range(images[start : start + batch_size].to(device))
        out.append(to_uint8(vae.decode(vae.encode(x).latent_dist.mode()).sample).cpu())
    return torch.cat(out)


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of uint8-range images."""
    mse = (reconstruction.float() - target.float()).pow(2).mean().item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def weights_hash(module: nn.Module) -> str:
    """Content hash of a module's weights (names, shapes, dtypes and bytes), 16 hex digits."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        flat = tensor.reshape(-1)  # a 0-d tensor (a scalar buffer) cannot be viewed as bytes
        digest.update(flat.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


class AutoencoderLoss(nn.Module):
    """L1 reconstruction + KL + (1 - MS-SSIM) + a patch-adversarial term after a warm-up (MONAI's generative
    components, as in Pinaya et al.'s brain LDM); a perceptual term only when its network's weights load.

    Args:
        kl_weight, ms_ssim_weight, adversarial_weight, perceptual_weight: loss weights (0 disables a term).
        adversarial_start: steps before the discriminator joins (the reconstruction settles first).
        ms_ssim_scales: MS-SSIM levels; 64 px images allow 3 with a 5-pixel window (5 levels need 161 px).
        discriminator_channels, discriminator_layers: MONAI ``PatchDiscriminator`` size.
        perceptual_network: MONAI ``PerceptualLoss`` network type when ``perceptual_weight > 0``.
    """

    def __init__(
        self,
        *,
        kl_weight: float = 1e-6,
        ms_ssim_weight: float = 0.2,
        adversarial_weight: float = 0.01,
        adversarial_start: int = 500,
        ms_ssim_scales: int = 3,
        ms_ssim_kernel: int = 5,
        discriminator_channels: int = 32,
        discriminator_layers: int = 2,
        perceptual_weight: float = 0.0,
        perceptual_network: str = "alex",
    ) -> None:
        super().__init__()
        from monai.losses import PatchAdversarialLoss
        from monai.networks.nets import PatchDiscriminator

        self.kl_weight = kl_weight
        self.ms_ssim_weight = ms_ssim_weight
        self.adversarial_weight = adversarial_weight
        self.adversarial_start = adversarial_start
        self.ms_ssim_kernel = ms_ssim_kernel
        # MS-SSIM's standard level weights (Wang et al. 2003), the first `ms_ssim_scales` of them.
        self.ms_ssim_weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)[:ms_ssim_scales]
        self.discriminator = (
            PatchDiscriminator(
                spatial_dims=2,
                channels=discriminator_channels,
                in_channels=3,
                num_layers_d=discriminator_layers,
            )
            if adversarial_weight > 0
            else None
        )
        self.adversarial = PatchAdversarialLoss(criterion="least_squares") if adversarial_weight > 0 else None
        self.perceptual = None
        if perceptual_weight > 0:
            self.perceptual = load_perceptual_loss(perceptual_network)
        self.perceptual_weight = perceptual_weight

    def adversarial_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.adversarial_start

    def ms_ssim(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from monai.metrics.regression import compute_ms_ssim

        # compute_ms_ssim wants data in [0, data_range]; it is differentiable (plain conv ops).
        value = compute_ms_ssim(
            (reconstruction.float() + 1) / 2,
            (target.float() + 1) / 2,
            spatial_dims=2,
            data_range=1.0,
            kernel_size=self.ms_ssim_kernel,
            weights=self.ms_ssim_weights,
        )
        return value.mean()

    def generator_loss(
        self, reconstruction: torch.Tensor, target: torch.Tensor, posterior, step: int
    ) -> dict[str, torch.Tensor]:
        """The autoencoder's loss terms (``loss`` is their weighted sum); images in [-1, 1]."""
        terms = {"l1": F.l1_loss(reconstruction.float(), target.float())}
        terms["kl"] = posterior.kl().mean()
        loss = terms["l1"] + self.kl_weight * terms["kl"]
        if self.ms_ssim_weight > 0:
            terms["ms_ssim"] = self.ms_ssim(reconstruction, target)
            loss = loss + self.ms_ssim_weight * (1.0 - terms["ms_ssim"])
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(reconstruction.float(), target.float())
            loss = loss + self.perceptual_weight * terms["perceptual"]
        if self.adversarial_active(step):
            logits = self.discriminator(reconstruction.contiguous().float())[-1]
            terms["adversarial"] = self.adversarial(logits, target_is_real=True, for_discriminator=False)
            loss = loss + self.adversarial_weight * terms["adversarial"]
        terms["loss"] = loss
        return terms

    def discriminator_loss(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fake = self.discriminator(reconstruction.detach().contiguous().float())[-1]
        real = self.discriminator(target.contiguous().float())[-1]
        return 0.5 * (
            self.adversarial(fake, target_is_real=False, for_discriminator=True)
            + self.adversarial(real, target_is_real=True, for_discriminator=True)
        )


def load_perceptual_loss(network: str) -> nn.Module:
    """MONAI ``PerceptualLoss`` whose network weights come from torch hub; a clear error when they cannot."""
    from monai.losses import PerceptualLoss

    try:
        return PerceptualLoss(spatial_dims=2, network_type=network)
    except Exception as exc:  # torch hub raises URLError, HTTPError, RuntimeError... depending on the failure
        raise PretrainedWeightsError(
            f"the perceptual loss needs pretrained {network!r} weights from torch hub, which cannot be loaded "
            f"({' '.join(str(exc).split())[:200]}); set vae.loss.perceptual_weight=0 or place the weights in "
            "the torch hub cache (TORCH_HOME)"
        ) from exc
