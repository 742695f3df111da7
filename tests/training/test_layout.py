"""Stage ``layout`` through the real entry point on a tiny render: it trains (the loss falls), writes its predictor,
resumes exactly, is not part of ``stage=all``, and refuses a dataset without the renderer's annotations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from benchmarks import layout_iou
from or_synth.generator import pipeline_hash
from or_synth.generator.layout_predictor import LayoutPredictor
from or_synth.train import train
from or_synth.training import RECIPE, STAGES
from or_synth.training import layout as layout_stage
from tests.helpers import compose_smoke_cfg, small_scene, train_losses, write_layout_dataset

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def compose_cfg(root: Path, work: Path, extra: list[str] = ()):
    """Stage layout of the smoke config on a fresh graph encoder (no align run needed)."""
    return compose_smoke_cfg(root, work, ["stage=layout", "layout.encoder_dir=null", *extra])


def test_trains_writes_its_predictor_and_resumes_exactly(tiny_render, tmp_path):
    assert "layout" in STAGES and "layout" not in RECIPE  # the default recipe does not grow
    result = train(compose_cfg(tiny_render, tmp_path))
    run_dir = tmp_path / "runs/layout/smoke"
    assert result["step"] == 4 and result["predictor_dir"] == str(run_dir / "predictor")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 4 and set(metrics["end"]) == {
        "box_iou",
        "baseline_box_iou",
        "visibility_accuracy",
        "boxes",
    }
    assert 0 < metrics["end"]["baseline_box_iou"] < 1 and metrics["end"]["boxes"] > 0
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
    assert checkpoints == ["step_0000002", "step_0000004"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    predictor = LayoutPredictor.from_pretrained(result["predictor_dir"])  # no training code needed
    assert predictor.config.mask_size == 8 and predictor.vocabulary()["predicates"][3] == "CloseTo"
    assert layout_stage.is_complete(compose_cfg(tiny_render, tmp_path))

    assert sorted(json.loads((run_dir / "metrics.json").read_text())["start"]) == sorted(metrics["end"])

    # A longer run resumes from step 4 and lands where an uninterrupted 6-step run does.
    assert train(compose_cfg(tiny_render, tmp_path, ["layout.steps=6"]))["step"] == 6
    straight = tmp_path / "straight"
    train(compose_cfg(tiny_render, tmp_path, ["layout.steps=6", f"layout.run_dir={straight}"]))
    assert train_losses(run_dir) == train_losses(straight) and len(train_losses(run_dir)) == 6
    resumed = LayoutPredictor.from_pretrained(run_dir / "predictor").state_dict()
    uninterrupted = LayoutPredictor.from_pretrained(straight / "predictor").state_dict()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)

    # The benchmark scores it on the held-out test takes, per class, beside the mean-box baseline.
    args = argparse.Namespace(predictor=run_dir / "predictor", dataset_root=tiny_render, split="test",
                              processed_root=tmp_path / "processed", cameras=[1, 2], batch_size=16, threads=1,
                              argv=["--predictor", "..."])  # fmt: skip
    scores = layout_iou.run(args)
    assert scores["predictor_step"] == 6 and scores["predictor_hash"] == pipeline_hash(run_dir / "predictor")
    assert scores["heldout"].startswith("split test (takes [2, 6]): 32 views")
    assert sum(row["boxes"] for row in scores["per_class"].values()) == scores["mean_iou_over_boxes"]["boxes"]
    assert all(0 <= row["baseline_iou"] <= 1 for row in scores["per_class"].values())


def test_the_loss_falls(tiny_render, tmp_path):
    extra = ["layout.steps=60", "layout.batch_size=8", "layout.lr=3e-3", "layout.eval_every=60"]
    train(compose_cfg(tiny_render, tmp_path, [*extra, "layout.ckpt_every=60"]))
    values = train_losses(tmp_path / "runs/layout/smoke")
    assert len(values) == 60 and sum(values[-10:]) < 0.9 * sum(values[:10])


@pytest.mark.slow
def test_beats_the_mean_box_baseline_on_its_training_views(tiny_render, tmp_path):
    """A few hundred steps fit the training views better than the per-class, per-camera mean box."""
    from or_synth.data.layout_targets import MeanBoxBaseline, load_layout_targets
    from or_synth.training.batches import build_dataset

    extra = ["layout.steps=300", "layout.batch_size=16", "layout.lr=3e-3", "layout.loss.box=10"]
    cfg = compose_cfg(tiny_render, tmp_path, [*extra, "layout.eval_every=300", "layout.ckpt_every=300"])
    predictor = LayoutPredictor.from_pretrained(train(cfg)["predictor_dir"])
    targets = load_layout_targets(build_dataset(cfg.dataset, "train", load_images=False), 8, progress=False)
    classes = layout_stage.node_classes(predictor, targets)
    scores = layout_stage.evaluate_layout(
        predictor, targets, classes, MeanBoxBaseline(targets, classes), 64, torch.device("cpu")
    )
    assert scores["box_iou"] > scores["baseline_box_iou"] + 0.01


def test_refuses_a_dataset_without_the_renderers_annotations(tmp_path):
    """Real 4D-OR (here: a dataset in its layout without or_synth_annotations/) cannot train the stage."""
    root = write_layout_dataset(
        tmp_path / "real",
        {"train": [small_scene(1, "000000")], "validation": [small_scene(4, "000000")]},
    )
    cfg = compose_cfg(root, tmp_path, ["dataset=4dor", f"dataset.root={root}"])
    missing = r"or_synth_annotations/000000\.json is missing.*rendered dataset"
    with pytest.raises(FileNotFoundError, match=missing):
        train(cfg)


def test_a_missing_align_encoder_is_named(tiny_render, tmp_path):
    cfg = compose_cfg(tiny_render, tmp_path, [f"layout.encoder_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match=r"layout.encoder_dir=.*nowhere: run stage=align first"):
        train(cfg)
