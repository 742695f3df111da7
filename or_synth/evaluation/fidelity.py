"""Image-fidelity statistics: Fréchet distance, KID and cached reference features.

The numbers follow torchmetrics / torch-fidelity (the standard FID Inception weights, the same KID estimator),
with the pitfalls of docs/prior_work.md handled here: float64 covariances, an eigenvalue-based matrix square
root that cannot go complex, a warning whenever N is too small for a comparable FID, and reference statistics
that are keyed by everything that changes them and computed once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from or_synth.data.errors import UserError
from or_synth.data.io import file_sha256

# Below this many images per set a 2048-d Inception covariance is rank-deficient and FID is biased upward.
FID_MIN_N = 2048

# torch-fidelity downloads the TF-ported FID Inception weights under this name; pytorch-fid's copy of the same
# weights uses the second name. Both are looked for in torch hub's checkpoint folder.
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_WEIGHTS_FILENAMES = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)


def _as_float64(name: str, value: Any) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor; non-finite input is a bug upstream."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _psd_eigenvalues(
    name: str, matrix: np.ndarray, vectors: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Eigen-decomposition of a symmetric PSD matrix, with round-off negatives clipped to zero (eigenvalues
    only, about three times faster, when ``vectors`` is false)."""
    if vectors:
        eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    else:
        eigenvalues, eigenvectors = np.linalg.eigvalsh(matrix), None
    scale = float(np.abs(eigenvalues).max()) if eigenvalues.size else 0.0
    if eigenvalues.size and eigenvalues.min() < -1e-6 * scale:
        raise ValueError(
            f"{name} is not positive semi-definite (smallest eigenvalue {eigenvalues.min():.3g}, "
            f"largest {eigenvalues.max():.3g}); a covariance must be PSD"
        )
    return np.clip(eigenvalues, 0.0, None), eigenvectors


def _checked_covariance(name: str, sigma: np.ndarray, dim: int, mu_name: str) -> np.ndarray:
    if sigma.shape != (dim, dim):
        raise ValueError(f"{name} must have shape ({dim}, {dim}) to match {mu_name}, got {sigma.shape}")
    asymmetry = float(np.abs(sigma - sigma.T).max()) if dim else 0.0
    if asymmetry > 1e-6 * max(float(np.abs(sigma).max()), 1e-300):
        raise ValueError(f"{name} is not symmetric (max |sigma - sigma.T| = {asymmetry:.3g})")
    # eigh reads one triangle only; averaging makes the round-off asymmetry irrelevant.
    return (sigma + sigma.T) / 2


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1^1/2 sigma2 sigma1^1/2))``. Both square
    roots come from symmetric eigen-decompositions, so the result is real by construction (scipy's ``sqrtm``
    of the non-symmetric ``sigma1 @ sigma2`` can go complex; docs/prior_work.md, FID pitfall 5).

    Args:
        mu1, mu2: means, shape (D,); numpy arrays or torch tensors.
        sigma1, sigma2: covariances, shape (D, D), symmetric positive semi-definite.

    Returns:
        The distance as a Python float (>= 0).

    Raises:
        ValueError: on mismatched shapes, non-finite values, or a covariance that is not PSD.
    """
    mu1, mu2 = _as_float64("mu1", mu1), _as_float64("mu2", mu2)
    sigma1, sigma2 = _as_float64("sigma1", sigma1), _as_float64("sigma2", sigma2)
    if mu1.ndim != 1:
        raise ValueError(f"mu1 must be a vector (D,), got shape {mu1.shape}")
    if mu2.shape != mu1.shape:
        raise ValueError(f"mu2 must have the shape of mu1 {mu1.shape}, got {mu2.shape}")
    dim = mu1.shape[0]
    sigma1 = _checked_covariance("sigma1", sigma1, dim, "mu1")
    sigma2 = _checked_covariance("sigma2", sigma2, dim, "mu2")

    eigenvalues1, eigenvectors1 = _psd_eigenvalues("sigma1", sigma1)
    _psd_eigenvalues("sigma2", sigma2, vectors=False)
    sqrt_sigma1 = (eigenvectors1 * np.sqrt(eigenvalues1)) @ eigenvectors1.T
    # sigma1^1/2 sigma2 sigma1^1/2 is symmetric PSD and has the eigenvalues of sigma1 sigma2.
    middle = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    middle_eigenvalues, _ = _psd_eigenvalues("sigma1^1/2 sigma2 sigma1^1/2", (middle + middle.T) / 2, False)
    trace_sqrt = float(np.sqrt(middle_eigenvalues).sum())

    distance = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    # Round-off can put identical distributions a hair below zero.
    return max(distance, 0.0)


@dataclass(eq=False)
class FeatureStats:
    """Features of one image set; the raw features are kept because KID and nearest neighbours need them.

    Attributes:
        features: (N, D) float64.
        meta: JSON-serialisable description (cache key, extractor and weights hash, preprocessing, ...).
    """

    features: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = _as_float64("features", self.features)
        if self.features.ndim != 2:
            raise ValueError(f"features must have shape (N, D), got {self.features.shape}")

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @cached_property
    def mu(self) -> np.ndarray:
        return self.features.mean(axis=0)

    @cached_property
    def sigma(self) -> np.ndarray:
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got N={self.n}")
        return np.atleast_2d(np.cov(self.features, rowvar=False))

    def save(self, path: str | os.PathLike) -> None:
        """Write ``.npz`` atomically: a crash never leaves a truncated file behind as a cache hit."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as tmp_file:
                np.savez(
                    tmp_file, features=self.features, meta=np.array(json.dumps(self.meta, sort_keys=True))
                )
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        with np.load(Path(path), allow_pickle=False) as data:
            return cls(features=data["features"], meta=json.loads(str(data["meta"])))


class ReferenceCache:
    """Reference-set features computed once per (dataset, split, size, cameras, extractor) and reloaded after.

    Every field that changes the reference statistics must be part of the key, otherwise a stale cache is
    silently reused (a new extractor, another resize); ``key`` refuses to hash without them.
    """

    required_fields = (
        "dataset_path",
        "dataset_hash",
        "split",
        "size",
        "cameras",
        "extractor",
        "weights_hash",
        "preprocessing",
    )

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def key(self, **fields: Any) -> str:
        """sha256 of the sorted JSON of ``fields``: at least ``required_fields``, extra fields allowed."""
        missing = [name for name in self.required_fields if name not in fields]
        if missing:
            raise ValueError(
                f"reference cache key is missing fields {missing}; required: {self.required_fields}"
            )
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key from ReferenceCache.key: {key!r}")
        return self.root / f"{key}.npz"

    def get(self, key: str) -> FeatureStats | None:
        path = self.path(key)
        return FeatureStats.load(path) if path.is_file() else None

    def put(self, key: str, stats: FeatureStats) -> None:
        stats.meta = {**stats.meta, "cache_key": key}
        stats.save(self.path(key))


def _features_tensor(name: str, value: FeatureStats | np.ndarray | torch.Tensor) -> torch.Tensor:
    array = value.features if isinstance(value, FeatureStats) else _as_float64(name, value)
    if array.ndim != 2:
        raise ValueError(f"{name} features must have shape (N, D), got {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples, got N={array.shape[0]}")
    return torch.from_numpy(np.ascontiguousarray(array))


def kernel_inception_distance(
    real: FeatureStats | np.ndarray | torch.Tensor,
    fake: FeatureStats | np.ndarray | torch.Tensor,
    subset_size: int = 1000,
    subsets: int = 100,
    seed: int = 0,
) -> dict:
    """KID (unbiased polynomial-kernel MMD^2) over random subsets, as torchmetrics computes it, but seeded.

    KID is unbiased at small N, so it is reported beside FID (docs/prior_work.md, FID pitfall 1). When a set
    is smaller than ``subset_size`` the subset size shrinks to fit (torchmetrics raises instead) and the
    result says so.

    Returns:
        ``{"mean", "std", "subset_size_used", "warning"}``; ``warning`` is None or a sentence.
    """
    from torchmetrics.image.kid import poly_mmd

    real_features, fake_features = _features_tensor("real", real), _features_tensor("fake", fake)
    if real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(
            f"feature sizes differ: real {real_features.shape[1]}, fake {fake_features.shape[1]}"
        )
    n_real, n_fake = real_features.shape[0], fake_features.shape[0]
    size = min(subset_size, n_real, n_fake)
    warning = None
    if size < subset_size:
        warning = (
            f"KID subset size reduced from {subset_size} to {size}: only {n_fake} generated / {n_real} real "
            "samples; KID stays unbiased but its spread grows"
        )
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        # Same draw order as torchmetrics' KernelInceptionDistance.compute: a real subset, then a fake one.
        real_subset = real_features[torch.randperm(n_real, generator=generator)[:size]]
        fake_subset = fake_features[torch.randperm(n_fake, generator=generator)[:size]]
        scores.append(poly_mmd(real_subset, fake_subset))
    stacked = torch.stack(scores)
    return {
        "mean": float(stacked.mean()),
        "std": float(stacked.std(unbiased=False)),
        "subset_size_used": int(size),
        "warning": warning,
    }


def fidelity_scores(
    real: FeatureStats,
    fake: FeatureStats,
    *,
    name: str = "FID",
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
    min_n_warning: int = FID_MIN_N,
) -> dict:
    """Fréchet distance and KID between a real and a generated feature set, with N and every caveat attached.

    Args:
        name: what the Fréchet distance is called in messages ("FID" only for the standard Inception weights).
        min_n_warning: below this N (either set) the distance is flagged as biased and not comparable.

    Returns:
        ``{"frechet_distance", "kid_mean", "kid_std", "kid_subset_size", "n_real", "n_generated",
        "warnings"}``.
    """
    for label, stats in (("real", real), ("generated", fake)):
        if stats.n < 2:
            raise ValueError(f"{name} needs at least 2 {label} samples, got N={stats.n}")
    if real.features.shape[1] != fake.features.shape[1]:
        raise ValueError(
            f"feature sizes differ: real {real.features.shape[1]}, generated {fake.features.shape[1]}"
        )

    messages = []
    if min(real.n, fake.n) < min_n_warning:
        messages.append(
            f"{name} with N={fake.n} generated / {real.n} real images is biased upward; "
            f"{min_n_warning} or more are needed for a comparable number"
        )
    kid = kernel_inception_distance(real, fake, subset_size=kid_subset_size, subsets=kid_subsets, seed=seed)
    if kid["warning"]:
        messages.append(kid["warning"])
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return {
        "frechet_distance": frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma),
        "kid_mean": kid["mean"],
        "kid_std": kid["std"],
        "kid_subset_size": kid["subset_size_used"],
        "n_real": real.n,
        "n_generated": fake.n,
        "warnings": messages,
    }


class InceptionWeightsMissing(UserError, RuntimeError):
    """The standard FID Inception weights are not here and cannot be downloaded; the message says where to put
    them (never any other weights under the name FID)."""


def _missing_weights_message(checkpoint_dir: Path) -> str:
    return (
        "FID needs the standard FID Inception weights (the TF-ported Inception-v3 of 2015-12-05 that "
        f"torch-fidelity, pytorch-fid and torchmetrics use). Download {INCEPTION_WEIGHTS_URL} and either put "
        f"it in {checkpoint_dir}/ or pass its path with inception_weights=PATH (python -m or_synth.evaluate). "
        "No other weights are ever used under the name FID."
    )


def inception_extractor(
    weights: str | os.PathLike | None = None,
    allow_download: bool = False,
    *,
    antialias: bool = False,
) -> tuple[torch.nn.Module, str]:
    """The FID Inception-v3 (torchmetrics' NoTrainInceptionV3) and the sha256 of the weights file it loaded.

    Never falls back to other weights: a missing or unloadable file is an error (FID pitfall 3):
    ``FileNotFoundError`` for a named file that is not there, :class:`InceptionWeightsMissing` when none is cached
    and none may (or can) be downloaded.

    Args:
        weights: path to the weights file; None looks in torch hub's checkpoint folder.
        allow_download: with ``weights=None`` and nothing cached, download torch-fidelity's file there.
        antialias: False (default) resizes to 299 with torch-fidelity's TF1-compatible bilinear resize, the
            standard FID preprocessing; torchmetrics' own default (True) gives different numbers.

    Returns:
        (module mapping uint8 images (N, 3, H, W) to (N, 2048) float32 features, full sha256 hex digest).
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    checkpoint_dir = Path(torch.hub.get_dir()) / "checkpoints"
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"Inception weights not found at {path}. {_missing_weights_message(checkpoint_dir)}"
            )
    else:
        cached = [
            checkpoint_dir / name for name in INCEPTION_WEIGHTS_FILENAMES if (checkpoint_dir / name).is_file()
        ]
        if cached:
            path = cached[0]
        elif not allow_download:
            raise InceptionWeightsMissing(
                "No cached Inception weights and downloads are off. "
                + _missing_weights_message(checkpoint_dir)
            )
        else:
            path = checkpoint_dir / INCEPTION_WEIGHTS_FILENAMES[0]
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            try:
                # torch-fidelity's own URL and cache file; torch hub writes it atomically.
                torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(path), progress=False)
            except Exception as error:
                raise InceptionWeightsMissing(
                    f"Downloading the Inception weights failed ({error}). "
                    + _missing_weights_message(checkpoint_dir)
                ) from error

    extractor = NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=["2048"],
        feature_extractor_weights_path=str(path),
        antialias=antialias,
    )
    return extractor, file_sha256(path)


def split_reference(real: FeatureStats, n: int, seed: int = 0) -> tuple[FeatureStats, FeatureStats] | None:
    """The real reference split at random (``seed``) into a set of ``n`` images (A) and the rest (B), the pair a
    real-vs-real row is measured on; None when fewer than ``n + 2`` images leave no reference of 2."""
    if real.n < n + 2:
        return None
    order = np.random.default_rng(seed).permutation(real.n)
    return (
        FeatureStats(real.features[order[:n]], meta={"part": "A"}),
        FeatureStats(real.features[order[n:]], meta={"part": "B"}),
    )


def matched_real_reference(
    real: FeatureStats,
    fake: FeatureStats,
    *,
    kid_subset_size: int,
    kid_subsets: int,
    seed: int = 0,
) -> dict:
    """What the distance is between real images at the generated set's N: the real reference split at random
    (``seed``) into A, with the generated set's N, and the rest B; the distance of A to B is the real-vs-real row,
    and the generated set's distance to the same B the row that compares with it. A Fréchet distance depends on N
    and on the reference, so only these two, computed together, say how far the generated images are from real.

    Returns:
        ``{"measured": False, "why"}`` when the reference holds fewer than N + 2 images, else ``{"measured",
        "n", "n_reference", "real_vs_real", "generated_vs_same_reference"}`` (each with ``frechet_distance``,
        ``kid_mean``, ``kid_std``).
    """
    n = fake.n
    parts = split_reference(real, n, seed)
    if parts is None:
        return {
            "measured": False,
            "why": f"the reference has {real.n} images: a real set of the generated N = {n} and a reference of 2 or "
            "more are needed (reference_max_scans=null, or more reference views)",
        }
    a, b = parts
    subset = min(kid_subset_size, n, b.n)
    rows = {}
    with warnings.catch_warnings():  # the rows carry N themselves; the main row already warned about small N
        warnings.simplefilter("ignore", UserWarning)
        for name, stats in (("real_vs_real", a), ("generated_vs_same_reference", fake)):
            scores = fidelity_scores(b, stats, kid_subset_size=subset, kid_subsets=kid_subsets, seed=seed)
            rows[name] = {
                key: round(float(scores[key]), 6) for key in ("frechet_distance", "kid_mean", "kid_std")
            }
    return {"measured": True, "n": n, "n_reference": b.n, **rows}


def precision_recall_density_coverage(real: FeatureStats, fake: FeatureStats, *, nearest_k: int = 5) -> dict:
    """Improved precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020) of the
    generated features against the real ones, through the authors' ``prdc`` package: precision and density say
    how much of the generated set lies on the real manifold (realism), recall and coverage how much of the real
    manifold the generated set reaches (diversity). A Fréchet distance folds the two into one number."""
    import contextlib
    import io

    from prdc import compute_prdc

    k = min(nearest_k, real.n - 1, fake.n - 1)
    if k < 1:
        raise ValueError(
            f"precision / recall need at least 2 real and 2 generated images, got {real.n} / {fake.n}"
        )
    from joblib import parallel_backend

    # prdc asks scikit-learn for 8 worker processes per distance matrix; here the matrices are small and the
    # workers' start-up is most of the cost (and more than 2 cores' worth): run them in this process.
    with (
        parallel_backend("sequential"),
        contextlib.redirect_stdout(io.StringIO()),
    ):  # prdc prints the set sizes
        scores = compute_prdc(real.features.astype(np.float32), fake.features.astype(np.float32), nearest_k=k)
    return {**{key: round(float(value), 4) for key, value in scores.items()}, "nearest_k": k}
