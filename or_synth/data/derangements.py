"""Derangements of scans: the pairing behind every "another scan's graph" in the toolkit (the consistency floor,
the conflict control), in the data layer so that sampling and evaluation draw the same ones."""

from __future__ import annotations

import numpy as np


def derangement(n: int, seed: int) -> np.ndarray:
    """A random permutation without fixed points (Sattolo's algorithm: one n-cycle); ``n < 2`` has none and
    returns the identity."""
    rng, perm = np.random.default_rng(seed), np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm
