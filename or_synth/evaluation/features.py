"""Feature spaces the fidelity metrics compare in, and the reference caches: what a real split (or the ceiling's
real views) gives once per dataset, classifier and preprocessing, so every model evaluated against it reuses it.

- :class:`FeatureSpace`: an extractor with the name and weights hash its cards and cache keys carry;
  :func:`classifier_space` (the relation classifier's pooled features, the offline second opinion) and
  :func:`inception_space` (the standard FID Inception);
- :func:`reference_features`: a real split's features in a space, from the cache when present;
- :func:`ceiling_predictions`: the relation classifier's outputs on the real counterparts of the generated
  images (the ceiling's input), cached the same way.

The statistics themselves (Fréchet distance, KID, the cache's file format) are in
:mod:`or_synth.evaluation.fidelity`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import torch

from or_synth.data import PREDICATES
from or_synth.evaluation.fidelity import FeatureStats, ReferenceCache, inception_extractor
from or_synth.evaluation.image_sets import PREPROCESSING, ImageSet, dataset_fingerprint, load_real_views
from or_synth.evaluation.pairs import PairSet
from or_synth.evaluation.relation_classifier import RelationClassifier

# (uint8 images (B, 3, H, W), cameras (B,)) -> features (B, D)
Extract = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FeatureSpace:
    """A feature extractor with the name, weights hash and batch size its cards and cache keys need."""

    def __init__(self, name: str, extract: Extract, weights_hash: str, batch_size: int) -> None:
        self.name, self.extract, self.weights_hash, self.batch_size = name, extract, weights_hash, batch_size

    @torch.no_grad()
    def __call__(self, images: ImageSet) -> FeatureStats:
        parts = [
            self.extract(images.images[s : s + self.batch_size], images.cameras[s : s + self.batch_size])
            for s in range(0, len(images), self.batch_size)
        ]
        return FeatureStats(torch.cat(parts).double().numpy(), meta={"extractor": self.name})


def classifier_space(classifier: RelationClassifier, digest: str, batch_size: int) -> FeatureSpace:
    """The relation classifier's pooled ResNet-18 features (trained on real images of this domain)."""
    classifier.eval()
    return FeatureSpace(
        "relation-classifier-resnet18-pool", lambda x, c: classifier.features(x), digest, batch_size
    )


def inception_space(weights: str | None, allow_download: bool, batch_size: int) -> FeatureSpace:
    """The standard FID Inception-v3 (:func:`~or_synth.evaluation.fidelity.inception_extractor`; never other
    weights under the name FID)."""
    extractor, digest = inception_extractor(weights, allow_download)
    extractor.eval()
    return FeatureSpace(
        "fid-inception-v3 (torch-fidelity, TF1-compatible bilinear resize to 299)",
        lambda x, c: extractor(x),
        digest,
        batch_size,
    )


def _dataset_fields(root: Path, split: str) -> dict:
    return {
        "dataset_path": str(root.resolve()),
        "dataset_hash": dataset_fingerprint(root, split),
        "split": split,
    }


def reference_features(
    cache: ReferenceCache,
    root: Path,
    space: FeatureSpace,
    split: str,
    cameras: list[int],
    size: int,
    timings: dict,
    *,
    max_scans: int | None = None,
    progress: bool = False,
) -> tuple[FeatureStats, ImageSet | None, bool]:
    """Features of a real split, from the cache when present.

    Returns:
        (stats, the images if they were read, whether the cache served them); ``stats.meta["ids"]`` names the
        views in row order.
    """
    key = cache.key(
        **_dataset_fields(root, split),
        size=size,
        cameras=cameras,
        extractor=space.name,
        weights_hash=space.weights_hash,
        preprocessing=PREPROCESSING,
        max_scans=max_scans,
    )
    started = time.perf_counter()
    stats = cache.get(key)
    if stats is not None:
        timings[f"reference_{split}_{space.name}_cached"] = round(time.perf_counter() - started, 2)
        return stats, None, True
    images = load_real_views(root, split, cameras, size, limit=max_scans, progress=progress)
    stats = space(images)
    stats.meta.update(split=split, n=len(images), ids=images.ids)
    cache.put(key, stats)
    timings[f"reference_{split}_{space.name}"] = round(time.perf_counter() - started, 2)
    return stats, images, False


def ceiling_predictions(
    cache: ReferenceCache,
    root: Path,
    classifier: RelationClassifier,
    digest: str,
    real: ImageSet,
    pairs: PairSet | None,
    split: str,
    timings: dict,
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """The classifier's outputs on the real counterparts (the ceiling's input), cached like reference features:
    they depend only on the real dataset, the classifier and which views (and boxes) are scored, so every model
    evaluated on the same held-out views shares them.

    Returns:
        What :meth:`RelationClassifier.predict` returns: ``features``, ``predicates``, ``triples`` per view and,
        with ``pairs``, ``pairs`` per pair.
    """
    fields = {
        **_dataset_fields(root, split),
        "size": real.size[0],
        "cameras": sorted(set(real.cameras.tolist())),
        "weights_hash": digest,
        "preprocessing": PREPROCESSING,
        "views": hashlib.sha256("\n".join(real.ids).encode()).hexdigest(),
    }
    image_key = cache.key(**fields, extractor="relation classifier outputs (ceiling views)")
    pair_key = None
    if pairs is not None:
        boxes = torch.cat([pairs.image_index[:, None].float(), pairs.subject_box, pairs.object_box], 1)
        pair_key = cache.key(
            **fields,
            extractor="relation classifier pair outputs (ceiling views)",
            boxes=hashlib.sha256(boxes.numpy().tobytes()).hexdigest(),
        )
    started = time.perf_counter()
    columns = {
        "features": classifier.feature_dim,
        "predicates": len(PREDICATES),
        "triples": len(classifier.triples),
    }
    images, pair_stats = cache.get(image_key), cache.get(pair_key) if pair_key else None
    if images is not None and (pair_key is None or pair_stats is not None):
        parts = torch.from_numpy(images.features).float().split(list(columns.values()), dim=1)
        out = dict(zip(columns, parts, strict=True))
        if pair_stats is not None:
            out["pairs"] = torch.from_numpy(pair_stats.features).float()
        timings["ceiling_predictions_cached"] = round(time.perf_counter() - started, 2)
        return out
    out = classifier.predict(real.images, real.cameras, batch_size, pairs=pairs, records=real.records)
    table = torch.cat([out[name].reshape(len(real), -1) for name in columns], 1).double().numpy()
    cache.put(image_key, FeatureStats(table, meta={"columns": columns, "ids": real.ids}))
    if pair_key is not None:
        cache.put(pair_key, FeatureStats(out["pairs"].double().numpy(), meta={"n_pairs": len(pairs)}))
    timings["ceiling_predictions"] = round(time.perf_counter() - started, 2)
    return out
