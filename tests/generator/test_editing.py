"""Graph edits through the generator: the edit region from the two label maps, and regeneration that keeps
every latent cell outside it (so, through the patch codec, every pixel of those cells)."""

from __future__ import annotations

import numpy as np
import torch

from or_synth.data.edits import apply_edit
from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import Vocabulary
from or_synth.generator import PatchPCACodec
from or_synth.generator.editing import (
    edit_region,
    keep_mask_for,
    kept_region_change,
    regenerate,
    renumber_mask,
)
from tests.helpers import small_scene, tiny_pipeline

# small_scene nodes: 0 Patient, 1 human_0 (head-surgeon), 2 human_1 (assistant), 3 instrument,
# 4 instrument_table, 5 operating_table


def record():
    return parse_scan(small_scene(4, "000001"), Vocabulary())


def label_map() -> np.ndarray:
    """16 x 16: the table (6) and patient (1) across the middle, head surgeon (2) top left, assistant (3) right."""
    mask = np.zeros((16, 16), np.uint8)
    mask[6:10, 2:14] = 6
    mask[7:9, 4:12] = 1
    mask[0:4, 0:4] = 2
    mask[0:4, 12:16] = 3
    mask[15, 15] = 255
    return mask


def test_renumbered_mask_and_region_follow_the_edit():
    remove = apply_edit(record(), "remove assistant-surgeon")
    renumbered = renumber_mask(label_map(), remove)
    assert (renumbered[0:4, 12:16] == 0).all() and (renumbered[7:9, 4:12] == 1).all()
    assert (renumbered[6, 2] == 5) and renumbered[15, 15] == 255  # later nodes up by one; clutter stays

    predicate = apply_edit(record(), "predicate head-surgeon Patient Sawing")
    region = edit_region(label_map(), label_map(), predicate, dilation=0)
    assert region[0:4, 0:4].all() and region[7:9, 4:12].all()  # the head surgeon and the patient
    assert not region[0:4, 12:16].any() and not region[6, 2]  # the assistant and the table are kept
    assert edit_region(label_map(), label_map(), predicate, dilation=1)[4, 0]  # dilated by a pixel


def test_regenerate_keeps_the_outside_of_the_region_and_changes_the_inside():
    torch.manual_seed(0)
    codec = PatchPCACodec(patch_size=2, latent_channels=4)
    codec.fit(torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8))
    pipe = tiny_pipeline(layout_channels=4, vae=codec)
    pipe.set_progress_bar_config(disable=True)
    result = apply_edit(record(), "predicate head-surgeon Patient Sawing")
    images = regenerate(
        pipe, result, view=1, seed=3, before_mask=label_map(), after_mask=label_map(), num_inference_steps=3,
        guidance_scale=1.0, dilation=0,
    )  # fmt: skip
    region = images.region
    assert region is not None and region[0:4, 0:4].all() and not region[0:4, 12:16].any()
    # Latent cells that no edited pixel touches decode (2 x 2 patches) to exactly the before pixels.
    kept_cells = keep_mask_for(torch.from_numpy(region)[None], (8, 8))[0, 0].bool()
    kept = kept_cells.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert kept[0:4, 12:16].all() and not kept[0:4, 0:4].any()
    assert torch.allclose(images.after[:, kept], images.before[:, kept], atol=1e-5)
    inside = torch.from_numpy(region)
    assert not torch.allclose(images.after[:, inside], images.before[:, inside], atol=1e-3)
    assert images.full.shape == images.after.shape and not torch.equal(images.full, images.after)
    # The null edit: the same region re-inpainted under the unchanged graph keeps the same pixels outside it and
    # differs from the edit inside it only through the graph.
    assert torch.allclose(images.null[:, kept], images.before[:, kept], atol=1e-5)
    assert not torch.allclose(images.null[:, inside], images.after[:, inside], atol=1e-3)

    without_layout = regenerate(pipe, result, view=1, seed=3, num_inference_steps=3, guidance_scale=1.0)
    assert without_layout.region is None and torch.equal(without_layout.after, without_layout.full)
    assert without_layout.null is None  # no region to re-inpaint: the before image is the unchanged graph's


def test_kept_region_change_looks_only_outside_the_region():
    torch.manual_seed(0)
    before = torch.rand(3, 32, 32)
    region = np.zeros((32, 32), bool)
    region[8:20, 8:20] = True
    inside_only = before.clone()
    inside_only[:, 8:20, 8:20] = torch.rand(3, 12, 12)
    same = kept_region_change(before, inside_only, region)
    assert same["kept_mse"] == 0.0 and same["kept_fraction"] == 1 - 144 / 1024
    assert 0.9 < same["kept_ssim"] <= 1.0 + 1e-6  # windows near the region's edge see some of it
    changed = kept_region_change(before, torch.rand(3, 32, 32), region)
    assert changed["kept_mse"] > 0.05 and changed["kept_ssim"] < 0.2
