"""Memorisation: copies are flagged, random images are not, pairs are written, the baseline is reported."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from or_synth.evaluation.memorisation import memorisation_report, nearest_training_images, pixel_ssim


def smooth_images(count: int, seed: int, size: int = 32) -> np.ndarray:
    """Blurry random images (uint8, (N, 3, H, W)): smooth enough that SSIM behaves like on photos."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 3, 4, 4), dtype=np.uint8)
    return np.stack(
        [
            np.asarray(
                Image.fromarray(image.transpose(1, 2, 0)).resize((size, size), Image.Resampling.BICUBIC)
            ).transpose(2, 0, 1)
            for image in coarse
        ]
    )


def pixel_features(images: np.ndarray) -> np.ndarray:
    """A stand-in feature: centred pixels, so identical images have cosine similarity 1."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    return flat - flat.mean(axis=1, keepdims=True)


def test_nearest_training_images_on_a_constructed_example():
    training = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    generated = np.array([[0.0, 2.0], [-3.0, 0.1], [1.0, 0.9], [5.0, 0.0]])
    indices, similarities = nearest_training_images(generated, training, chunk_size=1)
    np.testing.assert_array_equal(indices, [1, 2, 3, 0])
    assert similarities[0] == pytest.approx(1.0) and similarities[3] == pytest.approx(1.0)
    assert similarities[2] == pytest.approx(
        np.dot([1, 0.9], [0.7, 0.7]) / (np.hypot(1, 0.9) * np.hypot(0.7, 0.7))
    )


def test_nearest_training_images_chunking_matches_one_block():
    rng = np.random.default_rng(0)
    generated, training = rng.normal(size=(37, 8)), rng.normal(size=(101, 8))
    whole = nearest_training_images(generated, training, chunk_size=1024)
    chunked = nearest_training_images(generated, training, chunk_size=3)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_allclose(whole[1], chunked[1])


def test_pixel_ssim_identity_and_resizing():
    image = smooth_images(1, seed=0)[0]
    assert pixel_ssim(image, image) == pytest.approx(1.0)
    larger = np.asarray(Image.fromarray(image.transpose(1, 2, 0)).resize((64, 64), Image.Resampling.BICUBIC))
    assert pixel_ssim(image, larger.transpose(2, 0, 1)) > 0.9


def test_copies_are_flagged_and_pairs_written(tmp_path):
    training = smooth_images(12, seed=1)
    generated = np.concatenate([training[[3, 7]], smooth_images(4, seed=2)])
    generated_ids = ["copy_of_3", "copy_of_7"] + [f"random_{i}" for i in range(4)]
    training_ids = [f"take1/frame{i:03d}" for i in range(12)]
    report = memorisation_report(
        generated,
        generated_ids,
        pixel_features(generated),
        training,
        training_ids,
        pixel_features(training),
        pairs_dir=tmp_path / "pairs",
        max_pairs=3,
    )
    per_image = {entry["generated"]: entry for entry in report["per_image"]}
    for copy, source in (("copy_of_3", 3), ("copy_of_7", 7)):
        assert per_image[copy]["training"] == training_ids[source]
        assert per_image[copy]["similarity"] == pytest.approx(1.0)
        assert per_image[copy]["ssim"] == pytest.approx(1.0)
        assert per_image[copy]["flagged"]
    assert not any(per_image[f"random_{i}"]["flagged"] for i in range(4))
    summary = report["summary"]
    assert summary["n_generated"] == 6 and summary["n_training"] == 12
    assert summary["n_flagged"] == 2 and summary["fraction_flagged"] == pytest.approx(2 / 6)
    assert summary["similarity_max"] == pytest.approx(1.0) and summary["ssim_max"] == pytest.approx(1.0)
    assert report["heldout_baseline"] is None

    # Two flagged pairs, then the most similar unflagged one to fill max_pairs.
    assert [pair["flagged"] for pair in report["pairs"]] == [True, True, False]
    for pair in report["pairs"]:
        path = tmp_path / "pairs" / pair["file"]
        assert path.is_file() and "/" not in pair["file"]
        assert Image.open(path).size == (64, 32)
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir()) == sorted(
        p["file"] for p in report["pairs"]
    )


def test_random_images_are_not_flagged_and_heldout_baseline_is_reported():
    training = smooth_images(10, seed=3)
    generated = smooth_images(5, seed=4)
    heldout = smooth_images(6, seed=5)
    report = memorisation_report(
        generated,
        [f"g{i}" for i in range(5)],
        pixel_features(generated),
        training,
        [f"t{i}" for i in range(10)],
        pixel_features(training),
        pairs_dir=None,
        max_pairs=2,
        heldout_images=heldout,
        heldout_features=pixel_features(heldout),
    )
    assert report["summary"]["n_flagged"] == 0
    assert [pair["file"] for pair in report["pairs"]] == [None, None]
    baseline = report["heldout_baseline"]
    assert baseline["n_heldout"] == 6 and baseline["n_flagged"] == 0
    assert (
        -1.0
        <= baseline["similarity_median"]
        <= baseline["similarity_p95"]
        <= baseline["similarity_max"]
        < 0.95
    )


def test_heldout_needs_images_and_features_together():
    images = smooth_images(2, seed=6)
    with pytest.raises(ValueError, match="together"):
        memorisation_report(
            images, ["a", "b"], pixel_features(images), images, ["c", "d"], pixel_features(images),
            pairs_dir=None, heldout_images=images,
        )  # fmt: skip


def test_the_search_stays_within_each_group():
    """With cameras, the nearest training image is the nearest of the same camera, even when another camera's
    image is closer; a camera no training image has is index -1."""
    training = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    generated = np.array([[1.0, 0.05], [1.0, 0.05]])
    index, similarity = nearest_training_images(
        generated, training, generated_groups=[1, 2], training_groups=[1, 2, 2]
    )
    assert index.tolist() == [0, 2] and similarity[1] < similarity[0]
    index, similarity = nearest_training_images(
        generated, training, generated_groups=[1, 3], training_groups=[1, 2, 2]
    )
    assert index.tolist() == [0, -1] and similarity[1] == -np.inf
    with pytest.raises(ValueError, match="together"):
        nearest_training_images(generated, training, generated_groups=[1, 2])
