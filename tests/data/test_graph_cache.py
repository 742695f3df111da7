"""The data path at real 4D-OR's scale: graphs separated at once from the processed cache, JPEG draft decoding,
and the resized-image cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch_geometric.data import InMemoryDataset
from torch_geometric.data.separate import separate

from or_synth.data import FourDORDataset
from or_synth.data.images import ResizedImageCache, read_image


def test_graphs_separated_at_once_are_pygs_separate_attribute_by_attribute(real_validation_file, tmp_path):
    dataset = FourDORDataset(real_validation_file.parent, "validation", dense=True, processed_root=tmp_path)
    assert len(dataset) == 1332
    for index in range(0, 1332, 7):
        ours = InMemoryDataset.get(dataset, index)
        pygs = separate(dataset._data.__class__, dataset._data, index, dataset.slices, decrement=False)
        assert sorted(ours.keys()) == sorted(pygs.keys()) and ours.num_nodes == pygs.num_nodes
        for key in pygs.keys():  # noqa: SIM118 (iterating a Data yields (key, value) pairs)
            if torch.is_tensor(pygs[key]):
                assert torch.equal(ours[key], pygs[key]) and ours[key].dtype == pygs[key].dtype, key
            else:
                assert ours[key] == pygs[key], key
    subset = dataset[torch.tensor([5, 2])]
    assert [g.scan for g in subset] == [dataset[5].scan, dataset[2].scan]


def jpeg(path, size, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (size[0] // 32, size[1] // 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).resize((size[1], size[0]), Image.Resampling.BILINEAR).save(path, quality=95)
    return path


def test_draft_decoding_only_for_images_much_larger_than_asked(tmp_path):
    small = jpeg(tmp_path / "small.jpg", (96, 128))
    with Image.open(small) as handle:
        full = torch.from_numpy(np.asarray(handle.convert("RGB")).copy()).permute(2, 0, 1)
    from torchvision.transforms.v2 import functional as F

    # 2x: the full decode, byte for byte what the rendered datasets always read.
    assert torch.equal(read_image(small, (48, 64)), F.resize(full, [48, 64], antialias=True))
    large = jpeg(tmp_path / "large.jpg", (768, 1024), seed=1)
    drafted = read_image(large, (96, 128)).float()
    with Image.open(large) as handle:
        reference = F.resize(torch.from_numpy(np.asarray(handle.convert("RGB")).copy()).permute(2, 0, 1), [96, 128],
                             antialias=True).float()  # fmt: skip
    assert (
        drafted.shape == (3, 96, 128) and (drafted - reference).abs().mean() < 4
    )  # same picture, cheaper decode


def test_resized_cache_serves_the_same_pixels_and_never_a_stale_entry(tmp_path):
    source = jpeg(tmp_path / "camera01_colorimage-000001.jpg", (384, 512))
    cache = ResizedImageCache(tmp_path / "cache")
    first = cache.read(source, (64, 64), take=1, scan="000000", camera=1)
    assert torch.equal(first, read_image(source, (64, 64)))
    entries = list((tmp_path / "cache").rglob("*.png"))
    assert len(entries) == 1 and torch.equal(cache.read(source, (64, 64)), first)
    jpeg(source, (384, 512), seed=7)  # the image is replaced
    os.utime(source, ns=(1, 1))
    assert torch.equal(cache.read(source, (64, 64)), read_image(source, (64, 64)))
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 2
    with pytest.raises(Exception, match="image file is missing"):
        cache.read(tmp_path / "absent.jpg", (64, 64), take=1, scan="000000", camera=1)


def test_datasets_cache_resized_images_when_asked_and_by_default_only_for_large_ones(tiny_render, tmp_path):
    auto = FourDORDataset(
        tiny_render, "train", load_images=True, image_size=16, processed_root=tmp_path / "a"
    )
    auto.read_images(1, "000000")
    assert not (tmp_path / "a" / "images").exists()  # 32 px images read at 16: 2x, no cache
    cached = FourDORDataset(tiny_render, "train", load_images=True, image_size=16, processed_root=tmp_path / "b",
                            image_cache=True)  # fmt: skip
    assert torch.equal(cached.read_images(1, "000000"), auto.read_images(1, "000000"))
    assert len(list((tmp_path / "b" / "images").rglob("*.png"))) == 6
