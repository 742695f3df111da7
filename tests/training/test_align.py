"""Stage ``align`` on the shared machinery: step-indexed checkpoints, exact resume (in process and after SIGKILL),
Ctrl-C, the refusal of an older align's checkpoint, and the entry point's errors."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from or_synth.data.errors import StoppedOnRequest, UserError
from or_synth.encoders import SceneGraphEncoder
from or_synth.train import train
from or_synth.training import align as align_stage
from or_synth.training.checkpoints import CheckpointRefused
from or_synth.training.record import ConfigChanged
from tests.helpers import (
    compose_train_cfg,
    kill_after_checkpoint,
    latest_step,
    one_thread_env,
    small_scene,
    smoke_command,
    train_losses,
    write_layout_dataset,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def layout_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layout")
    scans = {
        "train": [small_scene(take, f"{i:06d}") for take in (1, 3) for i in range(4)],
        "validation": [small_scene(4, f"{i:06d}") for i in range(3)],
    }
    return write_layout_dataset(root, scans)


def _checkpoints(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))


def _encoder_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "encoder" / "model.safetensors"))


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_smoke_run_checkpoints_by_step_and_a_resumed_run_equals_an_uninterrupted_one(
    layout_dataset, tmp_path
):
    result = train(compose_train_cfg(layout_dataset, tmp_path))
    run_dir = tmp_path / "run"
    assert result["step"] == 4 and _checkpoints(run_dir) == ["step_0000002", "step_0000004"]
    assert latest_step(run_dir) == 4 and (run_dir / "checkpoints/step_0000004/model.safetensors").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    encoder = SceneGraphEncoder.from_pretrained(run_dir / "encoder")
    assert encoder.config.dim == 32 and encoder.config.text_model_id.startswith("open_clip:arch-")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 4 and set(metrics) >= {"start", "end", "loss"}
    assert set(metrics["end"]) >= {"retrieval/R@1", "masked_predicate/accuracy"}

    # Re-running with more steps continues from step 4 and lands where an uninterrupted run does.
    assert train(compose_train_cfg(layout_dataset, tmp_path, ["align.steps=6"]))["step"] == 6
    straight = tmp_path / "straight"
    train(compose_train_cfg(layout_dataset, tmp_path, ["align.steps=6", f"align.run_dir={straight}"]))
    assert train_losses(run_dir) == train_losses(straight) and len(train_losses(run_dir)) == 6
    assert _same_weights(_encoder_weights(run_dir), _encoder_weights(straight))

    # resume=false starts from scratch: the same first two steps as the first run.
    fresh = train(compose_train_cfg(layout_dataset, tmp_path, ["trainer.resume=false", "align.steps=2"]))
    assert fresh["step"] == 2 and train_losses(run_dir) == train_losses(straight)[:2]


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(layout_dataset, tmp_path, monkeypatch):
    """SIGINT in the middle of step 2 (of 6): the step finishes, a checkpoint is written though none is due, the
    stage raises a stop on request (exit 130 through the CLI), and re-running resumes at step 2."""
    picks = align_stage.pick_views
    calls = []

    def pick_and_interrupt(batch, generator):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return picks(batch, generator)

    monkeypatch.setattr(align_stage, "pick_views", pick_and_interrupt)
    handler = signal.getsignal(signal.SIGINT)
    cadence = ["align.steps=6", "align.ckpt_every=100", "align.eval_every=100"]
    with pytest.raises(
        StoppedOnRequest, match="align stopped on request at step 2.*run the same command again"
    ):
        train(compose_train_cfg(layout_dataset, tmp_path, cadence))
    run_dir = tmp_path / "run"
    assert _checkpoints(run_dir) == ["step_0000002"] and len(train_losses(run_dir)) == 2
    assert json.loads((run_dir / "metrics.json").read_text())["step"] == 2
    assert signal.getsignal(signal.SIGINT) is handler  # the stage's handlers are gone again

    monkeypatch.setattr(align_stage, "pick_views", picks)
    assert train(compose_train_cfg(layout_dataset, tmp_path, cadence))["step"] == 6
    straight = tmp_path / "straight"
    train(compose_train_cfg(layout_dataset, tmp_path, [*cadence, f"align.run_dir={straight}"]))
    assert train_losses(run_dir) == train_losses(straight)


@pytest.mark.slow  # 20 s of subprocess training: the in-process resume tests above cover align's exact resume
def test_python_m_resumes_after_sigkill_like_an_uninterrupted_run(layout_dataset, tmp_path):
    cadence = ["align.steps=40", "align.ckpt_every=2", "align.eval_every=40"]
    straight = train(
        compose_train_cfg(layout_dataset, tmp_path, [*cadence, f"align.run_dir={tmp_path / 'one'}"])
    )
    run_dir = tmp_path / "run"
    command = smoke_command(
        layout_dataset, tmp_path, "stage=align", "dataset=4dor", f"align.run_dir={run_dir}", *cadence
    )
    kill_after_checkpoint(command, run_dir, 2, cwd=ROOT, env=one_thread_env())
    resumed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=one_thread_env()
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert "align: resumed from" in output and "align: 100%" in resumed.stderr  # the tqdm bar
    assert (run_dir / "encoder" / "config.json").is_file()
    assert train_losses(run_dir) == train_losses(straight["run_dir"])  # one thread each: the same sums
    assert _same_weights(_encoder_weights(run_dir), _encoder_weights(Path(straight["run_dir"])))


def test_a_run_folder_of_the_older_align_is_refused_with_a_way_out(layout_dataset, tmp_path):
    """Before step-indexed checkpoints align kept one ``checkpoints/last.pt``, which cannot resume exactly."""
    legacy = tmp_path / "run" / "checkpoints" / "last.pt"
    legacy.parent.mkdir(parents=True)
    torch.save({"step": 2}, legacy)
    with pytest.raises(
        CheckpointRefused, match=r"last\.pt was written by an older version.*trainer\.resume=false"
    ):
        train(compose_train_cfg(layout_dataset, tmp_path))
    assert issubclass(CheckpointRefused, UserError)  # one line and exit 2 through the CLI
    assert (
        train(compose_train_cfg(layout_dataset, tmp_path, ["trainer.resume=false", "align.steps=2"]))["step"]
        == 2
    )
    assert train(compose_train_cfg(layout_dataset, tmp_path, ["align.steps=3"]))["step"] == 3  # resumes now


def test_smoke_run_with_data2vec_and_bf16(layout_dataset, tmp_path):
    cfg = compose_train_cfg(
        layout_dataset, tmp_path, ["encoder=data2vec", "trainer.precision=bf16", "align.steps=2"]
    )
    result = train(cfg)
    encoder = SceneGraphEncoder.from_pretrained(result["encoder_dir"])
    assert encoder.config.text_model_id.startswith("data2vec:arch-")


def test_unknown_stage_and_precision(layout_dataset, tmp_path):
    cfg = compose_train_cfg(layout_dataset, tmp_path)
    cfg.stage.name = "generator"
    with pytest.raises(ValueError, match="unknown stage .generator.; available: all, vae, align, ldm"):
        train(cfg)
    cfg = compose_train_cfg(layout_dataset, tmp_path, ["trainer.precision=fp16"])
    with pytest.raises(ValueError, match="fp32 or bf16"):
        train(cfg)


def test_cuda_without_gpu_is_a_clear_error(layout_dataset, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    cfg = compose_train_cfg(layout_dataset, tmp_path, ["trainer.device=cuda"])
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train(cfg)


@pytest.mark.slow
def test_compile_path(layout_dataset, tmp_path):
    cfg = compose_train_cfg(layout_dataset, tmp_path, ["trainer.compile=true", "align.steps=2"])
    assert train(cfg)["step"] == 2


def test_resume_refuses_a_checkpoint_of_another_model(layout_dataset, tmp_path):
    """Another model size is a changed configuration (its record says so); with that check waived, the
    checkpoint that does not fit is still refused."""
    train(compose_train_cfg(layout_dataset, tmp_path, ["align.steps=2"]))
    wider = ["align.steps=3", "encoder.graph.dim=48"]
    with pytest.raises(ConfigChanged, match=r"encoder.graph.dim: 32 -> 48.*trainer.resume=false"):
        train(compose_train_cfg(layout_dataset, tmp_path, wider))
    waived = compose_train_cfg(layout_dataset, tmp_path, [*wider, "trainer.allow_config_change=true"])
    with pytest.raises(CheckpointRefused, match="different model.*trainer.resume=false"):
        train(waived)
