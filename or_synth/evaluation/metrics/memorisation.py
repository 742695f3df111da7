"""Memorisation: the nearest real training image of every generated image (relation-classifier features, then
pixel SSIM); near-duplicates flagged and saved side by side (:mod:`or_synth.evaluation.memorisation`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from or_synth.data import SPLIT_TAKES, read_image
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
    if run.generated.takes & set(
        SPLIT_TAKES["train"]
    ):  # training graphs (an export): a copy of its own render?
        report["source_copy"] = source_copy(run, space)
    summary = report["summary"]
    run.cards["memorisation"] = make_card(
        "memorisation (near-duplicates of real training images)",
        {
            **{k: summary[k] for k in ("n_flagged", "fraction_flagged", "similarity_median", "ssim_median")},
            **({"source_copy": report["source_copy"].get("summary")} if "source_copy" in report else {}),
        },
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


RERENDER_SEED_OFFSET = 1000  # the "no copying" reference is rendered with the dataset's seed + this


def source_copy(run: Evaluation, space) -> dict:
    """Images of TRAINING graphs (an export): each against its own source render (same scan, same camera), beside
    an independent render of the same graph (another seed, the dataset's render settings) against the same
    source render: how close a picture of that graph comes to the dataset's without copying it. A generated
    image closer to its source than the independent render is a likely copy."""
    from or_synth.data.io import file_sha256
    from or_synth.evaluation.image_sets import load_real_counterparts
    from or_synth.evaluation.memorisation import pixel_ssim
    from or_synth.render.pipeline import render_again

    generated = run.generated
    keys = sorted({r.key for r in generated.records})
    settings = run.root / "or_synth_render.json"
    if not settings.is_file():
        return {
            "measured": False,
            "why": f"{run.root} is not a rendered dataset: no independent render to compare",
        }
    seed = int(json.loads(settings.read_text())["config"]["seed"]) + RERENDER_SEED_OFFSET
    digest = hashlib.sha256(json.dumps([keys, seed, file_sha256(settings)]).encode()).hexdigest()[:12]
    again = render_again(
        run.root, keys, Path(run.cfg.cache_dir).expanduser() / "rerender" / digest / "data", seed
    )
    source, independent = (
        load_real_counterparts(run.root, generated),
        load_real_counterparts(again, generated),
    )
    features = {
        name: space(images).features for name, images in (("source", source), ("independent", independent))
    }
    features["generated"] = run.generated_predictions["features"].double().numpy()

    def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)

    rows = {
        name: {
            "similarity": cosine(features[name], features["source"]),
            "ssim": np.array([pixel_ssim(x, y) for x, y in zip(images.images, source.images, strict=True)]),
        }
        for name, images in (("generated", generated), ("independent", independent))
    }
    closer = (rows["generated"]["ssim"] > rows["independent"]["ssim"]) & (
        rows["generated"]["similarity"] > rows["independent"]["similarity"]
    )
    summary = {
        "n": len(generated),
        "generated_to_source": {k: round(float(np.median(v)), 4) for k, v in rows["generated"].items()},
        "independent_render_to_source": {
            k: round(float(np.median(v)), 4) for k, v in rows["independent"].items()
        },
        "fraction_closer_than_independent_render": round(float(closer.mean()), 4),
        "independent_render_seed": seed,
    }
    return {
        "measured": True,
        "summary": summary,
        "statistic": "medians of cosine similarity (classifier features) and pixel SSIM",
    }


MEMORISATION = Metric(
    "memorisation",
    score_memorisation,
    cards=("memorisation",),
    needs=frozenset({Need.GENERATED, Need.CLASSIFIER, Need.CLASSIFIER_PASS}),
    summary="nearest real training image of every generated image; near-duplicates flagged and saved",
)
