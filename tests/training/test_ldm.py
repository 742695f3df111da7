"""Stage ``ldm`` on the tiny render: the closed-form patch codec as first stage, the time budget, exact resume after
SIGKILL, Ctrl-C, and two CPU processes (gloo) against one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from torch_geometric.data import InMemoryDataset

from or_synth.data import FourDORDataset
from or_synth.generator import ORScenePipeline, PatchPCACodec
from or_synth.train import train
from or_synth.training import ldm as ldm_stage
from or_synth.training import vae as vae_stage
from tests.helpers import (
    compose_smoke_cfg,
    interrupt_after_steps,
    kill_after_checkpoint,
    latest_step,
    smoke_command,
    smoke_overrides,
    train_losses,
)

ROOT = Path(__file__).resolve().parents[2]  # subprocesses import this checkout's or_synth


@pytest.fixture(scope="module")
def first_stages(tiny_render, tmp_path_factory) -> list[str]:
    """The smoke recipe's autoencoder and align encoder, trained once for the module: the ldm overrides that use
    them."""
    work = tmp_path_factory.mktemp("first_stages")
    train(compose_smoke_cfg(tiny_render, work, ["stage=vae"]))
    train(compose_smoke_cfg(tiny_render, work, ["stage=align"]))
    return [
        f"ldm.autoencoder_dir={work}/runs/vae/smoke/autoencoder",
        f"ldm.encoder_dir={work}/runs/align/smoke/encoder",
    ]


def _draw(pipeline_dir: str, root: Path, work: Path):
    """(2, H, W, 3) images of two validation graphs through a saved pipeline (no training code needed)."""
    graphs = FourDORDataset(root, "val", processed_root=work / "p2")
    pipe = ORScenePipeline.from_pretrained(pipeline_dir)
    data = [InMemoryDataset.get(graphs, i) for i in range(2)]
    return pipe(data, [1, 4], num_inference_steps=2, output_type="np").images


def test_patch_codec_is_fitted_by_stage_vae_and_carries_ldm(tiny_render, tmp_path):
    """autoencoder=pca_patch: stage vae fits the codec (no loop, no checkpoints; complete at once), ldm trains
    on its latents and writes a pipeline whose vae reloads as the codec (8x8x12 latents at 32 px)."""
    codec = ["autoencoder=pca_patch", "ldm.encoder_dir=null"]  # a fresh graph encoder: no align run needed
    fitted = train(compose_smoke_cfg(tiny_render, tmp_path, ["stage=vae", *codec]))
    metrics = fitted["metrics"]
    assert metrics["step"] == 0 and 0.9 < metrics["explained_variance"] <= 1.0 and metrics["fit_seconds"] < 10
    assert metrics["val_psnr"] > 24.0 and 0.5 < metrics["scaling_factor"] < 2.0  # whitened: std about 1
    assert not (tmp_path / "runs/vae/smoke/checkpoints").exists()
    assert vae_stage.is_complete(compose_smoke_cfg(tiny_render, tmp_path, codec))

    ldm = train(compose_smoke_cfg(tiny_render, tmp_path, ["stage=ldm", *codec]))
    pipe = ORScenePipeline.from_pretrained(ldm["pipeline_dir"])
    assert isinstance(pipe.vae, PatchPCACodec) and pipe.latent_shape == (12, 8, 8)
    assert pipe.vae.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
    assert _draw(ldm["pipeline_dir"], tiny_render, tmp_path).shape == (2, 32, 32, 3)


def test_time_budget_stops_with_a_checkpoint_and_a_pipeline_and_a_longer_run_resumes(tiny_render, tmp_path):
    """ldm.time_budget_s: the run stops at the step where the budget is spent, saves checkpoint + pipeline and
    counts as complete; raising the budget resumes it (the budgeted run is a prefix). Also exercises x0
    (``sample``) prediction with min-SNR weighting through training and sampling."""
    extra = [
        "autoencoder=pca_patch",
        "ldm.encoder_dir=null",
        "scheduler.prediction_type=sample",
        "ldm.snr_gamma=5.0",
        "ldm.steps=3",
        "ldm.lr_schedule=constant_with_warmup",
    ]
    train(compose_smoke_cfg(tiny_render, tmp_path, ["stage=vae", *extra]))
    budgeted = [*extra, "ldm.time_budget_s=1e-9"]
    first = train(compose_smoke_cfg(tiny_render, tmp_path, ["stage=ldm", *budgeted]))
    run_dir = tmp_path / "runs/ldm/smoke"
    assert first["step"] == 1 and first["metrics"]["stopped_by_time_budget"] is True
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) == ["step_0000001"]
    assert (
        run_dir / "samples/grid_0000001.png"
    ).is_file()  # the early last step draws its grid, as step 3 would
    assert ldm_stage.is_complete(compose_smoke_cfg(tiny_render, tmp_path, budgeted))
    assert not ldm_stage.is_complete(compose_smoke_cfg(tiny_render, tmp_path, extra))

    # The final grid's extra column: a reference pipeline's images of the same graphs.
    reference = shutil.copytree(first["pipeline_dir"], tmp_path / "reference")
    longer_run = [*extra, "ldm.time_budget_s=100000", f"ldm.sample.reference_pipeline={reference}"]
    longer = train(compose_smoke_cfg(tiny_render, tmp_path, ["stage=ldm", *longer_run]))
    assert longer["step"] == 3 and longer["metrics"]["stopped_by_time_budget"] is False
    with Image.open(longer["grid"]) as grid:  # text, then this run | reference | real render, one camera each
        assert grid.width == 3 * 128 + 3 * 128
    assert len(train_losses(run_dir)) == 3
    assert longer["metrics"]["train_seconds"] >= first["metrics"]["train_seconds"]
    pipe = ORScenePipeline.from_pretrained(longer["pipeline_dir"])
    assert pipe.scheduler.config.prediction_type == "sample"
    assert _draw(longer["pipeline_dir"], tiny_render, tmp_path).shape == (2, 32, 32, 3)


def test_resume_after_sigkill_equals_an_uninterrupted_run(tiny_render, first_stages, tmp_path):
    steps = ["stage=ldm", "ldm.steps=8", "ldm.ckpt_every=2", "ldm.sample_every=100", *first_stages]
    straight = train(compose_smoke_cfg(tiny_render, tmp_path, ["name=straight", *steps]))
    reference = train_losses(Path(straight["run_dir"]))
    assert len(reference) == 8

    killed = smoke_command(tiny_render, tmp_path, "name=killed", *steps)
    run_dir = tmp_path / "runs/ldm/killed"
    kill_after_checkpoint(killed, run_dir, 4, cwd=ROOT)
    resumed = subprocess.run(killed, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert train_losses(run_dir) == pytest.approx(reference, rel=1e-5, abs=1e-7)


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(tiny_render, first_stages, tmp_path):
    """SIGINT (Ctrl-C) or SIGTERM: the step in flight finishes, a checkpoint is written (though none was due),
    the command exits 130 saying how to resume, and re-running it continues from that step."""
    cadence = ["stage=ldm", "name=stopped", "ldm.ckpt_every=100000", "ldm.sample_every=100000", *first_stages]
    command = smoke_command(tiny_render, tmp_path, "ldm.steps=100000", *cadence)
    run_dir = tmp_path / "runs/ldm/stopped"
    code, stderr = interrupt_after_steps(command, run_dir, 2, cwd=ROOT)
    assert code == 130, stderr[-3000:]
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    step = latest_step(run_dir)
    assert step >= 2 and len(train_losses(run_dir)) == step and not (run_dir / "pipeline").exists()

    longer = smoke_command(tiny_render, tmp_path, f"ldm.steps={step + 2}", *cadence)
    resumed = subprocess.run(longer, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}" in resumed.stdout + resumed.stderr
    assert len(train_losses(run_dir)) == step + 2 and (run_dir / "pipeline" / "model_index.json").is_file()


def test_two_gloo_processes_match_one_process(tiny_render, first_stages, tmp_path):
    common = ["stage=ldm", "ldm.steps=3", "ldm.batch_size=4", "ldm.ckpt_every=3", "ldm.sample_every=100"]
    common += first_stages
    single = train(compose_smoke_cfg(tiny_render, tmp_path, ["name=one", *common]))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
               "-m", "or_synth.train", *smoke_overrides(tiny_render, tmp_path), "name=two", *common]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((tmp_path / "runs/ldm/two/metrics.json").read_text())
    hashes = metrics["replica_weight_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # both ranks hold identical weights
    # Steps 1-2 agree to float precision; AdamW's first updates are nearly sign(gradient), so reduction-order noise
    # on near-zero gradients moves later losses by up to about 1%.
    assert train_losses(tmp_path / "runs/ldm/two") == pytest.approx(
        train_losses(Path(single["run_dir"])), rel=0.02
    )
