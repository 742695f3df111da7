"""Stage ``vae``: the first stage of the latent diffusion model.

With ``autoencoder.pretrained`` set, the stage loads those weights, measures the latent scaling factor on the
training images and saves the autoencoder. With ``autoencoder.kind=pca_patch`` it fits the closed-form
:class:`~or_synth.generator.codec.PatchPCACodec` on the training views (no optimisation loop, about a
second). Otherwise it trains ``AutoencoderKL`` on single camera views of the training split: L1 + KL +
(1 - MS-SSIM), and a patch-adversarial term after a warm-up (MONAI); resumable exactly, and Ctrl-C saves a
checkpoint and stops (:class:`~or_synth.training.loop.TrainingLoop`). Writes ``<run_dir>/autoencoder``
(diffusers folder; ``config.scaling_factor`` = 1 / std of the training latents).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from diffusers.optimization import get_scheduler
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn

from or_synth.data.views import load_views
from or_synth.generator.autoencoder import (
    AutoencoderLoss,
    FirstStage,
    autoencoder_kind,
    build_autoencoder,
    downsampling_factor,
    measure_scaling_factor,
    psnr,
    reconstruct,
    to_model_range,
)
from or_synth.generator.codec import PatchPCACodec
from or_synth.reports.grids import save_image_atomic
from or_synth.training.batches import build_dataset, epoch_batch, step_generator
from or_synth.training.checkpoints import reached_step, resume_from_checkpoint, save_pretrained_atomic
from or_synth.training.devices import make_accelerator
from or_synth.training.logs import write_metrics
from or_synth.training.loop import NonFiniteGuard, TrainingLoop, check_divisible
from or_synth.training.record import RunRecord, open_run

log = logging.getLogger(__name__)

AUTOENCODER_DIR = "autoencoder"


def trains(cfg: DictConfig) -> bool:
    """Whether the stage runs an optimisation loop: not for pretrained weights, nor for the codec."""
    return not cfg.autoencoder.pretrained and autoencoder_kind(cfg.autoencoder) == "kl"


def is_complete(cfg: DictConfig) -> bool:
    steps = cfg.vae.steps if trains(cfg) else 0  # loaded or fitted: complete once saved
    return reached_step(Path(cfg.vae.run_dir), f"{AUTOENCODER_DIR}/config.json", steps)


def train_vae(cfg: DictConfig) -> dict:
    """Train, fit or load the first stage; returns ``{"step", "run_dir", "autoencoder_dir", "metrics"}``."""
    # 1. Setup: Accelerate (CPU, one GPU or several processes); the run folder's record allows this run.
    accelerator = make_accelerator(cfg.trainer, cfg.vae.grad_accum)
    run_dir = Path(cfg.vae.run_dir)
    run = open_run(cfg, "vae")
    torch.manual_seed(cfg.seed)

    # 2. Data: every camera view of the training scans, in memory (uint8).
    train_views = load_views(build_dataset(cfg.dataset, cfg.dataset.train_split), masks=False)
    val_views = load_views(build_dataset(cfg.dataset, cfg.dataset.val_split), masks=False)
    eval_images = val_views.images[torch.linspace(0, len(val_views) - 1, cfg.vae.eval_images).long().unique()]
    scaling_images = train_views.images[: cfg.vae.scaling_images]

    # 3. Model: pretrained weights only need their scaling factor measured on this data; the codec is fitted.
    vae = build_autoencoder(OmegaConf.to_container(cfg.autoencoder, resolve=True))
    if not trains(cfg):
        vae.to(accelerator.device)
        if cfg.autoencoder.pretrained:
            metrics = {"step": 0, "pretrained": str(cfg.autoencoder.pretrained)}
        else:
            metrics = _fit_codec(cfg, vae, train_views.images)
        _record(accelerator, run, 0)
        return _save_untrained(cfg, accelerator, vae, metrics, scaling_images, eval_images)

    loss_fn = AutoencoderLoss(**OmegaConf.to_container(cfg.vae.loss, resolve=True))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae.lr, weight_decay=cfg.vae.weight_decay)
    lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.vae.warmup_steps)
    disc_optimizer = None
    if loss_fn.discriminator is not None:
        disc_optimizer = torch.optim.AdamW(loss_fn.discriminator.parameters(), lr=cfg.vae.discriminator_lr)

    # 4. Resume: weights, optimizers, LR schedule, RNG; the data position follows from the step.
    def restore(weights: dict, state: dict) -> None:
        vae.load_state_dict(weights["model"])
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        if disc_optimizer is not None:
            loss_fn.discriminator.load_state_dict(weights["discriminator"])
            disc_optimizer.load_state_dict(state["discriminator_optimizer"])

    start, metrics = resume_from_checkpoint(run_dir, cfg.trainer.resume, restore, "vae")
    _record(accelerator, run, start)
    model, optimizer, lr_schedule = accelerator.prepare(PosteriorReconstruction(vae), optimizer, lr_schedule)
    if disc_optimizer is not None:
        loss_fn.discriminator, disc_optimizer = accelerator.prepare(loss_fn.discriminator, disc_optimizer)
    if cfg.trainer.compile:
        vae.compile()  # in place: state_dict keys stay the same

    # What a checkpoint holds (and what the loop samples or evaluates at its cadence).
    def training_state() -> tuple[dict, dict]:
        weights = {"model": vae.state_dict()}
        state = {"optimizer": optimizer.state_dict(), "lr_schedule": lr_schedule.state_dict()}
        if disc_optimizer is not None:
            weights["discriminator"] = accelerator.unwrap_model(loss_fn.discriminator).state_dict()
            state["discriminator_optimizer"] = disc_optimizer.state_dict()
        return weights, state

    def sample(done: int) -> dict:
        """PSNR of the validation images and a grid of their reconstructions."""
        recon = reconstruct(vae, eval_images)
        metrics["val_psnr"] = psnr(recon, eval_images)
        grid = _reconstruction_grid(eval_images[:8], recon[:8])
        save_image_atomic(grid, run_dir / "samples" / f"reconstructions_{done:07d}.png")
        return {"val/psnr": metrics["val_psnr"], "val/reconstructions": grid}

    # 5. Loop.
    guard = NonFiniteGuard(cfg.trainer.max_bad_steps)
    steps, batch_size = cfg.vae.steps, cfg.vae.batch_size
    rank, world = accelerator.process_index, accelerator.num_processes
    check_divisible(batch_size, world, "vae.batch_size")
    with TrainingLoop.for_stage(
        cfg, "vae", start, checkpoint=training_state, metrics=metrics, sample=sample, accelerator=accelerator
    ) as loop:
        for step in loop:
            model.train()
            indices = epoch_batch(len(train_views), batch_size, step, cfg.seed).chunk(world)[rank]
            target = to_model_range(train_views.images[indices]).to(accelerator.device)
            generator = step_generator(cfg.seed, step)
            noise = torch.randn((batch_size, *_latent_shape(vae, target)), generator=generator)
            noise = noise.chunk(world)[rank].to(accelerator.device)
            with accelerator.accumulate(model), accelerator.autocast():
                reconstruction, posterior = model(target, noise)
                terms = loss_fn.generator_loss(reconstruction, target, posterior, step)
            finite = accelerator.reduce(torch.isfinite(terms["loss"].detach()).float(), "min").item() > 0
            if guard.check(finite, step):
                accelerator.backward(terms["loss"])
                accelerator.clip_grad_norm_(model.parameters(), cfg.vae.grad_clip)
                optimizer.step()
                lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if disc_optimizer is not None and loss_fn.adversarial_active(step) and finite:
                with accelerator.autocast():
                    terms["discriminator"] = loss_fn.discriminator_loss(reconstruction, target)
                accelerator.backward(terms["discriminator"])
                disc_optimizer.step()
                disc_optimizer.zero_grad(set_to_none=True)
            scalars = {f"train/{k}": float(v.detach().mean()) for k, v in terms.items()}
            loop.end_step(step + 1, scalars, line=scalars)

    # 6. The autoencoder later stages load: scaling factor measured on the training images.
    scale = measure_scaling_factor(vae, scaling_images)
    vae.register_to_config(scaling_factor=scale)
    metrics.update({"step": max(start, steps), "scaling_factor": scale, "skipped_steps": guard.skipped})
    if "val_psnr" not in metrics:
        metrics["val_psnr"] = psnr(reconstruct(vae, eval_images), eval_images)
    if accelerator.is_main_process:
        save_pretrained_atomic(vae, run_dir / AUTOENCODER_DIR)
        write_metrics(run_dir, metrics)
    return _stage_result(run_dir, metrics)


def _record(accelerator, run: RunRecord, start: int) -> None:
    """The run's record, written by the main process before the first step; the others wait for it."""
    if accelerator.is_main_process:
        run.write(start)
    accelerator.wait_for_everyone()


def _fit_codec(cfg: DictConfig, codec: PatchPCACodec, images: torch.Tensor) -> dict:
    """Fit the codec on every training view in closed form; its metrics (step 0: nothing to train)."""
    patch = codec.config.patch_size
    if any(int(side) % patch for side in images.shape[-2:]):
        raise ValueError(
            f"dataset.image_size={list(images.shape[-2:])} is not a multiple of autoencoder.arch.patch_size="
            f"{patch}; choose an image size divisible by the patch size"
        )
    started = time.perf_counter()
    explained = codec.fit(images, max_patches=cfg.autoencoder.fit.max_patches, seed=cfg.seed)
    fit_seconds = time.perf_counter() - started
    log.info("vae: fitted the patch codec in %.2f s (%.1f%% of the variance)", fit_seconds, 100 * explained)
    return {"step": 0, "kind": "pca_patch", "fit_seconds": fit_seconds, "explained_variance": explained}


def _save_untrained(cfg, accelerator, vae: FirstStage, metrics: dict, scaling_images, eval_images) -> dict:
    """Loaded or fitted first stage: measure its scaling factor and PSNR, save it and its metrics."""
    run_dir = Path(cfg.vae.run_dir)
    scale = measure_scaling_factor(vae, scaling_images)
    vae.register_to_config(scaling_factor=scale)
    val_psnr = psnr(reconstruct(vae, eval_images), eval_images)
    metrics = {**metrics, "scaling_factor": scale, "val_psnr": val_psnr}
    if accelerator.is_main_process:
        save_pretrained_atomic(vae, run_dir / AUTOENCODER_DIR)
        write_metrics(run_dir, metrics)
    return _stage_result(run_dir, metrics)


def _stage_result(run_dir: Path, metrics: dict) -> dict:
    log.info(
        "vae: autoencoder in %s (PSNR %.1f dB, scaling factor %.3f)",
        run_dir / AUTOENCODER_DIR,
        metrics["val_psnr"],
        metrics["scaling_factor"],
    )
    return {
        "step": metrics.get("step", 0),
        "run_dir": str(run_dir),
        "autoencoder_dir": str(run_dir / AUTOENCODER_DIR),
        "metrics": metrics,
    }


class PosteriorReconstruction(nn.Module):
    """Encode, sample the posterior with given noise, decode: one module, so DDP sees the whole forward pass."""

    def __init__(self, vae: FirstStage) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor, noise: torch.Tensor):
        posterior = self.vae.encode(images).latent_dist
        return self.vae.decode(posterior.mean + posterior.std * noise).sample, posterior


def _latent_shape(vae: FirstStage, images: torch.Tensor) -> tuple[int, int, int]:
    factor = downsampling_factor(vae)
    return vae.config.latent_channels, images.shape[-2] // factor, images.shape[-1] // factor


def _reconstruction_grid(real: torch.Tensor, reconstruction: torch.Tensor) -> Image.Image:
    """Top row real, bottom row reconstructed."""
    top = torch.cat(list(real), dim=-1)
    bottom = torch.cat(list(reconstruction), dim=-1)
    return Image.fromarray(torch.cat([top, bottom], dim=-2).permute(1, 2, 0).numpy())
