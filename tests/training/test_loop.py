"""The loop tail every stage shares (:class:`TrainingLoop`): which step logs, samples and checkpoints, the last step
(configured or early), the stop on request; and the stop request and non-finite guard themselves."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from or_synth.data.errors import StoppedOnRequest
from or_synth.training.checkpoints import latest_checkpoint, load_checkpoint
from or_synth.training.loop import (
    NonFiniteGuard,
    StopRequest,
    TrainingInterrupted,
    TrainingLoop,
    check_divisible,
)


class ToyStage:
    """A stage whose every step is recorded: log every 2, sample every 3, checkpoint every 4 of 6 steps."""

    def __init__(self, run_dir, start: int = 0, steps: int = 6) -> None:
        self.model = nn.Linear(2, 1)
        self.sampled: list[int] = []
        self.exported: list[int] = []
        self.metrics: dict = {}
        self.loop = TrainingLoop(
            "toy",
            run_dir,
            start,
            steps,
            log_every=2,
            ckpt_every=4,
            checkpoint=lambda: ({"model": self.model.state_dict()}, {"optimizer": {"lr": 0.1}}),
            metrics=self.metrics,
            sample_every=3,
            sample=self.sample,
            export=lambda: self.exported.append(self.metrics["step"]),
            keep=10,
        )

    def sample(self, done: int) -> dict:
        self.sampled.append(done)
        return {"val/score": float(done), "val/grid": np.zeros((4, 6, 3), np.uint8)}

    def run(self, stop_before: int | None = None, ends_early_at: int | None = None) -> None:
        with self.loop as loop:
            for step in loop:
                if step == stop_before:
                    signal.raise_signal(signal.SIGINT)  # Ctrl-C during this step
                done = step + 1
                loop.end_step(done, {"train/loss": 1.0 / done}, last=done == ends_early_at)
                if done == ends_early_at:
                    break


def _checkpoints(run_dir) -> list[int]:
    return sorted(int(p.name.removeprefix("step_")) for p in (run_dir / "checkpoints").glob("step_*"))


def _scalars(run_dir, tag: str) -> list[int]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def test_each_cadence_and_the_last_step(tmp_path):
    stage = ToyStage(tmp_path)
    stage.run()
    assert stage.sampled == [3, 6] and _checkpoints(tmp_path) == [4, 6] and stage.exported == [4, 6]
    assert _scalars(tmp_path, "train/loss") == [2, 4, 6] and _scalars(tmp_path, "val/score") == [3, 6]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Images("val/grid")] == [3, 6]
    lines = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6] and lines[1]["loss"] == 0.5
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"step": 6, "loss": pytest.approx(1 / 6)}
    weights, state = load_checkpoint(latest_checkpoint(tmp_path))
    assert set(weights) == {"model"} and set(state) == {"step", "weight_files", "optimizer", "rng", "metrics"}
    assert state["metrics"] == {"step": 6, "loss": pytest.approx(1 / 6)}


def test_an_early_last_step_samples_and_checkpoints_as_the_configured_last_does(tmp_path):
    stage = ToyStage(tmp_path)
    stage.run(ends_early_at=5)
    assert stage.sampled == [3, 5] and _checkpoints(tmp_path) == [4, 5]


def test_a_stop_request_checkpoints_the_step_skips_its_sample_and_raises(tmp_path):
    stage = ToyStage(tmp_path)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(
        TrainingInterrupted, match=r"toy stopped on request at step 3 .*checkpoints; run the same"
    ):
        stage.run(stop_before=2)
    assert issubclass(TrainingInterrupted, StoppedOnRequest)  # exit 130 through or_synth.cli
    assert _checkpoints(tmp_path) == [3] and stage.sampled == [] and stage.exported == [3]
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 3
    assert signal.getsignal(signal.SIGINT) is handler

    # The resumed loop starts at the checkpoint's step; its log is cut there.
    resumed = ToyStage(tmp_path, start=3)
    resumed.run()
    lines = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert lines == [1, 2, 3, 4, 5, 6] and resumed.sampled == [6] and _checkpoints(tmp_path) == [3, 4, 6]


def test_a_stop_requested_in_the_last_step_just_finishes(tmp_path):
    stage = ToyStage(tmp_path)
    stage.run(stop_before=5)
    assert _checkpoints(tmp_path) == [4, 6] and stage.sampled == [3, 6]


def test_stop_request_turns_the_first_signal_into_a_request_and_a_second_ctrl_c_into_an_interrupt():
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_non_finite_guard_skips_bad_steps_and_stops_after_a_run_of_them():
    guard = NonFiniteGuard(limit=2)
    assert guard.check(True, 0) and not guard.check(False, 1) and guard.check(True, 2)
    assert not guard.check(bool(torch.isfinite(torch.tensor(float("nan")))), 3)
    with pytest.raises(FloatingPointError, match=r"2 non-finite losses in a row \(steps \[3, 4\]\)"):
        guard.check(False, 4)
    assert guard.skipped == [1, 3, 4]


def test_the_global_batch_must_split_over_the_processes():
    check_divisible(8, 2, "ldm.batch_size")
    with pytest.raises(ValueError, match="ldm.batch_size=6 must divide evenly over 4 processes"):
        check_divisible(6, 4, "ldm.batch_size")
