"""Memorisation: the nearest real training image of every generated image (relation-classifier features, then
pixel SSIM); near-duplicates flagged and saved side by side (:mod:`or_synth.evaluation.memorisation`)."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf

from or_synth.data import read_image
from or_synth.evaluation.cards import make_card
from or_synth.evaluation.context import Evaluation
from or_synth.evaluation.features import classifier_space, reference_features
from or_synth.evaluation.memorisation import camera_of, memorisation_report, nearest_training_images
from or_synth.evaluation.registry import Metric, Need


def score_memorisation(run: Evaluation) -> None:
    settings, generated, features = run.cfg.memorisation, run.generated, run.generated_predictions["features"]
    space = classifier_space(run.classifier, run.classifier_digest, run.batch_size)
    train_stats, train_images, _ = reference_features(
        run.reference_cache, run.root, space, "train", run.cameras, run.size, run.timings,
        max_scans=settings.training_max_scans, progress=bool(run.cfg.progress),
    )  # fmt: skip
    # A copy is of its own camera's training image: the search stays within each camera.
    train_cameras = np.array([camera_of(i) or 0 for i in train_stats.meta["ids"]])
    heldout = {}
    if run.uses(Need.REAL_COUNTERPARTS):
        # Calibration, free where graph consistency has read them: real held-out images copy no training image.
        ceiling = run.ceiling()
        heldout = {
            "heldout_images": ceiling.views.images,
            "heldout_features": ceiling.predictions["features"],
            "heldout_cameras": ceiling.views.cameras.numpy(),
        }
    # Only the training images that are someone's nearest neighbour are read (or kept): the search runs on the
    # cached features, and restricting it to those candidates leaves every nearest neighbour unchanged.
    queries = [(features, generated.cameras.numpy())]
    if heldout:
        queries.append((heldout["heldout_features"], heldout["heldout_cameras"]))
    found = [
        nearest_training_images(q, train_stats.features, generated_groups=c, training_groups=train_cameras)[0]
        for q, c in queries
    ]
    candidates = np.unique(np.concatenate([f[f >= 0] for f in found]))
    train_ids = [train_stats.meta["ids"][i] for i in candidates]
    candidate_images = (
        train_images.images[candidates]
        if train_images is not None
        else torch.stack([read_image(run.root / i, (run.size, run.size)) for i in train_ids])
    )
    report = memorisation_report(
        generated.images, generated.ids, features,
        candidate_images, train_ids, train_stats.features[candidates],
        feature_threshold=float(settings.feature_threshold), ssim_threshold=float(settings.ssim_threshold),
        pairs_dir=run.out / "memorisation_pairs", max_pairs=int(settings.max_pairs), **heldout,
        generated_cameras=generated.cameras.numpy(), training_cameras=train_cameras[candidates],
    )  # fmt: skip
    report["summary"]["n_training"] = train_stats.n  # searched: all of them (read: the candidates)
    summary = report["summary"]
    run.cards["memorisation"] = make_card(
        "memorisation (near-duplicates of real training images)",
        {k: summary[k] for k in ("n_flagged", "fraction_flagged", "similarity_median", "ssim_median")},
        implementation="or_synth.evaluation.memorisation (classifier-feature cosine NN + skimage SSIM)",
        **run.common,
        weights_hash=run.classifier_digest,
        split="train",
        n_real=train_stats.n,
        thresholds=dict(OmegaConf.to_container(settings)),
        search=report["search"],
        warnings=[],
    )
    run.details["memorisation"] = report


MEMORISATION = Metric(
    "memorisation",
    score_memorisation,
    cards=("memorisation",),
    needs=frozenset({Need.GENERATED, Need.CLASSIFIER, Need.CLASSIFIER_PASS}),
    summary="nearest real training image of every generated image; near-duplicates flagged and saved",
)
