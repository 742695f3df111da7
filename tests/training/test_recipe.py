"""The generator recipe through the real entry point: ``debug=smoke`` renders the embedded dataset on first use,
trains every stage of ``stage=all`` and skips the complete ones; under two processes only one renders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch_geometric.data import InMemoryDataset

from or_synth.data import FourDORDataset
from or_synth.generator import ORScenePipeline
from or_synth.train import train
from tests.helpers import compose_smoke_cfg, smoke_overrides

# The tiny render of tests/conftest.py's tiny_render, here rendered by the training command itself.
RENDER = 'dataset.render=["takes=6","scans_per_take=8","image_size=[32,32]","progress=false"]'

ROOT = Path(__file__).resolve().parents[2]  # subprocesses import this checkout's or_synth


def test_smoke_recipe_renders_trains_every_stage_and_skips_complete_ones(tmp_path):
    rendered = tmp_path / "synthetic_or"
    result = train(compose_smoke_cfg(rendered, tmp_path, [RENDER]))
    assert set(result) == {"vae", "align", "ldm"} and (rendered / "relationships_train.json").is_file()
    runs = tmp_path / "runs"
    vae_config = json.loads((runs / "vae/smoke/autoencoder/config.json").read_text())
    assert vae_config["scaling_factor"] == pytest.approx(result["vae"]["metrics"]["scaling_factor"])
    assert (runs / "align/smoke/encoder/model.safetensors").is_file()
    ldm = result["ldm"]
    assert ldm["metrics"]["layout"] is True and Path(ldm["grid"]).is_file()
    assert list((runs / "ldm/smoke/tensorboard").glob("events.out.tfevents.*"))
    for stage in ("vae", "align", "ldm"):  # every stage on the same step-indexed checkpoints
        assert sorted(p.name for p in (runs / stage / "smoke/checkpoints").glob("step_*")) == [
            "step_0000002",
            "step_0000004",
        ]

    graphs = FourDORDataset(rendered, "val", processed_root=tmp_path / "p2")
    pipe = ORScenePipeline.from_pretrained(ldm["pipeline_dir"])  # no training code needed
    data = [InMemoryDataset.get(graphs, i) for i in range(2)]
    images = pipe(data, [1, 4], num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 32, 32, 3)

    again = train(compose_smoke_cfg(rendered, tmp_path, [RENDER]))
    assert all(again[stage].get("skipped") for stage in ("vae", "align", "ldm"))


@pytest.mark.slow
def test_two_processes_render_and_align_once(tmp_path):
    """Under a 2-process launch only the main process renders the embedded dataset and trains align; the other
    waits at a barrier (no two processes write one folder) and both finish."""
    root = tmp_path / "synthetic_or"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534",
               "-m", "or_synth.train", "stage=align", *smoke_overrides(root, tmp_path), RENDER]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert output.count("rendering the embedded synthetic OR dataset") == 1
    assert output.count("stage align finished") == 2  # both ranks pass the barrier
    assert (tmp_path / "runs/align/smoke/encoder/model.safetensors").is_file()
