"""FID and KID through the suite: one pass in the Inception space serves both cards, whatever order they are
asked in, and the cards carry the extractor's weights hash. A stand-in extractor keeps the wiring test fast
(a Fréchet distance in 2048 dimensions takes most of a minute on two busy cores); the slow test runs (random)
weights of the standard Inception architecture (the classifier-space pair is in ``tests/evaluation/test_suite.py``)."""

from __future__ import annotations

import hashlib

import pytest

import or_synth.evaluation.context as context
from or_synth.evaluation import FeatureSpace
from tests.helpers import copy_as_samples, run_evaluate, write_random_inception_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_fid_and_kid_share_one_pass_in_the_inception_space(
    tiny_render, classifier_dir, tmp_path, monkeypatch
):
    images_seen = []

    def mean_colour_space(weights, allow_download, batch_size):  # inception_space's signature
        def extract(images, cameras):
            images_seen.append(len(images))
            return images.double().mean((2, 3)) / 255  # (B, 3)

        return FeatureSpace("mean colour (a test's stand-in)", extract, "f" * 64, batch_size)

    monkeypatch.setattr(context, "inception_space", mean_colour_space)
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies")
    document = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[kid,fid]")
    assert sum(images_seen) == 2 * 32  # the real split and the generated set, each once for both cards
    assert list(document["cards"]) == ["fid", "kid"]  # registry order, whatever order they were asked in
    fid, kid = document["cards"]["fid"], document["cards"]["kid"]
    assert abs(fid["value"]) < 1e-9  # the same 32 real views on both sides
    assert kid["value"]["subset_size"] == 8 and kid["value"]["std"] > 0  # 5 seeded subsets of 8 of 32
    for card in (fid, kid):
        assert card["weights_hash"] == "f" * 64 and card["feature_space"].startswith("mean colour")
        assert card["n_real"] == card["n_generated"] == 32 and card["reference_cached"] is False
    assert any(w.startswith("FID with N=32 generated / 32 real") for w in fid["warnings"])
    assert "classifier_hash" not in fid  # no metric needed the classifier, so none was loaded
    # 32 generated against 32 real: no real set of the same N beside a reference remains, and the card says so.
    assert fid["matched_real_reference"]["measured"] is False
    assert "generated N = 32" in fid["matched_real_reference"]["why"]


@pytest.mark.slow
def test_fid_with_weights_of_the_standard_inception(tiny_render, classifier_dir, tmp_path):
    weights = tmp_path / "inception.pth"
    write_random_inception_weights(weights)
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies")
    # The Inception pass at 299 px is slow on a CPU: keep the views of the first and the last scan, the two
    # that reference_max_scans=2 picks from the real split, so both sides hold the same four images.
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines[:2] + lines[-2:]))
    inception = [f"inception_weights={weights}", "allow_download=false", "reference_max_scans=2"]
    document = run_evaluate(
        samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[fid]", *inception
    )
    card = document["cards"]["fid"]
    assert abs(card["value"]) < 1e-3 and card["n_real"] == card["n_generated"] == 4
    assert card["weights_hash"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["feature_space"].startswith("fid-inception-v3 (torch-fidelity")
