"""Stage ``align`` (issue #4): OR domain adaptation of the scene-graph encoder.

Graph-image InfoNCE between the pooled graph(+view) token and the image tower's embedding of the paired view,
plus masked-graph modelling of predicates and node labels (SGDiff, §3.2). Writes ``<run_dir>/encoder``, which
stage ``ldm`` starts from.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch_geometric.data import InMemoryDataset
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from or_synth.data import FourDORDataset
from or_synth.data.io import atomic_path, atomic_write_json
from or_synth.encoders import GraphImageAligner, build_aligner
from or_synth.encoders.metrics import evenly_spaced, masked_predicate_eval, retrieval_eval
from or_synth.training.common import (
    autocast,
    build_dataset,
    forever,
    log_scalars,
    reached_step,
    resolve_device,
    save_resolved_config,
    summary_writer,
)

log = logging.getLogger(__name__)

TRAINING_STATE = "checkpoints/last.pt"
ENCODER_DIR = "encoder"


def is_complete(cfg: DictConfig) -> bool:
    """The stage's result exists and its metrics say it reached the configured step count."""
    return reached_step(Path(cfg.align.run_dir), f"{ENCODER_DIR}/model.safetensors", cfg.align.steps)


def save_training_state(path: Path, step: int, model: torch.nn.Module, optimizer, generator) -> None:
    """Everything needed to resume, written atomically (a crash never leaves half a checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path, model: torch.nn.Module, optimizer, generator) -> int:
    """Restore a run from ``path``; returns the step to continue from (0 when there is no checkpoint)."""
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:300]  # the first mismatch is enough to tell what differs
        raise RuntimeError(
            f"{path} was written by a different model or optimizer setup; choose another run "
            f"(name=... or run_dir=...) or start over with trainer.resume=false. Details: {detail}"
        ) from exc
    torch.set_rng_state(state["torch_rng"])
    generator.set_state(state["generator"])
    log.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"])


def pick_views(batch, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random camera per graph: its image (B, 3, H, W) and its view id (B,) for the encoder."""
    b, v = batch.images.shape[:2]
    choice = torch.randint(v, (b,), generator=generator).to(batch.images.device)
    rows = torch.arange(b, device=batch.images.device)
    return batch.images[rows, choice], batch.cameras[rows, choice]


# --- stage: align ---------------------------------------------------------------------------------------
def evaluate_align(aligner: GraphImageAligner, val_set: FourDORDataset, cfg: DictConfig) -> dict:
    """Held-out retrieval R@1/R@5 and masked-predicate accuracy on the val split."""
    retrieval = retrieval_eval(
        aligner, val_set, batch_size=cfg.align.batch_size, max_graphs=cfg.align.eval_max_graphs
    )
    # Graphs only: InMemoryDataset.get skips FourDORDataset's image reading.
    graphs = [InMemoryDataset.get(val_set, i) for i in evenly_spaced(len(val_set), cfg.align.eval_max_graphs)]
    masked = masked_predicate_eval(aligner, graphs, val_set.vocabulary.predicates)
    return {
        "retrieval/R@1": retrieval["R@1"],
        "retrieval/R@5": retrieval["R@5"],
        "retrieval/queries": retrieval["queries"],
        "masked_predicate/accuracy": masked["accuracy"],
        "masked_predicate/accuracy_not_closeto": masked["accuracy_not_closeto"],
    }


def train_align(cfg: DictConfig) -> dict:
    """Stage ``align``: contrastive graph-image alignment + masked-graph modelling; writes the encoder.

    Returns:
        ``{"step", "run_dir", "encoder_dir", "metrics": {"start": ..., "end": ...}}``.
    """
    # 1. Setup: seeds, device, run folder.
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    device = resolve_device(cfg.trainer.device)
    run_dir = Path(cfg.align.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved_config(run_dir, cfg)
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() and cfg.trainer.resume else {}

    # 2. Data: graphs with all configured camera images; each step pairs a graph with one random view.
    train_set = build_dataset(cfg.dataset, cfg.dataset.train_split)
    val_set = build_dataset(cfg.dataset, cfg.dataset.val_split)
    loader = DataLoader(
        train_set,
        batch_size=min(cfg.align.batch_size, len(train_set)),
        shuffle=True,
        drop_last=True,  # InfoNCE wants a constant number of negatives
        num_workers=cfg.trainer.num_workers,
        generator=generator,
    )
    log.info(
        "align: %d train / %d val scans, cameras %s", len(train_set), len(val_set), list(cfg.dataset.cameras)
    )

    # 3. Model: graph encoder on frozen label embeddings, image tower (frozen or last blocks), heads.
    encoder_cfg = OmegaConf.to_container(cfg.encoder, resolve=True)
    aligner = build_aligner(encoder_cfg, train_set.vocabulary, embed_dim=cfg.align.embed_dim).to(device)
    tower_params = [p for p in aligner.image_tower.parameters() if p.requires_grad]
    tower_ids = {id(p) for p in tower_params}
    groups = [{"params": [p for p in aligner.parameters() if p.requires_grad and id(p) not in tower_ids]}]
    if tower_params:
        groups.append({"params": tower_params, "lr": cfg.align.image_lr})
    optimizer = torch.optim.AdamW(groups, lr=cfg.align.lr, weight_decay=cfg.align.weight_decay)

    # 4. Resume from the run folder's last checkpoint.
    state_file = run_dir / TRAINING_STATE
    start = load_training_state(state_file, aligner, optimizer, generator) if cfg.trainer.resume else 0
    if cfg.trainer.compile:
        aligner.encoder.compile(dynamic=True)  # in place: state_dict keys stay the same

    # 5. Loop.
    writer = summary_writer(run_dir / "tensorboard")
    if start == 0:
        metrics["start"] = evaluate_align(aligner, val_set, cfg)
        log_scalars(writer, metrics["start"], 0)
    batches = forever(loader)
    aligner.train()
    steps = cfg.align.steps
    progress = tqdm(range(start, steps), initial=start, total=steps, desc="align", dynamic_ncols=True)
    for step in progress:
        batch = next(batches).to(device)
        images, views = pick_views(batch, generator)
        with autocast(device, cfg.trainer.precision):
            contrastive = aligner.contrastive_loss(batch, views, images)
            masked = aligner.masked_graph_loss(
                batch, views, mask_prob=cfg.align.mask_prob, generator=generator
            )
            loss = cfg.align.contrastive_weight * contrastive + cfg.align.masked_weight * masked["loss"]
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"align: loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(aligner.parameters(), cfg.align.grad_clip)
        optimizer.step()

        done = step + 1
        if done % cfg.trainer.log_every == 0 or done == steps:
            scalars = {
                "train/loss": loss.item(),
                "train/contrastive": contrastive.item(),
                "train/masked": masked["loss"].item(),
                "train/masked_predicate_acc": float(masked["predicate_acc"]),
                "train/masked_node_acc": float(masked["node_acc"]),
                "train/logit_scale": aligner.logit_scale.exp().item(),
            }
            log_scalars(writer, scalars, done)
            progress.set_postfix(loss=f"{loss.item():.3f}")
        if done % cfg.align.eval_every == 0 or done == steps:
            metrics["end"] = evaluate_align(aligner, val_set, cfg)
            log_scalars(writer, metrics["end"], done)
            aligner.train()
        if done % cfg.align.ckpt_every == 0 or done == steps:
            save_training_state(state_file, done, aligner, optimizer, generator)
            aligner.encoder.save_pretrained(run_dir / ENCODER_DIR)
            metrics["step"] = done
            atomic_write_json(metrics_file, metrics, indent=2)
    progress.close()
    writer.close()

    # 6. The encoder checkpoint the generator loads (also written when a finished run is re-run).
    if not (run_dir / ENCODER_DIR / "model.safetensors").is_file():
        aligner.encoder.save_pretrained(run_dir / ENCODER_DIR)
    metrics["step"] = max(start, steps)
    atomic_write_json(metrics_file, metrics, indent=2)
    log.info("align: encoder checkpoint in %s; metrics %s", run_dir / ENCODER_DIR, metrics.get("end"))
    return {
        "step": metrics["step"],
        "run_dir": str(run_dir),
        "encoder_dir": str(run_dir / ENCODER_DIR),
        "metrics": metrics,
    }
