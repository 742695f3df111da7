"""Stage ``layout``: the graph-to-layout predictor (SG2Im's box and mask regression) on rendered layouts.

Recipe: the per-node boxes, visibility and mask crops of every training view (the renderer's annotations and
instance masks); the scene-graph encoder from stage ``align`` (trained jointly, or frozen) under a camera
embedding and three heads; box L1 + mask BCE on the nodes visible in the view + visibility BCE on all nodes;
AdamW. Measured on the validation views by mean box IoU beside the per-class mean-box baseline. Writes
``<run_dir>/predictor`` (``LayoutPredictor.from_pretrained``), which ``or_synth.sample layout=predicted`` loads.

Not part of the default recipe (``stage=all``): run it with ``python -m or_synth.train stage=layout``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from or_synth.data.layout_targets import (
    LayoutTargets,
    MeanBoxBaseline,
    load_layout_targets,
    paired_box_iou,
)
from or_synth.encoders import SceneGraphEncoder, build_scene_graph_encoder
from or_synth.generator.layout_predictor import LayoutPrediction, LayoutPredictor
from or_synth.training.batches import build_dataset, epoch_batch
from or_synth.training.checkpoints import (
    load_component,
    reached_step,
    resume_from_checkpoint,
    save_pretrained_atomic,
)
from or_synth.training.devices import autocast, resolve_device
from or_synth.training.logs import write_metrics
from or_synth.training.loop import NonFiniteGuard, TrainingLoop
from or_synth.training.record import open_run

log = logging.getLogger(__name__)

PREDICTOR_DIR = "predictor"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def is_complete(cfg: DictConfig) -> bool:
    """The predictor exists and the run's metrics say it reached the configured step count."""
    return reached_step(Path(cfg.layout.run_dir), f"{PREDICTOR_DIR}/{WEIGHTS}", cfg.layout.steps)


def build_predictor(cfg: DictConfig, vocabulary) -> LayoutPredictor:
    """Heads on the graph encoder from stage ``align`` (``layout.encoder_dir``), or on a fresh one when null."""
    if cfg.layout.encoder_dir is None:
        encoder = build_scene_graph_encoder(OmegaConf.to_container(cfg.encoder, resolve=True), vocabulary)
    else:
        folder = Path(cfg.layout.encoder_dir)
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"no encoder checkpoint at layout.encoder_dir={folder}: run stage=align first (same name=...), "
                "or set layout.encoder_dir=null to start from a fresh encoder"
            )
        encoder = load_component(
            SceneGraphEncoder.from_pretrained,
            folder,
            "layout.encoder_dir",
            "run stage=align again (trainer.resume=false), point layout.encoder_dir at an intact encoder folder, "
            "or set layout.encoder_dir=null to start from a fresh encoder",
        )
    return LayoutPredictor.from_encoder(
        encoder,
        mask_size=int(cfg.layout.mask_size),
        hidden=int(cfg.layout.hidden),
        mask_channels=int(cfg.layout.mask_channels),
        mask_threshold=float(cfg.layout.mask_threshold),
    )


def node_classes(predictor: LayoutPredictor, targets: LayoutTargets) -> torch.Tensor:
    """(P,) the encoder's node-label id of every node row (role for people, object class otherwise): the
    "class" of the per-class IoU and of the mean-box baseline."""
    per_graph = [predictor.encoder.node_labels_of(graph).cpu() for graph in targets.graphs]
    return torch.cat([per_graph[int(g)] for g in targets.graph_index])


def layout_losses(prediction: LayoutPrediction, targets: LayoutTargets, rows: torch.Tensor, weights) -> dict:
    """Box L1 and mask BCE (against the true crop) on visible nodes, visibility BCE on all nodes."""
    device = prediction.boxes.device
    visible = targets.visible[rows].to(device)
    visibility = F.binary_cross_entropy_with_logits(prediction.visibility_logits, visible.float())
    box = mask = prediction.boxes.sum() * 0  # a view where nothing is visible still gets a graph
    if visible.any():
        seen = rows[visible.cpu()]
        box = F.l1_loss(prediction.boxes[visible], targets.boxes[seen].to(device))
        mask = F.binary_cross_entropy_with_logits(
            prediction.mask_logits[visible], targets.crops_float(seen).to(device)
        )
    total = weights.box * box + weights.mask * mask + weights.visibility * visibility
    return {"loss": total, "box_l1": box, "mask_bce": mask, "visibility_bce": visibility}


@torch.no_grad()
def predict_boxes(
    predictor: LayoutPredictor, targets: LayoutTargets, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 4) predicted boxes and (P,) visibility probabilities of every node row of ``targets``."""
    was_training = predictor.training
    predictor.eval()
    boxes, visibility = [], []
    for start in range(0, len(targets), batch_size):
        graphs, cameras, _ = targets.batch(torch.arange(start, min(start + batch_size, len(targets))))
        prediction = predictor(graphs.to(device), cameras.to(device), with_masks=False)
        boxes.append(prediction.boxes.float().cpu())
        visibility.append(torch.sigmoid(prediction.visibility_logits.float()).cpu())
    predictor.train(was_training)
    return torch.cat(boxes), torch.cat(visibility)


def evaluate_layout(
    predictor: LayoutPredictor,
    targets: LayoutTargets,
    classes: torch.Tensor,
    baseline: MeanBoxBaseline,
    batch_size: int,
    device: torch.device,
) -> dict:
    """Mean box IoU over the visible nodes of ``targets`` for the predictor and the mean-box baseline, and how
    often the visibility head is right."""
    boxes, visibility = predict_boxes(predictor, targets, batch_size, device)
    seen = targets.visible
    truth = targets.boxes[seen]
    return {
        "box_iou": paired_box_iou(boxes[seen], truth).mean().item(),
        "baseline_box_iou": paired_box_iou(baseline.predict(targets, classes)[seen], truth).mean().item(),
        "visibility_accuracy": ((visibility >= 0.5) == seen).float().mean().item(),
        "boxes": int(seen.sum()),
    }


def train_layout(cfg: DictConfig) -> dict:
    """Stage ``layout``: train the predictor; returns ``{"step", "run_dir", "predictor_dir", "metrics"}``."""
    # 1. Setup: seed, device, run folder.
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.trainer.device)
    run_dir = Path(cfg.layout.run_dir)
    run = open_run(cfg, "layout")  # reads only: refuses a resume under a changed configuration
    settings = cfg.layout

    # 2. Data: per-node targets of every training and validation view (graphs only; no RGB images read).
    train_set = build_dataset(cfg.dataset, cfg.dataset.train_split, load_images=False)
    train = load_layout_targets(train_set, int(settings.mask_size))
    val = load_layout_targets(
        build_dataset(cfg.dataset, cfg.dataset.val_split, load_images=False), int(settings.mask_size)
    )

    # 3. Model and optimizer: the encoder at its own learning rate (or frozen), the heads at `lr`.
    predictor = build_predictor(cfg, train_set.vocabulary).to(device)
    encoder_params = list(predictor.encoder.parameters())
    predictor.encoder.requires_grad_(bool(settings.train_encoder))
    encoder_ids = {id(p) for p in encoder_params}
    groups = [{"params": [p for p in predictor.parameters() if id(p) not in encoder_ids]}]
    if settings.train_encoder:
        groups.append({"params": encoder_params, "lr": settings.encoder_lr})
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    train_classes, val_classes = node_classes(predictor, train), node_classes(predictor, val)
    baseline = MeanBoxBaseline(train, train_classes)
    log.info(
        "layout: %d train / %d val views (%d / %d visible boxes), predictor %.2f M parameters",
        len(train),
        len(val),
        int(train.visible.sum()),
        int(val.visible.sum()),
        sum(p.numel() for p in predictor.parameters()) / 1e6,
    )

    # 4. Resume: weights, optimizer, RNG; the data order follows from the step.
    def restore(weights: dict, state: dict) -> None:
        predictor.load_state_dict(weights["model"])
        optimizer.load_state_dict(state["optimizer"])

    start, metrics = resume_from_checkpoint(run_dir, cfg.trainer.resume, restore, "layout")
    run.write(start)  # config.yaml and the record (a fresh start), or what a resume changed

    # What a checkpoint holds (and what the loop samples or evaluates at its cadence).
    def training_state() -> tuple[dict, dict]:
        return {"model": predictor.state_dict()}, {"optimizer": optimizer.state_dict()}

    def evaluate(done: int) -> dict:
        """Mean box IoU on the validation views (and the mean-box baseline's): ``metrics["start"]`` before the
        first step, ``metrics["end"]`` after a later one."""
        key = "start" if done == 0 else "end"
        metrics[key] = evaluate_layout(predictor, val, val_classes, baseline, settings.batch_size, device)
        return {f"val/{k}": v for k, v in metrics[key].items()}

    def save_predictor() -> None:
        save_pretrained_atomic(predictor, run_dir / PREDICTOR_DIR)

    # 5. Loop.
    guard = NonFiniteGuard(cfg.trainer.max_bad_steps)
    steps, batch_size = int(settings.steps), int(settings.batch_size)
    with TrainingLoop.for_stage(
        cfg,
        "layout",
        start,
        checkpoint=training_state,
        metrics=metrics,
        sample=evaluate,
        export=save_predictor,
        sample_first=True,
    ) as loop:
        predictor.train()
        for step in loop:
            graphs, cameras, rows = train.batch(epoch_batch(len(train), batch_size, step, cfg.seed))
            with autocast(device, cfg.trainer.precision):
                prediction = predictor(graphs.to(device), cameras.to(device))
            losses = layout_losses(_float(prediction), train, rows, settings.loss)
            loss = losses["loss"]
            if guard.check(bool(torch.isfinite(loss)), step):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(predictor.parameters(), settings.grad_clip)
                optimizer.step()
            loop.end_step(step + 1, {f"train/{k}": v.item() for k, v in losses.items()})

    # 6. The predictor folder (also written when a finished run is re-run) and the final metrics.
    predictor_dir = run_dir / PREDICTOR_DIR
    if not (predictor_dir / WEIGHTS).is_file():
        save_pretrained_atomic(predictor, predictor_dir)
    metrics.update({"step": max(start, steps), "skipped_steps": guard.skipped})
    write_metrics(run_dir, metrics)
    end = metrics.get("end", {})
    log.info(
        "layout: predictor in %s; validation box IoU %.3f (per-class mean box %.3f)",
        predictor_dir,
        end.get("box_iou", float("nan")),
        end.get("baseline_box_iou", float("nan")),
    )
    return {
        "step": metrics["step"],
        "run_dir": str(run_dir),
        "predictor_dir": str(predictor_dir),
        "metrics": metrics,
    }


def _float(prediction: LayoutPrediction) -> LayoutPrediction:
    """Losses in fp32 whatever the autocast precision."""
    return LayoutPrediction(
        prediction.boxes.float(),
        prediction.mask_logits.float(),
        prediction.visibility_logits.float(),
        prediction.node_batch,
    )
