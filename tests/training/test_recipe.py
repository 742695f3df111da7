"""The generator recipe through the real entry point on a tiny rendered dataset: debug=smoke end to end, stage
skipping, the closed-form patch codec as first stage, exact resume after SIGKILL, and two CPU processes (gloo)
against one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from or_synth.generator import ORScenePipeline, PatchPCACodec
from or_synth.train import CONFIG_DIR, train
from or_synth.training import ldm as ldm_stage
from or_synth.training import vae as vae_stage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """6 takes x 8 scans at 32 px, rendered on first use by the training command itself."""
    return tmp_path_factory.mktemp("rendered") / "synthetic_or"


def overrides(root: Path, work: Path) -> list[str]:
    return [
        "debug=smoke",
        f"dataset.root={root}",
        'dataset.render=["takes=6","scans_per_take=8","image_size=[32,32]","progress=false"]',
        f"dataset.processed_root={work / 'processed'}",
        f"runs_root={work / 'runs'}",
        f"encoder.cache_dir={work / 'label_cache'}",
    ]


def compose_cfg(root: Path, work: Path, extra: list[str] = ()):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[*overrides(root, work), *extra])


def val_graphs(root: Path, work: Path, count: int = 2) -> list:
    """The first validation scene graphs of the rendered dataset (PyG ``Data``)."""
    from torch_geometric.data import InMemoryDataset

    from or_synth.data import FourDORDataset

    dataset = FourDORDataset(root, "val", processed_root=work / "p2")
    return [InMemoryDataset.get(dataset, i) for i in range(count)]


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_smoke_recipe_renders_trains_every_stage_and_skips_complete_ones(rendered, tmp_path):
    result = train(compose_cfg(rendered, tmp_path))
    assert set(result) == {"vae", "align", "ldm"} and (rendered / "relationships_train.json").is_file()
    runs = tmp_path / "runs"
    vae_config = json.loads((runs / "vae/smoke/autoencoder/config.json").read_text())
    assert vae_config["scaling_factor"] == pytest.approx(result["vae"]["metrics"]["scaling_factor"])
    assert (runs / "align/smoke/encoder/model.safetensors").is_file()
    ldm = result["ldm"]
    assert ldm["metrics"]["layout"] is True and Path(ldm["grid"]).is_file()
    assert list((runs / "ldm/smoke/tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (runs / "ldm/smoke/checkpoints").glob("step_*")) == [
        "step_0000002",
        "step_0000004",
    ]

    pipe = ORScenePipeline.from_pretrained(ldm["pipeline_dir"])  # no training code needed
    images = pipe(val_graphs(rendered, tmp_path), [1, 4], num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 32, 32, 3)

    again = train(compose_cfg(rendered, tmp_path))
    assert all(again[stage].get("skipped") for stage in ("vae", "align", "ldm"))


def test_patch_codec_is_fitted_by_stage_vae_and_carries_ldm(rendered, tmp_path):
    """autoencoder=pca_patch: stage vae fits the codec (no loop, no checkpoints; complete at once), ldm trains
    on its latents and writes a pipeline whose vae reloads as the codec (8x8x12 latents at 32 px)."""
    codec = ["autoencoder=pca_patch", "ldm.encoder_dir=null"]  # a fresh graph encoder: no align run needed
    fitted = train(compose_cfg(rendered, tmp_path, ["stage=vae", *codec]))
    metrics = fitted["metrics"]
    assert metrics["step"] == 0 and 0.9 < metrics["explained_variance"] <= 1.0 and metrics["fit_seconds"] < 10
    assert metrics["val_psnr"] > 24.0 and 0.5 < metrics["scaling_factor"] < 2.0  # whitened: std about 1
    assert not (tmp_path / "runs/vae/smoke/checkpoints").exists()
    assert vae_stage.is_complete(compose_cfg(rendered, tmp_path, codec))

    ldm = train(compose_cfg(rendered, tmp_path, ["stage=ldm", *codec]))
    pipe = ORScenePipeline.from_pretrained(ldm["pipeline_dir"])
    assert isinstance(pipe.vae, PatchPCACodec) and pipe.latent_shape == (12, 8, 8)
    assert pipe.vae.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
    images = pipe(val_graphs(rendered, tmp_path), [1, 4], num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 32, 32, 3)


def test_time_budget_stops_with_a_checkpoint_and_a_pipeline_and_a_longer_run_resumes(rendered, tmp_path):
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
    train(compose_cfg(rendered, tmp_path, ["stage=vae", *extra]))
    budgeted = [*extra, "ldm.time_budget_s=1e-9"]
    first = train(compose_cfg(rendered, tmp_path, ["stage=ldm", *budgeted]))
    run_dir = tmp_path / "runs/ldm/smoke"
    assert first["step"] == 1 and first["metrics"]["stopped_by_time_budget"] is True
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) == ["step_0000001"]
    assert ldm_stage.is_complete(compose_cfg(rendered, tmp_path, budgeted))
    assert not ldm_stage.is_complete(compose_cfg(rendered, tmp_path, extra))

    # The final grid's extra column: a reference pipeline's images of the same graphs.
    reference = shutil.copytree(first["pipeline_dir"], tmp_path / "reference")
    longer = train(
        compose_cfg(
            rendered,
            tmp_path,
            ["stage=ldm", *extra, "ldm.time_budget_s=100000", f"ldm.sample.reference_pipeline={reference}"],
        )
    )
    assert longer["step"] == 3 and longer["metrics"]["stopped_by_time_budget"] is False
    with Image.open(longer["grid"]) as grid:  # text, then this run | reference | real render, one camera each
        assert grid.width == 3 * 128 + 3 * 128
    assert (
        len(losses(run_dir)) == 3 and longer["metrics"]["train_seconds"] >= first["metrics"]["train_seconds"]
    )
    pipe = ORScenePipeline.from_pretrained(longer["pipeline_dir"])
    assert pipe.scheduler.config.prediction_type == "sample"
    images = pipe(val_graphs(rendered, tmp_path), [1, 4], num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 32, 32, 3)


def _command(root: Path, work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "or_synth.train", "stage=ldm", *overrides(root, work), *extra]


def _prepare_first_stages(root: Path, work: Path) -> None:
    train(compose_cfg(root, work, ["stage=vae"]))
    train(compose_cfg(root, work, ["stage=align"]))


def test_resume_after_sigkill_equals_an_uninterrupted_run(rendered, tmp_path):
    _prepare_first_stages(rendered, tmp_path)
    steps = ["ldm.steps=8", "ldm.ckpt_every=2", "ldm.sample_every=100"]
    straight = train(
        compose_cfg(
            rendered,
            tmp_path,
            [
                "stage=ldm",
                "name=straight",
                *steps,
                f"ldm.autoencoder_dir={tmp_path}/runs/vae/smoke/autoencoder",
                f"ldm.encoder_dir={tmp_path}/runs/align/smoke/encoder",
            ],
        )
    )
    reference = losses(Path(straight["run_dir"]))
    assert len(reference) == 8

    killed = _command(rendered, tmp_path, "name=killed", *steps,
                      f"ldm.autoencoder_dir={tmp_path}/runs/vae/smoke/autoencoder",
                      f"ldm.encoder_dir={tmp_path}/runs/align/smoke/encoder")  # fmt: skip
    run_dir = tmp_path / "runs/ldm/killed"
    process = subprocess.Popen(killed, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    pointer = run_dir / "checkpoints" / "latest"
    while time.time() < deadline and process.poll() is None:
        if pointer.is_file() and pointer.read_text().strip() >= "step_0000004":
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = subprocess.run(killed, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert losses(run_dir) == pytest.approx(reference, rel=1e-5, abs=1e-7)


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(rendered, tmp_path):
    """SIGINT (Ctrl-C) or SIGTERM: the step in flight finishes, a checkpoint is written (though none was due),
    the command exits 130 saying how to resume, and re-running it continues from that step."""
    _prepare_first_stages(rendered, tmp_path)
    first_stages = [
        f"ldm.autoencoder_dir={tmp_path}/runs/vae/smoke/autoencoder",
        f"ldm.encoder_dir={tmp_path}/runs/align/smoke/encoder",
    ]
    cadence = ["ldm.ckpt_every=100000", "ldm.sample_every=100000"]
    command = _command(rendered, tmp_path, "name=stopped", "ldm.steps=100000", *cadence, *first_stages)
    run_dir = tmp_path / "runs/ldm/stopped"
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log, deadline = run_dir / "train_log.jsonl", time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "run the same command again to resume" in stderr
    step = int((run_dir / "checkpoints" / "latest").read_text().strip().removeprefix("step_"))
    assert step >= 2 and len(losses(run_dir)) == step and not (run_dir / "pipeline").exists()

    longer = _command(rendered, tmp_path, "name=stopped", f"ldm.steps={step + 2}", *cadence, *first_stages)
    resumed = subprocess.run(longer, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}" in resumed.stdout + resumed.stderr
    assert len(losses(run_dir)) == step + 2 and (run_dir / "pipeline" / "model_index.json").is_file()


def test_two_gloo_processes_match_one_process(rendered, tmp_path):
    _prepare_first_stages(rendered, tmp_path)
    common = ["ldm.steps=3", "ldm.batch_size=4", "ldm.ckpt_every=3", "ldm.sample_every=100"]
    common += [
        f"ldm.autoencoder_dir={tmp_path}/runs/vae/smoke/autoencoder",
        f"ldm.encoder_dir={tmp_path}/runs/align/smoke/encoder",
    ]
    single = train(compose_cfg(rendered, tmp_path, ["stage=ldm", "name=one", *common]))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
               "-m", "or_synth.train", "stage=ldm", *overrides(rendered, tmp_path), "name=two", *common]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((tmp_path / "runs/ldm/two/metrics.json").read_text())
    hashes = metrics["replica_weight_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # both ranks hold identical weights
    # Steps 1-2 agree to float precision; AdamW's first updates are nearly sign(gradient), so reduction-order noise
    # on near-zero gradients moves later losses by up to about 1%.
    assert losses(tmp_path / "runs/ldm/two") == pytest.approx(losses(Path(single["run_dir"])), rel=0.02)


@pytest.mark.slow
def test_two_processes_render_and_align_once(tmp_path):
    """Under a 2-process launch only the main process renders the embedded dataset and trains align; the other
    waits at a barrier (no two processes write one folder) and both finish."""
    root = tmp_path / "synthetic_or"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534",
               "-m", "or_synth.train", "stage=align", *overrides(root, tmp_path)]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert output.count("rendering the embedded synthetic OR dataset") == 1
    assert output.count("stage align finished") == 2  # both ranks pass the barrier
    assert (tmp_path / "runs/align/smoke/encoder/model.safetensors").is_file()
