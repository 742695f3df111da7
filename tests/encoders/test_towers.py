"""Pretrained weights that cannot be loaded give a clear error; image towers freeze / unfreeze by config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from or_synth.encoders import PretrainedWeightsError, build_image_tower, build_text_tower
from tests.helpers import TINY_CLIP, TINY_D2V_VISION

ROOT = Path(__file__).resolve().parents[2]


def test_missing_local_open_clip_checkpoint_names_the_setting(tmp_path):
    missing = tmp_path / "nope" / "open_clip_pytorch_model.bin"
    for make in (build_text_tower, build_image_tower):
        with pytest.raises(PretrainedWeightsError) as error:
            make({"backend": "open_clip", "model": "ViT-B-32", "pretrained": str(missing)})
        message = str(error.value)
        assert str(missing) in message and "encoder.towers.pretrained=/path/to" in message
        assert "ViT-B-32" in message


def test_missing_local_data2vec_folders_name_the_setting(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="encoder.towers.text_model=/path/to/the/text/folder"):
        build_text_tower({"backend": "data2vec", "text_model": str(tmp_path / "d2v"), "pretrained": True})
    with pytest.raises(PretrainedWeightsError, match="encoder.towers.vision_model="):
        build_image_tower({"backend": "data2vec", "vision_model": str(tmp_path / "v"), "pretrained": True})


def test_hub_weights_offline_give_a_clear_error_not_random_weights():
    """With the hub unreachable (offline mode), asking for hub weights fails loudly."""
    code = (
        "from or_synth.encoders import PretrainedWeightsError, build_text_tower\n"
        "for towers in ({'backend': 'data2vec', 'text_model': 'facebook/data2vec-text-base', 'pretrained': True},"
        " {'backend': 'open_clip', 'model': 'ViT-B-32', 'pretrained': 'laion2b_s34b_b79k'}):\n"
        "    try:\n"
        "        build_text_tower(towers)\n"
        "    except PretrainedWeightsError as e:\n"
        "        print('CLEAR', 'encoder.towers.' in str(e))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.count("CLEAR True") == 2, out.stdout + out.stderr


def test_hub_tag_with_custom_arch_is_refused():
    with pytest.raises(ValueError, match="hub tag"):
        build_text_tower({"backend": "open_clip", "arch": TINY_CLIP, "pretrained": "openai"})


@pytest.mark.parametrize("backend", ["open_clip", "data2vec"])
def test_image_tower_freezing(backend):
    towers = {"backend": backend, "pretrained": None, "arch": TINY_CLIP, "vision_arch": TINY_D2V_VISION}
    frozen = build_image_tower(towers, trainable_blocks=0)
    assert frozen.frozen
    frozen.train()
    assert not frozen.training  # a frozen tower stays in eval mode
    partial = build_image_tower(towers, trainable_blocks=1)
    blocks = partial.blocks()
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not any(p.requires_grad for p in blocks[0].parameters())
    full = build_image_tower(towers, trainable_blocks=-1)
    assert all(p.requires_grad for p in full.parameters())
    out = partial(torch.randint(0, 255, (2, 3, 40, 56), dtype=torch.uint8))
    assert out.shape == (2, partial.dim) and partial.image_size == (32, 32)


def test_image_tower_reads_normalisation_from_the_pretrained_config():
    import open_clip

    from or_synth.encoders.towers import load_open_clip

    _, _, preprocess = load_open_clip(None, None, TINY_CLIP)
    assert preprocess["mean"] == tuple(open_clip.constants.OPENAI_DATASET_MEAN)
