"""Does the generator copy its training images? The nearest training image of each, in features and pixels.

4D-OR frames are consecutive at 1 fps, so near-duplicates are easy to memorise (docs/prior_work.md, FID
pitfall 7). A copy shows up as a generated image whose nearest training image is close both in feature space
(cosine similarity) and in pixels (SSIM). Real held-out images give the calibration baseline: they are not
memorised, so their nearest-training similarity is what "no copying" looks like on this data.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def _feature_matrix(name: str, features: Any) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        matrix = features.detach().cpu().to(torch.float64)
    else:
        matrix = torch.from_numpy(np.asarray(features, dtype=np.float64))
    if matrix.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return matrix


def nearest_training_images(
    generated_features: Any,
    training_features: Any,
    *,
    metric: str = "cosine",
    chunk_size: int = 1024,
    generated_groups: Any = None,
    training_groups: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index and similarity of the nearest training feature for every generated feature; with groups (e.g. the
    camera of every image) only among the training images of the same group (a copy of camera 1's training image
    is a camera-1 image: searching across cameras finds look-alike views, not copies). A generated image whose
    group no training image has gets index -1 and similarity -inf.

    Similarities are computed block by block (``chunk_size`` rows by ``chunk_size * 8`` columns), so memory
    stays bounded however large the training set is. Ties go to the lowest training index.

    Args:
        generated_features: (G, D) numpy array or tensor.
        training_features: (T, D).
        metric: "cosine" (the only one so far).

    Returns:
        (indices (G,) int64, similarities (G,) float64).
    """
    if metric != "cosine":
        raise ValueError(f"unknown metric {metric!r}; supported: 'cosine'")
    if (generated_groups is None) != (training_groups is None):
        raise ValueError("pass generated_groups and training_groups together, or neither")
    if generated_groups is not None:
        return _nearest_within_groups(
            generated_features, training_features, np.asarray(generated_groups), np.asarray(training_groups),
            chunk_size,
        )  # fmt: skip
    generated = _feature_matrix("generated_features", generated_features)
    training = _feature_matrix("training_features", training_features)
    if generated.shape[1] != training.shape[1]:
        raise ValueError(
            f"feature sizes differ: generated {generated.shape[1]}, training {training.shape[1]}"
        )
    if training.shape[0] == 0:
        raise ValueError("training_features is empty")
    generated = torch.nn.functional.normalize(generated, dim=1)
    training = torch.nn.functional.normalize(training, dim=1)

    best_similarity = torch.full((generated.shape[0],), -torch.inf, dtype=torch.float64)
    best_index = torch.zeros(generated.shape[0], dtype=torch.int64)
    column_chunk = chunk_size * 8
    for row in range(0, generated.shape[0], chunk_size):
        rows = slice(row, row + chunk_size)
        for column in range(0, training.shape[0], column_chunk):
            block = generated[rows] @ training[column : column + column_chunk].T  # (g, t)
            similarity, index = block.max(dim=1)
            # Strictly greater keeps the earliest index on ties across blocks.
            better = similarity > best_similarity[rows]
            best_similarity[rows] = torch.where(better, similarity, best_similarity[rows])
            best_index[rows] = torch.where(better, index + column, best_index[rows])
    return best_index.numpy(), best_similarity.numpy()


def _nearest_within_groups(
    generated_features: Any,
    training_features: Any,
    groups: np.ndarray,
    training_groups: np.ndarray,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    generated = _feature_matrix("generated_features", generated_features)
    training = _feature_matrix("training_features", training_features)
    if len(groups) != generated.shape[0] or len(training_groups) != training.shape[0]:
        raise ValueError(
            f"groups do not match features: {len(groups)} for {generated.shape[0]} generated, "
            f"{len(training_groups)} for {training.shape[0]} training"
        )
    indices = np.full(generated.shape[0], -1, dtype=np.int64)
    similarities = np.full(generated.shape[0], -np.inf)
    for group in np.unique(groups):
        rows, columns = np.flatnonzero(groups == group), np.flatnonzero(training_groups == group)
        if columns.size == 0:
            continue
        found, similarity = nearest_training_images(generated[rows], training[columns], chunk_size=chunk_size)
        indices[rows], similarities[rows] = columns[found], similarity
    return indices, similarities


def camera_of(image_id: str) -> int | None:
    """The camera in a 4D-OR image name (``.../camera03_colorimage-...``, ``..._cam3...``), or None."""
    match = re.search(r"camera0?(\d)", image_id) or re.search(r"cam(\d)", image_id)
    return int(match.group(1)) if match else None


def _hwc_uint8(name: str, image: Any) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"{name} must be a uint8 image (3, H, W), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array.transpose(1, 2, 0))


def _resized_like(image_hwc: np.ndarray, like_hwc: np.ndarray) -> np.ndarray:
    """Bicubic resize (PIL) to the other image's size; a no-op when the sizes already match."""
    if image_hwc.shape == like_hwc.shape:
        return image_hwc
    height, width = like_hwc.shape[:2]
    return np.asarray(Image.fromarray(image_hwc).resize((width, height), Image.Resampling.BICUBIC))


def pixel_ssim(a: Any, b: Any) -> float:
    """SSIM of two uint8 (3, H, W) images; ``b`` is resized to ``a``'s size (PIL bicubic) when they differ."""
    from skimage.metrics import structural_similarity

    a_hwc, b_hwc = _hwc_uint8("a", a), _hwc_uint8("b", b)
    b_hwc = _resized_like(b_hwc, a_hwc)
    return float(structural_similarity(a_hwc, b_hwc, channel_axis=-1, data_range=255))


def _images(name: str, images: Any, count: int | None = None) -> np.ndarray:
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 3:
        raise ValueError(f"{name} must be uint8 images (N, 3, H, W), got {array.dtype} {array.shape}")
    if count is not None and array.shape[0] != count:
        raise ValueError(f"{name} has {array.shape[0]} images but {count} features")
    return array


def _nearest_with_ssim(
    images: np.ndarray,
    features: Any,
    training_images: np.ndarray,
    training_features: Any,
    groups: Any = None,
    training_groups: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    indices, similarities = nearest_training_images(
        features, training_features, generated_groups=groups, training_groups=training_groups
    )
    if (indices < 0).any():
        raise ValueError(
            f"{int((indices < 0).sum())} image(s) of a camera that no training image has: nothing to compare with"
        )
    ssims = np.array(
        [pixel_ssim(image, training_images[index]) for image, index in zip(images, indices, strict=True)]
    )
    return indices, similarities, ssims


def _summary(similarities: np.ndarray, ssims: np.ndarray, flagged: np.ndarray) -> dict:
    def stats(values: np.ndarray, prefix: str) -> dict:
        return {
            f"{prefix}_median": float(np.median(values)),
            f"{prefix}_p95": float(np.percentile(values, 95)),
            f"{prefix}_max": float(values.max()),
        }

    return {
        **stats(similarities, "similarity"),
        **stats(ssims, "ssim"),
        "n_flagged": int(flagged.sum()),
        "fraction_flagged": float(flagged.mean()),
    }


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]


def _save_pair_atomically(path: Path, generated_chw: np.ndarray, training_chw: np.ndarray) -> None:
    """Generated | nearest training, side by side; the training image is resized as SSIM saw it."""
    generated = _hwc_uint8("generated", generated_chw)
    training = _resized_like(_hwc_uint8("training", training_chw), generated)
    canvas = np.concatenate([generated, training], axis=1)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp_file:
            Image.fromarray(canvas).save(tmp_file, format="PNG")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def memorisation_report(
    generated_images: Any,
    generated_ids: list[str],
    generated_features: Any,
    training_images: Any,
    training_ids: list[str],
    training_features: Any,
    *,
    feature_threshold: float = 0.95,
    ssim_threshold: float = 0.9,
    pairs_dir: str | os.PathLike | None = None,
    max_pairs: int = 16,
    heldout_images: Any = None,
    heldout_features: Any = None,
    generated_cameras: Any = None,
    training_cameras: Any = None,
    heldout_cameras: Any = None,
) -> dict:
    """Nearest training image of every generated image, near-duplicate flags, and side-by-side pair images.

    A generated image is flagged as a near-duplicate when its nearest training image has cosine similarity
    >= ``feature_threshold`` AND pixel SSIM >= ``ssim_threshold``.

    Args:
        generated_images, training_images: uint8 (N, 3, H, W); features: (N, D), same row order as the ids.
        pairs_dir: where to write pair PNGs; None writes none (the ``pairs`` list is still returned).
        max_pairs: how many pairs to keep: flagged ones first (most similar first), then, when fewer are
            flagged, the most similar unflagged ones (``flagged: False``).
        heldout_images, heldout_features: real images not used for training (e.g. the validation split), the
            calibration baseline; both or neither.
        generated_cameras, training_cameras, heldout_cameras: each image's camera; given, every image is compared
            with the training images of its own camera only.

    Returns:
        ``{"feature_threshold", "ssim_threshold", "summary", "per_image", "heldout_baseline", "pairs"}``;
        ``pairs`` entries are ``{generated, training, similarity, ssim, flagged, file}`` with ``file``
        relative to ``pairs_dir`` (None without one).
    """
    generated_feature_matrix = _feature_matrix("generated_features", generated_features)
    training_feature_matrix = _feature_matrix("training_features", training_features)
    generated = _images("generated_images", generated_images, generated_feature_matrix.shape[0])
    training = _images("training_images", training_images, training_feature_matrix.shape[0])
    if len(generated_ids) != generated.shape[0] or len(training_ids) != training.shape[0]:
        raise ValueError(
            f"ids do not match images: {len(generated_ids)} generated ids for {generated.shape[0]} images, "
            f"{len(training_ids)} training ids for {training.shape[0]} images"
        )
    if generated.shape[0] == 0:
        raise ValueError("generated_images is empty")
    if (heldout_images is None) != (heldout_features is None):
        raise ValueError("pass heldout_images and heldout_features together, or neither")

    def is_flagged(similarities: np.ndarray, ssims: np.ndarray) -> np.ndarray:
        return (similarities >= feature_threshold) & (ssims >= ssim_threshold)

    indices, similarities, ssims = _nearest_with_ssim(
        generated,
        generated_feature_matrix,
        training,
        training_feature_matrix,
        generated_cameras,
        training_cameras,
    )
    flagged = is_flagged(similarities, ssims)
    per_image = [
        {
            "generated": generated_ids[i],
            "training": training_ids[int(indices[i])],
            "similarity": float(similarities[i]),
            "ssim": float(ssims[i]),
            "flagged": bool(flagged[i]),
        }
        for i in range(generated.shape[0])
    ]
    summary = {
        "n_generated": int(generated.shape[0]),
        "n_training": int(training.shape[0]),
        **_summary(similarities, ssims, flagged),
    }

    heldout_baseline = None
    if heldout_images is not None:
        heldout_feature_matrix = _feature_matrix("heldout_features", heldout_features)
        heldout = _images("heldout_images", heldout_images, heldout_feature_matrix.shape[0])
        _, heldout_similarities, heldout_ssims = _nearest_with_ssim(
            heldout, heldout_feature_matrix, training, training_feature_matrix,
            heldout_cameras if training_cameras is not None else None, training_cameras,
        )  # fmt: skip
        # Flagged held-out images are real near-duplicates across splits (consecutive frames), not copies.
        heldout_baseline = {
            "n_heldout": int(heldout.shape[0]),
            **_summary(heldout_similarities, heldout_ssims, is_flagged(heldout_similarities, heldout_ssims)),
        }

    # Flagged first, then by similarity, most similar first.
    order = sorted(range(generated.shape[0]), key=lambda i: (not flagged[i], -similarities[i]))[:max_pairs]
    pairs_path = Path(pairs_dir) if pairs_dir is not None else None
    if pairs_path is not None:
        pairs_path.mkdir(parents=True, exist_ok=True)
    pairs = []
    for rank, i in enumerate(order):
        entry = dict(per_image[i], file=None)
        if pairs_path is not None:
            name = f"pair_{rank:03d}_{_safe_name(entry['generated'])}__{_safe_name(entry['training'])}.png"
            _save_pair_atomically(pairs_path / name, generated[i], training[int(indices[i])])
            entry["file"] = name
        pairs.append(entry)

    return {
        "feature_threshold": feature_threshold,
        "ssim_threshold": ssim_threshold,
        "search": "within each camera" if training_cameras is not None else "across cameras",
        "summary": summary,
        "per_image": per_image,
        "heldout_baseline": heldout_baseline,
        "pairs": pairs,
    }
