"""The training entry point: debug=smoke runs of the align stage, through train(cfg) and `python -m`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from or_synth.encoders import SceneGraphEncoder
from or_synth.train import train
from tests.helpers import compose_train_cfg, small_scene, write_layout_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def layout_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layout")
    scans = {
        "train": [small_scene(take, f"{i:06d}") for take in (1, 3) for i in range(4)],
        "validation": [small_scene(4, f"{i:06d}") for i in range(3)],
    }
    return write_layout_dataset(root, scans)


def _event_files(run_dir: Path) -> list[Path]:
    return list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_smoke_run_writes_checkpoint_and_logs_and_resumes(layout_dataset, tmp_path):
    cfg = compose_train_cfg(layout_dataset, tmp_path)
    result = train(cfg)
    run_dir = tmp_path / "run"
    assert result["step"] == 4
    assert (run_dir / "checkpoints" / "last.pt").is_file() and _event_files(run_dir)
    encoder = SceneGraphEncoder.from_pretrained(run_dir / "encoder")
    assert encoder.config.dim == 32 and encoder.config.text_model_id.startswith("open_clip:arch-")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"start", "end", "step"}

    # Re-running continues from the last checkpoint instead of starting over.
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4
    longer = compose_train_cfg(layout_dataset, tmp_path, ["align.steps=6"])
    assert train(longer)["step"] == 6
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 6
    # resume=false starts from scratch.
    fresh = compose_train_cfg(layout_dataset, tmp_path, ["trainer.resume=false", "align.steps=2"])
    assert train(fresh)["step"] == 2


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


def test_python_m_entry_point_smoke_and_resume(layout_dataset, tmp_path):
    command = [
        sys.executable, "-m", "or_synth.train", "stage=align", "debug=smoke", "dataset=4dor",
        f"dataset.root={layout_dataset}", f"dataset.processed_root={tmp_path / 'processed'}",
        f"align.run_dir={tmp_path / 'run'}", f"encoder.cache_dir={tmp_path / 'label_cache'}",
        f"runs_root={tmp_path / 'runs'}",
    ]  # fmt: skip
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "run" / "encoder" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "encoder" / "config.json").is_file() and _event_files(tmp_path / "run")
    assert "align: 100%" in first.stderr  # the tqdm progress bar
    second = subprocess.run(
        [*command, "align.steps=5"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout + second.stderr


@pytest.mark.slow
def test_compile_path(layout_dataset, tmp_path):
    cfg = compose_train_cfg(layout_dataset, tmp_path, ["trainer.compile=true", "align.steps=2"])
    assert train(cfg)["step"] == 2


def test_resume_refuses_a_checkpoint_of_another_model(layout_dataset, tmp_path):
    train(compose_train_cfg(layout_dataset, tmp_path, ["align.steps=2"]))
    wider = compose_train_cfg(layout_dataset, tmp_path, ["align.steps=3", "encoder.graph.dim=48"])
    with pytest.raises(RuntimeError, match="different model.*trainer.resume=false"):
        train(wider)
