"""The memorisation metric through the suite: copies of training images are all flagged, with their pairs
saved; held-out copies are the calibration baseline where graph consistency has read them."""

from __future__ import annotations

import pytest

from tests.helpers import COPY_CAMERAS, copy_as_samples, run_evaluate

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_copies_of_training_images_are_flagged_as_memorised(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "train", tmp_path / "train_copies")
    document = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[memorisation]")
    report = document["details"]["memorisation"]
    summary = report["summary"]
    assert summary["n_flagged"] == summary["n_generated"] == 16 * len(COPY_CAMERAS)
    assert summary["ssim_median"] == pytest.approx(1.0)
    assert report["pairs"] and all(
        (tmp_path / "eval/memorisation_pairs" / p["file"]).is_file() for p in report["pairs"]
    )
    # Alone, memorisation reads no real counterparts: no held-out baseline (these copies ARE training images).
    assert report["heldout_baseline"] is None
    card = document["cards"]["memorisation"]
    assert card["value"]["n_flagged"] == summary["n_flagged"] and card["split"] == "train"
    # Training graphs: each copy against its own source render, beside an independent render of its graph.
    copied = report["source_copy"]["summary"]
    assert copied["generated_to_source"]["ssim"] == pytest.approx(1.0)
    assert copied["independent_render_to_source"]["ssim"] < 0.99  # another seed draws another picture
    assert copied["fraction_closer_than_independent_render"] == 1.0
    assert card["value"]["source_copy"] == copied
    # Each copy is matched with its own camera's training image: the search stays within a camera.
    assert card["search"] == report["search"] == "within each camera"
    assert all(
        f"camera0{p['generated'].split('_cam')[1][0]}" in p["training"] for p in report["per_image"]
    ), report["per_image"][:2]
    assert card["n_real"] == summary["n_training"] > 0
