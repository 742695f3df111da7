"""Fréchet distance vs torchmetrics and closed forms, KID, the reference cache, and the Inception loader."""

from __future__ import annotations

import hashlib
import urllib.error

import numpy as np
import pytest
import torch

from or_synth.data.errors import UserError
from or_synth.evaluation import fidelity
from or_synth.evaluation.fidelity import (
    FeatureStats,
    InceptionWeightsMissing,
    ReferenceCache,
    fidelity_scores,
    frechet_distance,
    inception_extractor,
    kernel_inception_distance,
    matched_real_reference,
)
from tests.helpers import write_random_inception_weights


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


@pytest.fixture
def feature_sets() -> tuple[FeatureStats, FeatureStats]:
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(64, 64)) / 8
    real = rng.normal(size=(500, 64)) @ mixing
    fake = rng.normal(size=(500, 64)) @ mixing * 1.3 + 0.5
    return FeatureStats(real), FeatureStats(fake)


def test_frechet_distance_agrees_with_torchmetrics(feature_sets):
    from torchmetrics.image.fid import _compute_fid

    real, fake = feature_sets
    ours = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
    theirs = float(
        _compute_fid(
            torch.from_numpy(real.mu),
            torch.from_numpy(real.sigma),
            torch.from_numpy(fake.mu),
            torch.from_numpy(fake.sigma),
        )
    )
    assert abs(ours - theirs) / theirs < 1e-6


def test_frechet_distance_accepts_tensors_and_is_symmetric(feature_sets):
    real, fake = feature_sets
    forward = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
    backward = frechet_distance(*(torch.from_numpy(x) for x in (fake.mu, fake.sigma, real.mu, real.sigma)))
    assert forward == pytest.approx(backward, rel=1e-9)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    a, b = rng.uniform(0.1, 3, size=8), rng.uniform(0.1, 3, size=8)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_commuting_covariances_closed_form():
    rng = np.random.default_rng(2)
    rotation = random_rotation(16, rng)
    a, b = rng.uniform(0.1, 3, size=16), rng.uniform(0.1, 3, size=16)
    sigma1, sigma2 = rotation @ np.diag(a) @ rotation.T, rotation @ np.diag(b) @ rotation.T
    mu = rng.normal(size=16)
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu, sigma1, mu, sigma2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_identical_distributions_is_zero(feature_sets):
    real, _ = feature_sets
    assert abs(frechet_distance(real.mu, real.sigma, real.mu, real.sigma)) < 1e-8


def test_frechet_distance_rank_deficient_covariance_is_fine():
    # Fewer samples than dimensions: a singular covariance must not go complex or NaN.
    rng = np.random.default_rng(3)
    real, fake = FeatureStats(rng.normal(size=(10, 32))), FeatureStats(rng.normal(size=(10, 32)))
    assert np.isfinite(frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma))


def test_frechet_distance_rejects_bad_input():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(mu, np.diag([1.0, 1.0, -0.5]), mu, sigma)
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(mu, sigma, mu, np.eye(4))
    with pytest.raises(ValueError, match="mu2"):
        frechet_distance(mu, sigma, np.zeros(4), sigma)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([0.0, np.nan, 0.0]), sigma, mu, sigma)
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance(mu, np.triu(np.ones((3, 3))), mu, sigma)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save all extracted features")
def test_kid_matches_torchmetrics_with_the_same_seed(feature_sets):
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = (torch.from_numpy(stats.features[:60, :16]) for stats in feature_sets)
    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subset_size=40, subsets=7)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(3)
    their_mean, their_std = metric.compute()
    ours = kernel_inception_distance(real, fake, subset_size=40, subsets=7, seed=3)
    assert ours["mean"] == pytest.approx(float(their_mean), rel=1e-12)
    assert ours["std"] == pytest.approx(float(their_std), rel=1e-12)


def test_kid_is_near_zero_for_identical_sets_and_positive_for_shifted(feature_sets):
    real, fake = feature_sets
    same = kernel_inception_distance(real, real.features, subset_size=200, subsets=20)
    shifted = kernel_inception_distance(real, fake, subset_size=200, subsets=20)
    assert shifted["mean"] > 0
    assert abs(same["mean"]) < 0.05 * shifted["mean"]
    assert same["warning"] is None and shifted["subset_size_used"] == 200


def test_kid_is_seeded_and_reduces_subset_size_with_a_warning(feature_sets):
    real, fake = feature_sets
    first = kernel_inception_distance(real, fake, subset_size=1000, subsets=5, seed=7)
    again = kernel_inception_distance(real, fake, subset_size=1000, subsets=5, seed=7)
    assert first == again
    assert first["subset_size_used"] == 500
    assert first["warning"].startswith("KID subset size reduced from 1000 to 500:")


def test_fidelity_scores_warns_below_min_n(feature_sets):
    real, fake = feature_sets
    with pytest.warns(UserWarning, match="biased upward"):
        scores = fidelity_scores(
            real, fake, name="FID", kid_subset_size=100, kid_subsets=3, seed=0, min_n_warning=2048
        )
    assert scores["n_real"] == 500 and scores["n_generated"] == 500
    assert scores["warnings"] == [
        "FID with N=500 generated / 500 real images is biased upward; "
        "2048 or more are needed for a comparable number"
    ]
    assert scores["frechet_distance"] > 0 and scores["kid_mean"] > 0


def test_fidelity_scores_quiet_when_n_is_enough_and_rejects_tiny_sets(feature_sets, recwarn):
    real, fake = feature_sets
    scores = fidelity_scores(
        real, fake, name="FD", kid_subset_size=100, kid_subsets=3, seed=0, min_n_warning=100
    )
    assert scores["warnings"] == [] and len(recwarn) == 0
    with pytest.raises(ValueError, match="at least 2"):
        fidelity_scores(
            real,
            FeatureStats(fake.features[:1]),
            name="FID",
            kid_subset_size=1,
            kid_subsets=1,
            seed=0,
            min_n_warning=2,
        )


def key_fields(**overrides) -> dict:
    fields = {
        "dataset_path": "/data/4d-or",
        "dataset_hash": "abc",
        "split": "val",
        "size": 256,
        "cameras": [1, 2],
        "extractor": "inception-v3-compat",
        "weights_hash": "6726",
        "preprocessing": "pil-bicubic",
    }
    return {**fields, **overrides}


def test_reference_cache_round_trip(tmp_path, feature_sets):
    real, _ = feature_sets
    cache = ReferenceCache(tmp_path / "refs")
    key = cache.key(**key_fields())
    assert cache.get(key) is None
    cache.put(key, FeatureStats(real.features, meta={"extractor": "inception-v3-compat"}))
    loaded = cache.get(key)
    np.testing.assert_array_equal(loaded.features, real.features)
    np.testing.assert_allclose(loaded.sigma, real.sigma)
    assert loaded.meta == {"extractor": "inception-v3-compat", "cache_key": key}
    assert [p.name for p in (tmp_path / "refs").iterdir()] == [f"{key}.npz"]  # no temp file left behind


def test_reference_cache_key_depends_on_every_field():
    cache = ReferenceCache("unused")
    base = cache.key(**key_fields())
    changed = {
        "dataset_path": "/other",
        "dataset_hash": "abd",
        "split": "test",
        "size": 128,
        "cameras": [1],
        "extractor": "dinov2",
        "weights_hash": "0000",
        "preprocessing": "pil-bilinear",
    }
    keys = {cache.key(**key_fields(**{name: value})) for name, value in changed.items()}
    assert base not in keys and len(keys) == len(changed)
    assert cache.key(**dict(reversed(list(key_fields().items())))) == base
    with pytest.raises(ValueError, match="weights_hash"):
        cache.key(**{k: v for k, v in key_fields().items() if k != "weights_hash"})


# --- FID Inception weights ----------------------------------------------------------------------


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """An empty torch hub folder, and every download path armed to fail the test."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", refuse)
    return tmp_path / "hub" / "checkpoints"


def test_inception_extractor_loads_a_weights_file(tmp_path, no_download):
    weights = tmp_path / "fake-inception.pth"
    write_random_inception_weights(weights)
    extractor, weights_hash = inception_extractor(str(weights), allow_download=False)
    assert weights_hash == hashlib.sha256(weights.read_bytes()).hexdigest()

    images = torch.randint(
        0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        first, second = extractor(images), extractor(images)
    assert first.shape == (2, 2048) and torch.isfinite(first).all()
    assert torch.equal(first, second)
    assert not torch.allclose(first[0], first[1])


def test_inception_extractor_finds_the_hub_cache(tmp_path, no_download):
    no_download.mkdir(parents=True)
    cached = no_download / fidelity.INCEPTION_WEIGHTS_FILENAMES[0]
    write_random_inception_weights(cached)
    _, weights_hash = inception_extractor(None, allow_download=False)
    assert weights_hash == hashlib.sha256(cached.read_bytes()).hexdigest()


def test_inception_extractor_missing_file_names_the_path(tmp_path, no_download):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth") as error:
        inception_extractor(str(missing), allow_download=True)
    assert fidelity.INCEPTION_WEIGHTS_URL in str(error.value)
    assert "inception_weights=PATH" in str(error.value)


def test_inception_extractor_without_cache_never_downloads_when_not_allowed(no_download):
    with pytest.raises(InceptionWeightsMissing, match="standard FID Inception weights") as error:
        inception_extractor(None, allow_download=False)
    assert isinstance(error.value, UserError)  # one line and exit 2 from the command, no traceback
    assert "No other weights are ever used under the name FID" in str(error.value)


def test_inception_extractor_failed_download_explains(monkeypatch, no_download):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InceptionWeightsMissing, match="Downloading the Inception weights failed") as error:
        inception_extractor(None, allow_download=True)
    assert str(no_download) in str(error.value)


def test_matched_real_reference_puts_the_generated_distance_beside_real_vs_real_at_the_same_n():
    """A generated set drawn from the real distribution sits at the real-vs-real row; a shifted one above it."""
    rng = np.random.default_rng(0)
    real = FeatureStats(rng.normal(size=(400, 4)))
    same = matched_real_reference(
        real, FeatureStats(rng.normal(size=(100, 4))), kid_subset_size=50, kid_subsets=10
    )
    shifted = matched_real_reference(
        real, FeatureStats(rng.normal(size=(100, 4)) + 1.0), kid_subset_size=50, kid_subsets=10
    )
    assert same["measured"] and same["n"] == 100 and same["n_reference"] == 300
    assert same["real_vs_real"] == shifted["real_vs_real"]  # one seeded split of the reference
    real_row = same["real_vs_real"]["frechet_distance"]
    assert abs(same["generated_vs_same_reference"]["frechet_distance"] - real_row) < 0.2
    assert shifted["generated_vs_same_reference"]["frechet_distance"] > real_row + 3.0  # |shift|^2 = 4
    assert matched_real_reference(real, FeatureStats(rng.normal(size=(399, 4))), kid_subset_size=50,
                                  kid_subsets=10)["measured"] is False  # fmt: skip


def test_precision_recall_density_coverage_tell_realism_from_diversity():
    """The same distribution scores near 1 on all four; a collapsed generator (one mode) keeps its precision and
    loses its recall and coverage; a shifted one loses its precision."""
    from or_synth.evaluation.fidelity import precision_recall_density_coverage

    rng = np.random.default_rng(0)
    real = FeatureStats(rng.normal(size=(300, 4)))
    same = precision_recall_density_coverage(real, FeatureStats(rng.normal(size=(300, 4))))
    collapsed = precision_recall_density_coverage(real, FeatureStats(rng.normal(size=(300, 4)) * 0.1))
    shifted = precision_recall_density_coverage(real, FeatureStats(rng.normal(size=(300, 4)) + 4.0))
    assert (
        same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8 and same["nearest_k"] == 5
    )
    assert collapsed["precision"] > 0.9 and collapsed["recall"] < 0.3 and collapsed["coverage"] < 0.3
    assert shifted["precision"] < 0.1 and shifted["density"] < 0.1
