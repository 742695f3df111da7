"""Stage ``ldm``: the graph-conditioned latent denoiser (SGDiff / SpaText in diffusers' components).

Recipe: the stage-``vae`` autoencoder (frozen) and the latents of every training view, cached once; the
scene-graph encoder from stage ``align`` (trained jointly, or frozen); a ``UNet2DConditionModel`` of the named
size; DDPM noise, epsilon, v or x0 targets, optional min-SNR weighting (:mod:`or_synth.generator.objective`);
independent graph / layout dropout for classifier-free guidance; AdamW with warm-up + cosine; EMA weights for
sampling. Writes the diffusers pipeline folder ``<run_dir>/pipeline`` and a sample grid of fixed validation graphs
(:mod:`.sample_grid`).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch
from accelerate.utils import gather_object
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from omegaconf import DictConfig, OmegaConf
from torch_geometric.data import Batch

from or_synth.data.views import ViewSet, load_views
from or_synth.encoders import SceneGraphEncoder, build_scene_graph_encoder
from or_synth.generator.autoencoder import (
    FirstStage,
    downsampling_factor,
    load_pretrained_autoencoder,
    weights_hash,
)
from or_synth.generator.conditioning import GraphConditioner
from or_synth.generator.denoiser import GraphConditionedDenoiser, build_unet
from or_synth.generator.latents import cached_latents, dataset_identity, encode_views
from or_synth.generator.objective import diffusion_loss, training_target
from or_synth.generator.pipeline import ORScenePipeline
from or_synth.training.batches import build_dataset, epoch_batch, step_generator
from or_synth.training.checkpoints import (
    load_component,
    reached_step,
    read_metrics,
    resume_from_checkpoint,
    save_pretrained_atomic,
)
from or_synth.training.devices import make_accelerator
from or_synth.training.logs import write_metrics
from or_synth.training.loop import NonFiniteGuard, TrainingLoop, check_divisible
from or_synth.training.record import open_run
from or_synth.training.sample_grid import grid_items, reference_pipeline, write_grid

log = logging.getLogger(__name__)

PIPELINE_DIR = "pipeline"
FINAL_GRID = "samples/grid_final.png"


def is_complete(cfg: DictConfig) -> bool:
    run_dir = Path(cfg.ldm.run_dir)
    if reached_step(run_dir, f"{PIPELINE_DIR}/model_index.json", cfg.ldm.steps):
        return True
    budget = cfg.ldm.get("time_budget_s")
    return budget is not None and _out_of_time(_saved_metrics(run_dir), budget)


def _saved_metrics(run_dir: Path) -> dict:
    return read_metrics(run_dir) if (run_dir / PIPELINE_DIR / "model_index.json").is_file() else {}


def _out_of_time(metrics: dict, budget: float | None) -> bool:
    """The time budget counts the training loop's wall time over every resumed chunk of the run."""
    return budget is not None and float(metrics.get("train_seconds", 0.0)) >= float(budget)


def load_autoencoder(cfg: DictConfig) -> FirstStage:
    """The stage-``vae`` first stage (``AutoencoderKL`` or the patch codec, as its config.json says)."""
    folder = Path(cfg.ldm.autoencoder_dir)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no autoencoder at ldm.autoencoder_dir={folder}: run stage=vae first (same name=...), or point "
            "ldm.autoencoder_dir at a diffusers AutoencoderKL (or PatchPCACodec) folder"
        )
    return load_component(
        load_pretrained_autoencoder,
        folder,
        "ldm.autoencoder_dir",
        "run stage=vae again (trainer.resume=false) or point ldm.autoencoder_dir at an intact autoencoder folder",
    )


def build_conditioner(cfg: DictConfig, vocabulary, layout_channels: int) -> GraphConditioner:
    """The graph encoder from stage ``align`` (``ldm.encoder_dir``), or fresh when that is null."""
    if cfg.ldm.encoder_dir is None:
        encoder = build_scene_graph_encoder(OmegaConf.to_container(cfg.encoder, resolve=True), vocabulary)
    else:
        folder = Path(cfg.ldm.encoder_dir)
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"no encoder checkpoint at ldm.encoder_dir={folder}: run stage=align first (same name=...), or "
                "set ldm.encoder_dir=null to start from a fresh encoder"
            )
        encoder = load_component(
            SceneGraphEncoder.from_pretrained,
            folder,
            "ldm.encoder_dir",
            "run stage=align again (trainer.resume=false), point ldm.encoder_dir at an intact encoder folder, or "
            "set ldm.encoder_dir=null to start from a fresh encoder",
        )
    return GraphConditioner.from_encoder(encoder, layout_channels)


def use_layout(cfg: DictConfig, views: ViewSet) -> bool:
    setting = cfg.ldm.layout
    if setting == "auto":
        return views.masks is not None
    if setting and views.masks is None:
        raise ValueError(
            "ldm.layout=true but the dataset has no layouts (no instance masks; for real 4D-OR, no panoptic maps)"
        )
    return bool(setting)


def train_ldm(cfg: DictConfig) -> dict:
    """Train the denoiser; returns ``{"step", "run_dir", "pipeline_dir", "grid", "metrics"}``."""
    # 1. Setup.
    accelerator = make_accelerator(cfg.trainer, cfg.ldm.grad_accum)
    run_dir = Path(cfg.ldm.run_dir)
    run = open_run(cfg, "ldm")  # reads only: refuses a resume under a changed configuration
    torch.manual_seed(cfg.seed)

    # 2. First stage and data: latents of every training view, cached (or encoded per batch, to compare).
    vae = load_autoencoder(cfg).to(accelerator.device).requires_grad_(False).eval()
    train_set = build_dataset(cfg.dataset, cfg.dataset.train_split)
    train_views = load_views(train_set, masks=None if cfg.ldm.layout == "auto" else bool(cfg.ldm.layout))
    val_views = load_views(
        build_dataset(cfg.dataset, cfg.dataset.val_split), masks=train_views.masks is not None
    )
    layout = use_layout(cfg, train_views)
    latents = None
    if cfg.ldm.latent_cache:
        identity = dataset_identity(train_set, len(train_views))
        if accelerator.is_main_process:
            latents = cached_latents(vae, train_views.images, cfg.ldm.cache_dir, identity)
        accelerator.wait_for_everyone()
        latents = latents or cached_latents(vae, train_views.images, cfg.ldm.cache_dir, identity)
    scale = vae.config.scaling_factor
    channels = vae.config.latent_channels
    factor = downsampling_factor(vae)
    latent_hw = (train_views.images.shape[-2] // factor, train_views.images.shape[-1] // factor)

    # 3. Model: graph conditioner (+ layout map) and UNet, trained together; EMA of both.
    conditioner = build_conditioner(cfg, train_set.vocabulary, cfg.ldm.layout_channels if layout else 0)
    unet = build_unet(
        cfg.denoiser, latent_channels=channels, sample_size=latent_hw[0], conditioner=conditioner
    )
    model = GraphConditionedDenoiser(unet, conditioner)
    conditioner.requires_grad_(bool(cfg.ldm.train_encoder))
    noise_scheduler = DDPMScheduler(**OmegaConf.to_container(cfg.scheduler, resolve=True))
    ema = EMAModel(
        list(model.parameters()),
        decay=cfg.ldm.ema.decay,
        use_ema_warmup=cfg.ldm.ema.warmup,
        power=cfg.ldm.ema.get("power", 0.75),
    )
    groups = [{"params": list(unet.parameters())}]
    if cfg.ldm.train_encoder:
        groups.append({"params": list(conditioner.parameters()), "lr": cfg.ldm.encoder_lr})
    optimizer = torch.optim.AdamW(groups, lr=cfg.ldm.lr, weight_decay=cfg.ldm.weight_decay)
    lr_schedule = get_scheduler(
        cfg.ldm.lr_schedule,
        optimizer,
        num_warmup_steps=cfg.ldm.warmup_steps,
        num_training_steps=cfg.ldm.steps,
    )
    log.info(
        "ldm: %d training views, latents %s x %s, layout %s, UNet %.2f M + conditioner %.2f M parameters",
        len(train_views),
        channels,
        latent_hw,
        "on" if layout else "off",
        sum(p.numel() for p in unet.parameters()) / 1e6,
        sum(p.numel() for p in conditioner.parameters()) / 1e6,
    )

    # 4. Resume: model, EMA, optimizer, LR schedule, RNG; the data position and noise follow from the step.
    names = [name for name, _ in model.named_parameters()]

    def restore(weights: dict, state: dict) -> None:
        model.load_state_dict(weights["model"])
        ema.load_state_dict({**state["ema"], "shadow_params": [weights["ema"][n] for n in names]})
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])

    start, metrics = resume_from_checkpoint(run_dir, cfg.trainer.resume, restore, "ldm")
    if accelerator.is_main_process:
        run.write(start)  # config.yaml and the record (a fresh start), or what a resume changed
    accelerator.wait_for_everyone()
    ema.to(accelerator.device)
    wrapped, optimizer, lr_schedule = accelerator.prepare(model, optimizer, lr_schedule)
    if cfg.trainer.compile:
        unet.compile()  # in place: state_dict keys stay the same

    # What a checkpoint holds (and what the loop samples or evaluates at its cadence).
    def training_state() -> tuple[dict, dict]:
        weights = {"model": model.state_dict(), "ema": dict(zip(names, ema.shadow_params, strict=True))}
        ema_state = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
        state = {
            "optimizer": optimizer.state_dict(),
            "lr_schedule": lr_schedule.state_dict(),
            "ema": ema_state,
        }
        return weights, state

    items = grid_items(cfg.ldm.sample, val_views)

    def sample(done: int) -> dict:
        """The sample grid of the EMA weights on fixed validation graphs."""
        pipeline = _ema_pipeline(model, ema, vae, noise_scheduler)
        path = run_dir / "samples" / f"grid_{done:07d}.png"
        return {"samples/grid": write_grid(pipeline, cfg.ldm.sample, cfg.seed, items, val_views, path)}

    # 5. Loop.
    guard = NonFiniteGuard(cfg.trainer.max_bad_steps)
    steps, batch_size = cfg.ldm.steps, cfg.ldm.batch_size
    rank, world = accelerator.process_index, accelerator.num_processes
    check_divisible(batch_size, world, "ldm.batch_size")
    # ldm.time_budget_s: stop (checkpoint + pipeline) once the loop has run this long, summed over resumes, so
    # levers are compared at equal CPU time and a budgeted run is a prefix of a longer one (constant LR).
    budget = cfg.ldm.get("time_budget_s")
    seconds_before, loop_start = float(metrics.get("train_seconds", 0.0)), time.perf_counter()
    stopped_early = _out_of_time(metrics, budget)
    with TrainingLoop.for_stage(
        cfg, "ldm", start, checkpoint=training_state, metrics=metrics, sample=sample, accelerator=accelerator
    ) as loop:
        for step in loop if not stopped_early else ():
            wrapped.train()
            # Everything random about this step is drawn for the global batch, then sliced to this rank.
            generator = step_generator(cfg.seed, step)
            indices = epoch_batch(len(train_views), batch_size, step, cfg.seed)
            shape = (batch_size, channels, *latent_hw)
            posterior_noise = torch.randn(shape, generator=generator)
            noise = torch.randn(shape, generator=generator)
            timesteps = torch.randint(
                noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator
            )
            drop_graph, drop_layout = conditioner.draw_dropout(
                batch_size, cfg.ldm.cond_drop.graph, cfg.ldm.cond_drop.layout, generator
            )
            local = torch.arange(batch_size).chunk(world)[rank]
            idx = indices[local]
            if latents is not None:
                clean = latents.sample(idx, posterior_noise[local])
            else:  # the baseline the latent cache is measured against: encode this batch now
                mean, std = encode_views(vae, train_views.images[idx], progress=False)
                clean = mean + std * posterior_noise[local]
            clean = (clean * scale).to(accelerator.device)
            noise, timesteps = noise[local].to(accelerator.device), timesteps[local].to(accelerator.device)
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            target = training_target(noise_scheduler, clean, noise, timesteps)
            graphs = Batch.from_data_list([train_views.graphs[int(g)] for g in train_views.graph_index[idx]])
            masks = train_views.masks[idx] if layout else None
            if layout and train_views.has_layout is not None:  # a view without a layout trains graph-only
                drop_layout[local] |= ~train_views.has_layout[idx]
            with accelerator.accumulate(wrapped), accelerator.autocast():
                prediction = wrapped(
                    noisy,
                    timesteps,
                    graphs,
                    train_views.cameras[idx],
                    masks=masks,
                    drop_graph=drop_graph[local],
                    drop_layout=drop_layout[local],
                )
                loss = diffusion_loss(
                    prediction.float(), target.float(), timesteps, noise_scheduler, cfg.ldm.snr_gamma
                )
            finite = accelerator.reduce(torch.isfinite(loss.detach()).float(), "min").item() > 0
            if guard.check(finite, step):
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(wrapped.parameters(), cfg.ldm.grad_clip)
                optimizer.step()
                lr_schedule.step()
                if accelerator.sync_gradients:
                    ema.step(model.parameters())
            optimizer.zero_grad(set_to_none=True)

            done = step + 1
            mean_loss = accelerator.reduce(loss.detach(), "mean").item()
            metrics["train_seconds"] = seconds_before + time.perf_counter() - loop_start
            if budget is not None:  # every rank stops at the same step: once any rank is over budget
                out_of_time = torch.tensor(float(_out_of_time(metrics, budget)), device=accelerator.device)
                stopped_early = accelerator.reduce(out_of_time, "max").item() > 0 and done < steps
            scalars = {
                "train/loss": mean_loss,
                "train/lr": lr_schedule.get_last_lr()[0],
                "train/ema_decay": ema.cur_decay_value or 0.0,
            }
            left = {} if budget is None else {"budget_left": _minutes(budget - metrics["train_seconds"])}
            loop.end_step(done, scalars, last=stopped_early, postfix=left)
            if stopped_early:
                log.info(
                    "ldm: time budget of %s s reached at step %d (run it longer: raise ldm.time_budget_s)",
                    budget,
                    done,
                )
                start = done
                break

    # 6. The pipeline folder (EMA weights) and the final sample grid.
    pipeline_dir, grid_path = run_dir / PIPELINE_DIR, run_dir / FINAL_GRID
    final_step = start if stopped_early else max(start, steps)
    metrics.update({"step": final_step, "skipped_steps": guard.skipped, "layout": layout})
    if budget is not None:
        metrics.update({"time_budget_s": budget, "stopped_by_time_budget": bool(stopped_early)})
    if world > 1:  # every replica must hold the same weights after DDP's all-reduce
        metrics["replica_weight_hashes"] = gather_object([weights_hash(model)])
    if accelerator.is_main_process:
        pipeline = _ema_pipeline(model, ema, vae, noise_scheduler)
        save_pretrained_atomic(pipeline, pipeline_dir)
        minutes = metrics.get("train_seconds", 0.0) / 60
        label = f"this run ({metrics['step']} steps, {minutes:.0f} min)"
        reference = reference_pipeline(cfg.ldm.sample)
        write_grid(pipeline, cfg.ldm.sample, cfg.seed, items, val_views, grid_path, label, reference)
        write_metrics(run_dir, metrics)
    accelerator.wait_for_everyone()
    log.info("ldm: pipeline in %s, sample grid %s", pipeline_dir, grid_path)
    return {
        "step": metrics["step"],
        "run_dir": str(run_dir),
        "pipeline_dir": str(pipeline_dir),
        "grid": str(grid_path),
        "metrics": metrics,
    }


def _minutes(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _ema_pipeline(model: GraphConditionedDenoiser, ema: EMAModel, vae, noise_scheduler) -> ORScenePipeline:
    """A pipeline on a copy of the model carrying the EMA weights (training weights untouched)."""
    averaged = copy.deepcopy(model).eval()
    ema.copy_to(averaged.parameters())
    return ORScenePipeline(
        unet=averaged.unet,
        vae=vae,
        scheduler=copy.deepcopy(noise_scheduler),
        graph_encoder=averaged.conditioner,
    )
