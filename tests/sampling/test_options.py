"""The one option check of sample, export and edit (no files read, no model loaded)."""

from __future__ import annotations

import math
from functools import cache

import pytest
from omegaconf import OmegaConf

from or_synth.sampling import SAMPLERS, check_options
from tests.helpers import sampling_config

COMMANDS = ("sample", "export", "edit")


@cache
def composed(command: str):
    return sampling_config(command, "pipeline=p")


def config(command: str, **values):
    """The command's config (composed once) with ``values`` set, as the command line would set them."""
    cfg = composed(command).copy()
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_defaults_pass_and_cameras_are_deduplicated_in_order(command):
    options = check_options(
        sampling_config(command, "pipeline=p", "cameras=[5,1,5,2]", "sampler=dpm-solver++")
    )
    assert options.cameras == [5, 1, 2] and options.sampler == "dpmsolver++" and options.layout == "auto"
    assert (options.sampling.steps, options.seed, str(options.device)) == (20, 0, "cpu")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pipeline", None, "pipeline=DIR is required"),
        ("cameras", [1, 7], "camera 7 is not a 4D-OR camera; cameras must be in 1..6"),
        ("cameras", [], "cameras is empty"),
        ("cameras", [True], "camera True is not a 4D-OR camera"),
        ("steps", 0, "steps must be >= 1"),
        ("guidance_scale", math.inf, "guidance_scale must be a finite number"),
        ("layout_guidance_scale", math.nan, "layout_guidance_scale must be a finite number"),
        ("seed", -1, "seed must be >= 0"),
        ("sampler", "euler", "unknown sampler 'euler'"),
        ("layout", "boxes", "layout must be one of auto, none, masks, render, predicted"),
        ("layout_predictor", "somewhere", "layout_predictor is set but layout=auto"),
        ("layout", "predicted", "layout=predicted needs layout_predictor=DIR"),
        ("device", "cuda:7", None),  # refused only where CUDA is missing
    ],
)
def test_bad_options_are_refused_naming_the_option(command, key, value, message):
    import torch

    if message is None:
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        message = "CUDA is not available"
    with pytest.raises(ValueError, match=message):
        check_options(config(command, **{key: value}))


@pytest.mark.parametrize(
    ("command", "key", "value", "message"),
    [
        ("sample", "samples_per_graph", 0, "samples_per_graph must be >= 1"),
        ("sample", "stride", 0, "stride must be >= 1"),
        ("sample", "limit", -1, "limit must be >= 1 or null"),
        ("sample", "batch_size", 0, "batch_size must be >= 1"),
        ("export", "samples_per_graph", 0, "samples_per_graph must be >= 1"),
        ("export", "limit", 0, "limit must be >= 1 or null"),
        ("export", "batch_size", 0, "batch_size must be >= 1"),
    ],
)
def test_the_counts_a_command_has_are_checked(command, key, value, message):
    with pytest.raises(ValueError, match=message):
        check_options(config(command, **{key: value}))


def test_the_command_line_spelling_reaches_the_check_and_a_predictor_folder_must_be_one(tmp_path):
    with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
        check_options(sampling_config("sample", "pipeline=p", "guidance_scale=nan"))
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        check_options(config("sample", layout="predicted", layout_predictor=str(tmp_path)))


def test_every_sampler_name_maps_to_a_canonical_one():
    assert set(SAMPLERS.values()) == {"ddpm", "ddim", "dpmsolver++"}
