"""Stage ``align``: OR domain adaptation of the scene-graph encoder.

Graph-image InfoNCE between the pooled graph(+view) token and the image tower's embedding of the paired view,
plus masked-graph modelling of predicates and node labels (SGDiff, §3.2). Writes ``<run_dir>/encoder``, which
stage ``ldm`` starts from. Checkpoints, exact resume and Ctrl-C are the other stages' (:mod:`.loop`): the batch
of step k is :func:`~or_synth.training.batches.epoch_batch` of k, its views and masks are drawn from
:func:`~or_synth.training.batches.step_generator` of k.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch_geometric.data import InMemoryDataset
from torch_geometric.loader import DataLoader

from or_synth.data import FourDORDataset
from or_synth.encoders import GraphImageAligner, build_aligner
from or_synth.encoders.metrics import evenly_spaced, masked_predicate_eval, retrieval_eval
from or_synth.training.batches import build_dataset, epoch_batches, step_generator
from or_synth.training.checkpoints import (
    CheckpointRefused,
    reached_step,
    resume_from_checkpoint,
    save_pretrained_atomic,
    step_folders,
)
from or_synth.training.devices import autocast, resolve_device
from or_synth.training.logs import write_metrics
from or_synth.training.loop import NonFiniteGuard, TrainingLoop
from or_synth.training.record import open_run

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
# Where the align stage before step-indexed checkpoints kept its one checkpoint (not resumable exactly).
LEGACY_CHECKPOINT = "checkpoints/last.pt"


def is_complete(cfg: DictConfig) -> bool:
    """The stage's result exists and its metrics say it reached the configured step count."""
    return reached_step(Path(cfg.align.run_dir), f"{ENCODER_DIR}/model.safetensors", cfg.align.steps)


def refuse_legacy_checkpoint(run_dir: Path, resume: bool) -> None:
    """A run folder with only an older align's ``checkpoints/last.pt``: its data order was not a function of the
    step, so it cannot resume exactly; say so rather than start over in it silently."""
    if resume and (run_dir / LEGACY_CHECKPOINT).is_file() and not step_folders(run_dir):
        raise CheckpointRefused(
            f"{run_dir / LEGACY_CHECKPOINT} was written by an older version of stage align and cannot be "
            f"resumed; its encoder ({run_dir / ENCODER_DIR}) still loads. Start this run over with "
            "trainer.resume=false, or choose another run with name=... (or align.run_dir=...)"
        )


def pick_views(batch, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random camera per graph: its image (B, 3, H, W) and its view id (B,) for the encoder."""
    b, v = batch.images.shape[:2]
    choice = torch.randint(v, (b,), generator=generator).to(batch.images.device)
    rows = torch.arange(b, device=batch.images.device)
    return batch.images[rows, choice], batch.cameras[rows, choice]


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
    # 1. Setup: seed, device, run folder.
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.trainer.device)
    run_dir = Path(cfg.align.run_dir)
    refuse_legacy_checkpoint(run_dir, cfg.trainer.resume)
    run = open_run(cfg, "align")  # reads only: refuses a resume under a changed configuration

    # 2. Data: graphs with all configured camera images; each step pairs a graph with one random view.
    train_set = build_dataset(cfg.dataset, cfg.dataset.train_split)
    val_set = build_dataset(cfg.dataset, cfg.dataset.val_split)
    batch_size = min(cfg.align.batch_size, len(train_set))  # InfoNCE: every graph of a batch a distinct one
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

    # 4. Resume: weights, optimizer, RNG; the data position and the random views and masks follow from the step.
    def restore(weights: dict, state: dict) -> None:
        aligner.load_state_dict(weights["model"])
        optimizer.load_state_dict(state["optimizer"])

    start, metrics = resume_from_checkpoint(run_dir, cfg.trainer.resume, restore, "align")
    run.write(start)  # config.yaml and the record (a fresh start), or what a resume changed
    if cfg.trainer.compile:
        aligner.encoder.compile(dynamic=True)  # in place: state_dict keys stay the same

    # What a checkpoint holds (and what the loop samples or evaluates at its cadence).
    def training_state() -> tuple[dict, dict]:
        return {"model": aligner.state_dict()}, {"optimizer": optimizer.state_dict()}

    def evaluate(done: int) -> dict:
        """Retrieval and masked-predicate accuracy on the validation split: ``metrics["start"]`` before the first
        step, ``metrics["end"]`` after a later one."""
        key = "start" if done == 0 else "end"
        metrics[key] = evaluate_align(aligner, val_set, cfg)
        aligner.train()
        return metrics[key]

    def save_encoder() -> None:
        save_pretrained_atomic(aligner.encoder, run_dir / ENCODER_DIR)

    # The batches of the remaining steps, read by the loader's workers (its own generator: no draw from the
    # global RNG, which the checkpoint restores).
    steps = cfg.align.steps
    loader = DataLoader(
        train_set,
        batch_sampler=epoch_batches(len(train_set), batch_size, cfg.seed, start, steps),
        num_workers=cfg.trainer.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed),
    )

    # 5. Loop.
    guard = NonFiniteGuard(cfg.trainer.max_bad_steps)
    with TrainingLoop.for_stage(
        cfg,
        "align",
        start,
        checkpoint=training_state,
        metrics=metrics,
        sample=evaluate,
        export=save_encoder,
        sample_first=True,
    ) as loop:
        aligner.train()
        for step, batch in zip(loop, loader, strict=False):
            batch = batch.to(device)
            generator = step_generator(cfg.seed, step)
            images, views = pick_views(batch, generator)
            with autocast(device, cfg.trainer.precision):
                contrastive = aligner.contrastive_loss(batch, views, images)
                masked = aligner.masked_graph_loss(
                    batch, views, mask_prob=cfg.align.mask_prob, generator=generator
                )
                loss = cfg.align.contrastive_weight * contrastive + cfg.align.masked_weight * masked["loss"]
            optimizer.zero_grad(set_to_none=True)
            if guard.check(bool(torch.isfinite(loss)), step):
                loss.backward()
                torch.nn.utils.clip_grad_norm_(aligner.parameters(), cfg.align.grad_clip)
                optimizer.step()
            scalars = {
                "train/loss": loss.item(),
                "train/contrastive": contrastive.item(),
                "train/masked": masked["loss"].item(),
                "train/masked_predicate_acc": float(masked["predicate_acc"]),
                "train/masked_node_acc": float(masked["node_acc"]),
                "train/logit_scale": aligner.logit_scale.exp().item(),
            }
            loop.end_step(step + 1, scalars)

    # 6. The encoder checkpoint the generator loads (also written when a finished run is re-run).
    if not (run_dir / ENCODER_DIR / "model.safetensors").is_file():
        save_pretrained_atomic(aligner.encoder, run_dir / ENCODER_DIR)
    metrics.update({"step": max(start, steps), "skipped_steps": guard.skipped})
    write_metrics(run_dir, metrics)
    log.info("align: encoder checkpoint in %s; metrics %s", run_dir / ENCODER_DIR, metrics.get("end"))
    return {
        "step": metrics["step"],
        "run_dir": str(run_dir),
        "encoder_dir": str(run_dir / ENCODER_DIR),
        "metrics": metrics,
    }
