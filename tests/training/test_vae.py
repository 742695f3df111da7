"""Stage ``vae`` (a trained ``AutoencoderKL``) on the shared loop: Ctrl-C saves a checkpoint and stops, and the resumed
run writes the autoencoder an uninterrupted run writes."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from or_synth.data.errors import StoppedOnRequest
from or_synth.train import train
from or_synth.training import vae as vae_stage
from tests.helpers import compose_smoke_cfg, latest_step

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_ctrl_c_checkpoints_and_the_resumed_run_equals_an_uninterrupted_one(
    tiny_render, tmp_path, monkeypatch
):
    draw = vae_stage.step_generator

    def interrupt_in_the_first_step(seed: int, step: int) -> torch.Generator:
        if step == 0:
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: the step finishes, then the stage stops
        return draw(seed, step)

    monkeypatch.setattr(vae_stage, "step_generator", interrupt_in_the_first_step)
    with pytest.raises(StoppedOnRequest, match="vae stopped on request at step 1"):
        train(compose_smoke_cfg(tiny_render, tmp_path, ["stage=vae"]))
    run_dir = tmp_path / "runs/vae/smoke"
    assert latest_step(run_dir) == 1  # though ckpt_every=2
    assert not (run_dir / "autoencoder").exists() and not list((run_dir / "samples").glob("*.png"))
    assert json.loads((run_dir / "metrics.json").read_text())["step"] == 1

    monkeypatch.setattr(vae_stage, "step_generator", draw)
    resumed = train(compose_smoke_cfg(tiny_render, tmp_path, ["stage=vae"]))
    straight = train(compose_smoke_cfg(tiny_render, tmp_path, ["stage=vae", "name=straight"]))
    assert resumed["step"] == straight["step"] == 4
    assert resumed["metrics"]["scaling_factor"] == straight["metrics"]["scaling_factor"]
    ours, theirs = (
        load_file(f"{r['autoencoder_dir']}/diffusion_pytorch_model.safetensors") for r in (resumed, straight)
    )
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
