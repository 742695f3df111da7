"""Stage ``classifier``: the relation classifier that scores generated images, trained on REAL images only.

Recipe: every camera view of the training split's scans at ``classifier.image_size`` (the generator's size),
labelled with its scan's predicates and role-typed triples (:mod:`or_synth.evaluation.relation_classifier`);
ResNet-18 from random init, AdamW, BCE with positives weighted by the class imbalance, random horizontal flips
and small shifts. Its own quality is measured on the real held-out takes (validation + test): a scorer that
cannot see a relation cannot judge a generator on it. Writes ``<run_dir>/classifier`` (config, weights,
``quality.json``), which ``python -m or_synth.evaluate classifier=...`` loads and pins by hash.

Not part of the default recipe: ``python -m or_synth.train stage=classifier`` (with ``experiment=cpu_quality``
it trains on the quality recipe's dataset at 64 px). Resumable like every stage.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from or_synth.evaluation.consistency import graph_targets, relation_scores
from or_synth.evaluation.image_sets import ImageSet, load_real_views
from or_synth.evaluation.relation_classifier import (
    WEIGHTS,
    RelationClassifier,
    RelationLabels,
    classifier_hash,
    multilabel_loss,
    triple_vocabulary,
)
from or_synth.training.common import (
    NonFiniteGuard,
    StepLog,
    StopRequest,
    TrainingInterrupted,
    epoch_batch,
    log_scalars,
    reached_step,
    resolve_device,
    resume_from_checkpoint,
    rng_state,
    save_checkpoint,
    save_resolved_config,
    step_generator,
    summary_writer,
    write_metrics,
)

log = logging.getLogger(__name__)

CLASSIFIER_DIR = "classifier"
HELD_OUT_SPLITS = ("validation", "test")


def is_complete(cfg: DictConfig) -> bool:
    return reached_step(Path(cfg.classifier.run_dir), f"{CLASSIFIER_DIR}/{WEIGHTS}", cfg.classifier.steps)


def augment(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random horizontal flips and shifts of up to ``max_shift`` px (edge-padded): presence labels do not care."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if max_shift:
        dy, dx = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
        padded = torch.nn.functional.pad(images.float(), (max_shift,) * 4, mode="replicate")
        h, w = images.shape[-2:]
        images = padded[..., max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]
        images = images.round().to(torch.uint8)
    return images


def evaluate_classifier(classifier: RelationClassifier, held_out: ImageSet, batch_size: int = 128) -> dict:
    """The classifier's quality on real held-out images: predicate macro-F1 and triple P/R/F1, per image and
    per scan, with the per-predicate table (the report flags predicates it cannot see)."""
    labels = RelationLabels(classifier.triples)
    predictions = classifier.predict(held_out.images, held_out.cameras, batch_size)
    scores = relation_scores(predictions, graph_targets(labels, held_out), held_out.scan_groups())
    scores["images"] = len(held_out)
    scores["scans"] = len({r.key for r in held_out.records})
    return scores


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
    save_resolved_config(run_dir, cfg)

    # 2. Data: real views of the training split; the triple vocabulary from its graphs.
    train = load_split_views(cfg, cfg.dataset.train_split)
    triples = triple_vocabulary({r.key: r for r in train.records}.values(), int(settings.min_triple_count))
    labels = RelationLabels(triples)
    targets = graph_targets(labels, train)
    log.info("classifier: %d real training images, %d role-typed triples", len(train), len(triples))

    # 3. Model and optimizer.
    classifier = RelationClassifier(triples, int(settings.image_size)).to(device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    pos_weights = tuple(
        ((1 - p) / p).clamp(max=settings.max_pos_weight).to(device)
        for p in (t.mean(0).clamp(min=1e-3) for t in (targets["predicates"], targets["triples"]))
    )

    def restore(weights: dict, state: dict) -> None:
        classifier.load_state_dict(weights["model"])
        optimizer.load_state_dict(state["optimizer"])

    start, metrics = resume_from_checkpoint(run_dir, cfg.trainer.resume, restore, "classifier")

    # 4. Loop.
    steps, batch_size = int(settings.steps), int(settings.batch_size)
    writer, step_log = summary_writer(run_dir / "tensorboard"), StepLog(run_dir / "train_log.jsonl", start)
    guard, stop, interrupted = NonFiniteGuard(cfg.trainer.max_bad_steps), StopRequest(), False
    progress = tqdm(range(start, steps), initial=start, total=steps, desc="classifier", dynamic_ncols=True)
    classifier.train()
    with stop:
        for step in progress:
            rows = epoch_batch(len(train), batch_size, step, cfg.seed)
            images = augment(train.images[rows], step_generator(cfg.seed, step), int(settings.max_shift))
            logits = classifier(images.to(device), train.cameras[rows].to(device))
            batch_targets = (targets["predicates"][rows].to(device), targets["triples"][rows].to(device))
            loss = multilabel_loss(logits, batch_targets, pos_weights)
            if guard.check(bool(torch.isfinite(loss)), step):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            done = step + 1
            interrupted = stop.requested and done < steps
            step_log.write({"step": done, "loss": loss.item()})
            if done % cfg.trainer.log_every == 0 or done == steps:
                log_scalars(writer, {"train/loss": loss.item()}, done)
                progress.set_postfix(loss=f"{loss.item():.4f}")
            if done % settings.ckpt_every == 0 or done == steps or interrupted:
                metrics.update({"step": done, "loss": loss.item()})
                save_checkpoint(
                    run_dir,
                    done,
                    {"model": classifier.state_dict()},
                    {"optimizer": optimizer.state_dict(), "rng": rng_state(), "metrics": metrics},
                    keep=cfg.trainer.keep_checkpoints,
                )
                write_metrics(run_dir, metrics)
            if interrupted:
                progress.close()
                writer.close()
                step_log.close()
                raise TrainingInterrupted(
                    f"classifier stopped on request at step {done} with a checkpoint in {run_dir / 'checkpoints'}; "
                    "run the same command again to resume"
                )
    progress.close()
    writer.close()
    step_log.close()

    # 5. Its own quality on real held-out takes, saved beside the weights.
    classifier = classifier.cpu().eval()
    quality = {}
    for split in HELD_OUT_SPLITS:
        held_out = load_split_views(cfg, split, settings.eval_max_scans)
        quality[split] = evaluate_classifier(classifier, held_out)
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
    return {
        "step": metrics["step"],
        "run_dir": str(run_dir),
        "classifier_dir": str(folder),
        "classifier_hash": digest,
        "quality": quality,
    }
