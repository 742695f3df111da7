"""Stage ``classifier``: the relation classifier that scores generated images, trained on REAL images only.

Recipe: every camera view of the training split's scans at ``classifier.image_size`` (the generator's size),
labelled with its scan's predicates and role-typed triples (:mod:`or_synth.evaluation.relation_classifier`);
ResNet-18 from random init, AdamW, BCE with positives weighted by the class imbalance, random horizontal flips
and small shifts. On a dataset with 2D boxes (a rendered one; ``classifier.pairs=auto``) the pair-level head
learns at the same time, on every ordered pair of nodes both visible in a view (the renderer's boxes, moved
with the flips and shifts), its BCE added with weight ``classifier.pair_loss_weight``. Its own quality is measured on the real held-out takes (validation + test): a scorer that
cannot see a relation cannot judge a generator on it. Writes ``<run_dir>/classifier`` (config, weights,
``quality.json``), which ``python -m or_synth.evaluate classifier=...`` loads and pins by hash.

Not part of the default recipe: ``python -m or_synth.train stage=classifier`` (with ``experiment=cpu_quality``
it trains on the quality recipe's dataset at 64 px). Resumable like every stage.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from or_synth.evaluation.consistency import graph_targets, pair_scores, relation_scores
from or_synth.evaluation.image_sets import ImageSet, load_real_views
from or_synth.evaluation.pairs import PairSet, annotated_pairs, has_boxes
from or_synth.evaluation.relation_classifier import (
    WEIGHTS,
    RelationClassifier,
    RelationLabels,
    classifier_hash,
    multilabel_loss,
    node_label_vocabulary,
    triple_vocabulary,
)
from or_synth.training.batches import epoch_batch, step_generator
from or_synth.training.checkpoints import reached_step, resume_from_checkpoint
from or_synth.training.devices import resolve_device
from or_synth.training.logs import write_metrics
from or_synth.training.loop import NonFiniteGuard, TrainingLoop
from or_synth.training.record import open_run

log = logging.getLogger(__name__)

CLASSIFIER_DIR = "classifier"
HELD_OUT_SPLITS = ("validation", "test")


def is_complete(cfg: DictConfig) -> bool:
    return reached_step(Path(cfg.classifier.run_dir), f"{CLASSIFIER_DIR}/{WEIGHTS}", cfg.classifier.steps)


def augment(
    images: torch.Tensor, generator: torch.Generator, max_shift: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Random horizontal flips and shifts of up to ``max_shift`` px (edge-padded): presence labels do not care.

    Returns the images, which were flipped (B,) and the shift ``(dy, dx)`` (content moves by ``-dy, -dx``), so
    boxes can follow (:func:`augment_boxes`).
    """
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    dy = dx = 0
    if max_shift:
        dy, dx = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
        padded = torch.nn.functional.pad(images.float(), (max_shift,) * 4, mode="replicate")
        h, w = images.shape[-2:]
        images = padded[..., max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]
        images = images.round().to(torch.uint8)
    return images, flip, (dy, dx)


def augment_boxes(
    boxes: torch.Tensor, flipped: torch.Tensor, shift: tuple[int, int], size: int
) -> torch.Tensor:
    """Normalised boxes (P, 4) moved as :func:`augment` moved their images (``flipped``: (P,) per box)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    x0, x1 = torch.where(flipped, 1 - x1, x0), torch.where(flipped, 1 - x0, x1)
    dy, dx = shift[0] / size, shift[1] / size
    return torch.stack([x0 - dx, y0 - dy, x1 - dx, y1 - dy], -1).clamp(0, 1)


def evaluate_classifier(
    classifier: RelationClassifier, held_out: ImageSet, pairs: PairSet | None = None, batch_size: int = 128
) -> dict:
    """The classifier's quality on real held-out images: predicate macro-F1 and triple P/R/F1, per image and
    per scan, with the per-predicate table (the report flags predicates it cannot see); with ``pairs`` also the
    pair-level scores on the real boxes."""
    labels = RelationLabels(classifier.triples)
    predictions = classifier.predict(
        held_out.images, held_out.cameras, batch_size, pairs=pairs, records=held_out.records
    )
    scores = relation_scores(predictions, graph_targets(labels, held_out), held_out.scan_groups())
    scores["images"] = len(held_out)
    scores["scans"] = len({r.key for r in held_out.records})
    if pairs is not None:
        scores["pairs"] = pair_scores(
            predictions["pairs"], pairs.targets(held_out.records), pairs.groups(held_out.records)
        )
        scores["pairs"]["n_pairs"] = len(pairs)
    return scores


def use_pairs(cfg: DictConfig) -> bool:
    """``classifier.pairs``: auto trains the pair head where the dataset has boxes; true demands them."""
    setting = cfg.classifier.get("pairs", "auto")
    available = has_boxes(cfg.dataset.root)
    if setting == "auto":
        return available
    if bool(setting) and not available:
        raise FileNotFoundError(
            f"classifier.pairs=true, but {cfg.dataset.root} has no 2D boxes (no or_synth_render.json / "
            "or_synth_annotations/: real 4D-OR has none); use a rendered dataset or classifier.pairs=auto"
        )
    return bool(setting)


def load_split_views(cfg: DictConfig, split: str, limit: int | None = None) -> ImageSet:
    return load_real_views(
        cfg.dataset.root,
        split,
        cfg.classifier.cameras,
        int(cfg.classifier.image_size),
        limit=limit,
        progress=True,
    )


def train_classifier(cfg: DictConfig) -> dict:
    """Stage ``classifier``; returns ``{"step", "run_dir", "classifier_dir", "classifier_hash", "quality"}``."""
    # 1. Setup.
    settings = cfg.classifier
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.trainer.device)
    run_dir = Path(settings.run_dir)
    run = open_run(cfg, "classifier")  # reads only: refuses a resume under a changed configuration

    # 2. Data: real views of the training split; the triple vocabulary from its graphs.
    train = load_split_views(cfg, cfg.dataset.train_split)
    triples = triple_vocabulary({r.key: r for r in train.records}.values(), int(settings.min_triple_count))
    labels = RelationLabels(triples)
    targets = graph_targets(labels, train)
    log.info("classifier: %d real training images, %d role-typed triples", len(train), len(triples))
    train_pairs, node_labels = None, ()
    if use_pairs(cfg):
        train_pairs = annotated_pairs(cfg.dataset.root, train, "annotations")
        node_labels = node_label_vocabulary({r.key: r for r in train.records}.values())
        pair_targets = train_pairs.targets(train.records)
        log.info("classifier: %d boxed (subject, object) pairs for the pair-level head", len(train_pairs))

    # 3. Model and optimizer.
    classifier = RelationClassifier(triples, int(settings.image_size), node_labels).to(device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    pos_weights = tuple(
        ((1 - p) / p).clamp(max=settings.max_pos_weight).to(device)
        for p in (t.mean(0).clamp(min=1e-3) for t in (targets["predicates"], targets["triples"]))
    )

    if train_pairs is not None:
        subject_ids, object_ids = (classifier.label_ids(x) for x in train_pairs.labels(train.records))
        prevalence = pair_targets.mean(0).clamp(min=1e-3)
        pair_pos_weight = ((1 - prevalence) / prevalence).clamp(max=settings.max_pos_weight).to(device)

    def restore(weights: dict, state: dict) -> None:
        classifier.load_state_dict(weights["model"])
        optimizer.load_state_dict(state["optimizer"])

    start, metrics = resume_from_checkpoint(run_dir, cfg.trainer.resume, restore, "classifier")
    run.write(start)  # config.yaml and the record (a fresh start), or what a resume changed

    # What a checkpoint holds (and what the loop samples or evaluates at its cadence).
    def training_state() -> tuple[dict, dict]:
        return {"model": classifier.state_dict()}, {"optimizer": optimizer.state_dict()}

    # 4. Loop.
    steps, batch_size = int(settings.steps), int(settings.batch_size)
    guard = NonFiniteGuard(cfg.trainer.max_bad_steps)
    with TrainingLoop.for_stage(cfg, "classifier", start, checkpoint=training_state, metrics=metrics) as loop:
        classifier.train()
        for step in loop:
            rows = epoch_batch(len(train), batch_size, step, cfg.seed)
            images, flipped, shift = augment(
                train.images[rows], step_generator(cfg.seed, step), int(settings.max_shift)
            )
            pooled, maps = classifier.feature_maps(images.to(device))
            logits = classifier.heads(pooled, train.cameras[rows].to(device))
            batch_targets = (targets["predicates"][rows].to(device), targets["triples"][rows].to(device))
            loss = multilabel_loss(logits, batch_targets, pos_weights)
            record = {}
            if train_pairs is not None:
                index, position = train_pairs.in_images(rows)
                if len(index):
                    size = images.shape[-1]
                    boxes = [
                        augment_boxes(b[index], flipped[position], shift, size).to(device)
                        for b in (train_pairs.subject_box, train_pairs.object_box)
                    ]
                    pair_logits = classifier.pair_logits(
                        maps,
                        position.to(device),
                        *boxes,
                        subject_ids[index].to(device),
                        object_ids[index].to(device),
                    )
                    pair_loss = F.binary_cross_entropy_with_logits(
                        pair_logits, pair_targets[index].to(device), pos_weight=pair_pos_weight
                    )
                    loss = loss + float(settings.pair_loss_weight) * pair_loss
                    record["pair_loss"] = pair_loss.item()
            if guard.check(bool(torch.isfinite(loss)), step):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            loop.end_step(step + 1, {"train/loss": loss.item()}, line={"loss": loss.item(), **record})

    # 5. Its own quality on real held-out takes, saved beside the weights.
    classifier = classifier.cpu().eval()
    quality = {}
    for split in HELD_OUT_SPLITS:
        held_out = load_split_views(cfg, split, settings.eval_max_scans)
        pairs = (
            annotated_pairs(cfg.dataset.root, held_out, "annotations") if train_pairs is not None else None
        )
        quality[split] = evaluate_classifier(classifier, held_out, pairs)
    training = {
        "dataset": str(cfg.dataset.root),
        "split": cfg.dataset.train_split,
        "images": len(train),
        "cameras": list(settings.cameras),
        "steps": steps,
        "batch_size": batch_size,
        "lr": float(settings.lr),
        "seed": int(cfg.seed),
        "real_images_only": True,
        "pairs": len(train_pairs) if train_pairs is not None else 0,
        "pair_loss_weight": float(settings.pair_loss_weight) if train_pairs is not None else None,
    }
    folder = classifier.save_pretrained(run_dir / CLASSIFIER_DIR, quality=quality, training=training)
    digest = classifier_hash(folder)
    metrics.update({"step": max(start, steps), "quality": quality, "classifier_hash": digest})
    write_metrics(run_dir, metrics)
    for split, scores in quality.items():
        log.info(
            "classifier on real %s images: predicate macro-F1 %.3f per image, %.3f per scan; triple F1 %.3f",
            split,
            scores["predicate_macro_f1_per_image"],
            scores["predicate_macro_f1_per_scan"],
            scores["triples_per_scan"]["f1"],
        )
        if "pairs" in scores:
            log.info(
                "classifier on real %s pairs: predicate macro-F1 %.3f per view, %.3f per scan; fact F1 %.3f",
                split,
                scores["pairs"]["predicate_macro_f1_per_view"],
                scores["pairs"]["predicate_macro_f1_per_scan"],
                scores["pairs"]["facts_per_view"]["f1"],
            )
    return {
        "step": metrics["step"],
        "run_dir": str(run_dir),
        "classifier_dir": str(folder),
        "classifier_hash": digest,
        "quality": quality,
    }
