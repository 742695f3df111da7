"""Latents of the training images, computed once per (autoencoder, dataset split, cameras, size) and cached.

The denoiser never runs the encoder in its loop: the posterior mean and standard deviation of every view are
stored in safetensors shards under a folder named by the hash of the autoencoder's weights and of the data, so
a retrained autoencoder or a changed dataset gets a new folder and a stale cache is never read. ``meta.json``
is written last: a folder without it is incomplete and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from or_synth.data.io import atomic_path, atomic_write_json
from or_synth.generator.autoencoder import FirstStage, to_model_range, weights_hash

SHARD_SIZE = 2048
META = "meta.json"


@dataclass
class CachedLatents:
    """Posterior parameters of M views: ``mean`` and ``std`` (M, C, h, w), unscaled (multiply samples by
    ``vae.config.scaling_factor``)."""

    mean: torch.Tensor
    std: torch.Tensor
    folder: Path

    def sample(self, indices: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Posterior samples of ``indices`` with the given standard-normal ``noise``."""
        return self.mean[indices] + self.std[indices] * noise


def cache_key(vae: FirstStage, data_identity: dict) -> str:
    """Hash of the autoencoder's weights and config, and of what identifies the images."""
    parts = {"vae": weights_hash(vae), "vae_config": dict(vae.config), "data": data_identity}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def dataset_identity(dataset, count: int) -> dict:
    """What the cached images depend on: the annotation file (path, size, mtime), split, takes, cameras, size."""
    stat = dataset.annotation_file.stat()
    return {
        "file": str(dataset.annotation_file.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "root": str(Path(dataset.dataset_root).resolve()),
        "split": dataset.split,
        "takes": list(dataset.takes),
        "cameras": list(dataset.cameras),
        "image_size": list(dataset.image_size or []),
        "views": count,
    }


@torch.no_grad()
def encode_views(vae: FirstStage, images: torch.Tensor, batch_size: int = 64, progress: bool = True):
    """(mean, std) of the posterior of uint8 images (M, 3, H, W)."""
    vae.eval()
    device = vae.device  # parameters or buffers: the codec has only buffers
    means, stds = [], []
    for start in tqdm(range(0, images.shape[0], batch_size), desc="encoding latents", disable=not progress):
        posterior = vae.encode(to_model_range(images[start : start + batch_size].to(device))).latent_dist
        means.append(posterior.mean.float().cpu())
        stds.append(posterior.std.float().cpu())
    return torch.cat(means), torch.cat(stds)


def cached_latents(
    vae: FirstStage,
    images: torch.Tensor,
    cache_dir: str | Path,
    data_identity: dict,
    progress: bool = True,
) -> CachedLatents:
    """The latents of ``images``, read from ``cache_dir/<key>/`` or computed and written there."""
    folder = Path(cache_dir) / cache_key(vae, data_identity)
    meta_file = folder / META
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        shards = [load_file(str(folder / name)) for name in meta["shards"]]
        mean = torch.cat([s["mean"] for s in shards])
        if mean.shape[0] == images.shape[0]:
            return CachedLatents(mean, torch.cat([s["std"] for s in shards]), folder)
    shutil.rmtree(folder, ignore_errors=True)  # incomplete or inconsistent: rebuild
    mean, std = encode_views(vae, images, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, start in enumerate(range(0, mean.shape[0], SHARD_SIZE)):
        name = f"latents_{i:05d}.safetensors"
        with atomic_path(folder / name) as tmp:
            save_file(
                {
                    "mean": mean[start : start + SHARD_SIZE].contiguous(),
                    "std": std[start : start + SHARD_SIZE].contiguous(),
                },
                str(tmp),
            )
        names.append(name)
    atomic_write_json(
        meta_file, {"shards": names, "views": int(mean.shape[0]), "data": data_identity}, indent=2
    )
    return CachedLatents(mean, std, folder)
