"""The data side of every stage: the configured dataset's splits, the embedded dataset rendered on first use, and
the batch and random numbers of a step as pure functions of the step number (so a resumed run sees exactly what
an uninterrupted one would)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from omegaconf import DictConfig

from or_synth.data import FourDORDataset


def build_dataset(dataset_cfg: DictConfig, split: str, *, load_images: bool = True) -> FourDORDataset:
    """A split of the configured dataset (4D-OR or anything in its layout, e.g. the synthetic OR)."""
    return FourDORDataset(
        dataset_cfg.root,
        split,
        takes=dataset_cfg.get("takes"),
        cameras=dataset_cfg.cameras,
        image_size=dataset_cfg.image_size,
        load_images=load_images,
        strict=dataset_cfg.get("strict", True),
        processed_root=dataset_cfg.get("processed_root"),
    )


def ensure_rendered(dataset_cfg: DictConfig) -> None:
    """Render the embedded synthetic dataset on first use: when the config says how (``dataset.render``) and
    ``dataset.root`` holds no dataset yet (an interrupted render resumes; a complete one is never touched)."""
    overrides = dataset_cfg.get("render")
    if overrides is not None:
        from or_synth.render import render_on_first_use

        render_on_first_use(dataset_cfg.root, list(overrides), dataset_cfg.train_split)


def epoch_batch(num_items: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the global batch of ``step``: epochs are seeded permutations, so the data position is a
    function of the step alone and a resumed run sees exactly the batches an uninterrupted one would."""
    per_epoch = max(num_items // batch_size, 1)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    if num_items < batch_size:  # tiny datasets (tests): repeat the permutation
        order = order.repeat(batch_size // num_items + 1)
    return order[position * batch_size : (position + 1) * batch_size]


def epoch_batches(num_items: int, batch_size: int, seed: int, start: int, steps: int) -> Iterator[list[int]]:
    """:func:`epoch_batch` of the steps ``start..steps-1``, as a DataLoader ``batch_sampler`` (a loader that reads
    its items in worker processes and still resumes exactly)."""
    for step in range(start, steps):
        yield epoch_batch(num_items, batch_size, step, seed).tolist()


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one step's noise, timesteps and dropouts, independent of what ran before it (so
    resuming at any step, or splitting the global batch over processes, draws the same numbers)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 7 + stream)
