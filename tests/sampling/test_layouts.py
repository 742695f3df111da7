"""The layout table and its sources: ``auto`` per pipeline, a layout a pipeline cannot take, and each source's
``masks(items)`` (read from a dataset, drawn by the renderer) against what it stands for."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from or_synth.data import load_scene_graphs
from or_synth.data.manifest import LAYOUT_SOURCES
from or_synth.render import layout_masks
from or_synth.sampling import LAYOUT_OPTIONS, GivenMasks, RenderedLayouts, resolve_layout
from or_synth.sampling.seeds import make_item, plan_items
from tests.helpers import small_scene, write_layout_dataset

WITH_LAYOUT, WITHOUT = SimpleNamespace(has_layout_input=True), SimpleNamespace(has_layout_input=False)


def test_the_table_and_auto():
    assert LAYOUT_OPTIONS == ("auto", "none", "masks", "render", "predicted")
    assert LAYOUT_SOURCES == {
        "none": "absent",
        "masks": "given",
        "render": "rendered",
        "predicted": "predicted",
    }
    assert resolve_layout("auto", WITH_LAYOUT) == "render" and resolve_layout("auto", WITHOUT) == "none"
    assert [resolve_layout(o, WITH_LAYOUT) for o in LAYOUT_SOURCES] == list(LAYOUT_SOURCES)
    assert resolve_layout("none", WITHOUT) == "none"
    for option in ("masks", "render", "predicted"):
        with pytest.raises(
            ValueError, match=f"layout={option}, but this pipeline's denoiser has no layout input"
        ):
            resolve_layout(option, WITHOUT)


def test_given_masks_are_the_datasets_resized_nearest(tmp_path):
    root = write_layout_dataset(
        tmp_path / "ds", {"validation": [small_scene(4, "000001")]}, image_hw=(24, 32)
    )
    folder = root / "export_holistic_take4_processed" / "instance_masks"
    folder.mkdir(parents=True)
    mask = np.zeros((24, 32), dtype=np.uint8)
    mask[4:20, 6:26], mask[0:8, 0:10] = 1, 6
    Image.fromarray(mask).save(folder / f"camera01_colorimage-{1000 + 7:06d}.png")
    record = load_scene_graphs(root / "relationships_validation.json").records[0]
    maps = GivenMasks(root, (12, 16)).masks([make_item(0, record, 1, 0, 0)])
    assert maps.shape == (1, 12, 16) and maps.dtype.is_floating_point is False
    assert set(np.unique(maps.numpy())) == {0, 1, 6}  # labels stay labels
    assert np.array_equal(maps[0].numpy(), mask[::2, ::2])


def test_rendered_layouts_are_the_renderers_whatever_the_batch(tmp_path):
    scans = [small_scene(4, "000001"), small_scene(8, "000005")]
    path = tmp_path / "relationships_validation.json"
    path.write_text(__import__("json").dumps({"scans": scans}))
    records = load_scene_graphs(path).records
    items = plan_items(records, [1, 4], 2, 0)
    source = RenderedLayouts(records, [1, 4], (16, 16), 0, path)
    together = source.masks(items).numpy()
    one_by_one = np.stack([source.masks([item])[0].numpy() for item in reversed(items)])[::-1]
    assert np.array_equal(together, one_by_one)
    for item, labels in zip(items, together, strict=True):
        assert np.array_equal(labels, layout_masks(records[item.graph], [item.camera], (16, 16), seed=0)[0])
