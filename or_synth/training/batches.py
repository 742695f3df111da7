"""The data side of every stage: the configured dataset's splits, the embedded dataset rendered on first use, and
the batch and random numbers of a step as pure functions of the step number (so a resumed run sees exactly what
an uninterrupted one would)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig

from or_synth.data import FourDORDataset
from or_synth.data.dataset import DOWNLOAD_INSTRUCTIONS, relationships_file
from or_synth.data.errors import DatasetMissing
from or_synth.data.images import FRAME_LIST, take_dir
from or_synth.data.io import read_json
from or_synth.data.vocabulary import SPLIT_TAKES, canonical_split


def build_dataset(dataset_cfg: DictConfig, split: str, *, load_images: bool = True) -> FourDORDataset:
    """A split of the configured dataset (4D-OR or anything in its layout, e.g. the synthetic OR); a take of it
    that is not there is refused first (:func:`check_takes_present`)."""
    check_takes_present(dataset_cfg, split, load_images=load_images)
    return FourDORDataset(
        dataset_cfg.root,
        split,
        takes=dataset_cfg.get("takes"),
        cameras=dataset_cfg.cameras,
        image_size=dataset_cfg.image_size,
        load_images=load_images,
        strict=dataset_cfg.get("strict", True),
        processed_root=dataset_cfg.get("processed_root"),
        image_cache=dataset_cfg.get("image_cache", "auto"),
    )


def check_takes_present(dataset_cfg: DictConfig, split: str, *, load_images: bool = True) -> None:
    """Every take the split's scene graphs use has its folder, its frame list and (to read images) colour images:
    an incomplete download is one message saying what is missing, where it looked, how to get it, and how to use
    the embedded dataset instead. A single missing or corrupt image is the dataset's own error (naming the file,
    take, scan and camera). With ``dataset.strict=false`` the dataset skips such scans instead, so nothing is
    checked here.

    Raises:
        DatasetMissing: a take folder, its frame list or all of its colour images are missing.
    """
    if not dataset_cfg.get("strict", True):
        return
    root = Path(str(dataset_cfg.root))
    annotations = relationships_file(root, split)
    if annotations is None:
        return  # no split at all: the dataset says what to download
    document = read_json(annotations, what="relationships file")
    scans = document.get("scans") if isinstance(document, dict) else None
    takes = dataset_cfg.get("takes") or SPLIT_TAKES[canonical_split(split)]
    ids = [s.get("take_idx") for s in scans or () if isinstance(s, dict)]
    used = sorted(
        {t for t in ids if type(t) is int and t in takes}
    )  # the dataset names a bad take_idx itself
    for take in used:
        folder = take_dir(root, take)
        if not folder.is_dir():
            missing, looked = f"take {take} is missing", folder
        elif not (folder / FRAME_LIST).is_file():
            missing, looked = f"take {take} has no frame list", folder / FRAME_LIST
        elif load_images and not any((folder / "colorimage").glob("camera0*_colorimage-*.jpg")):
            missing, looked = f"take {take} has no colour images", folder / "colorimage"
        else:
            continue
        raise DatasetMissing(
            f"the dataset at {root} is incomplete: {missing} ({annotations.name} has scans of it; looked for "
            f"{looked}).\n" + DOWNLOAD_INSTRUCTIONS.format(root=root)
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
