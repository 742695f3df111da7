"""Step-indexed checkpoints: atomic folders, the ``latest`` pointer, pruning, exact restore of weights and RNG, a
clear refusal of a checkpoint that does not fit, and the atomic ``save_pretrained``."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from or_synth.data.errors import UserError
from or_synth.training.checkpoints import (
    CheckpointRefused,
    latest_checkpoint,
    load_checkpoint,
    reached_step,
    resume_from_checkpoint,
    rng_state,
    save_checkpoint,
    save_pretrained_atomic,
)


def _save(run_dir, step: int, model: nn.Module, keep: int = 2):
    return save_checkpoint(
        run_dir, step, {"model": model.state_dict()}, {"rng": rng_state(), "note": step}, keep
    )


def test_latest_names_the_newest_step_and_older_ones_are_pruned(tmp_path):
    model = nn.Linear(3, 2)
    assert latest_checkpoint(tmp_path) is None
    for step in (2, 4, 6):
        folder = _save(tmp_path, step, model)
    assert folder.name == "step_0000006" and latest_checkpoint(tmp_path) == folder
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest",
        "step_0000004",
        "step_0000006",
    ]
    weights, state = load_checkpoint(folder)
    assert set(weights) == {"model"} and state["step"] == 6 and state["note"] == 6
    assert all(torch.equal(weights["model"][k], v) for k, v in model.state_dict().items())


def test_resume_restores_weights_through_the_stage_and_the_rng_here(tmp_path):
    model = nn.Linear(3, 2)
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    _save(tmp_path, 3, model)
    expected = (torch.rand(2).tolist(), random.random(), np.random.rand())

    other = nn.Linear(3, 2)
    seen = {}

    def restore(weights, state):
        other.load_state_dict(weights["model"])
        seen["note"] = state["note"]

    torch.manual_seed(99)
    start, metrics = resume_from_checkpoint(tmp_path, True, restore, "test")
    assert start == 3 and metrics == {} and seen == {"note": 3}
    assert torch.equal(other.weight, model.weight)
    assert (torch.rand(2).tolist(), random.random(), np.random.rand()) == expected
    assert resume_from_checkpoint(tmp_path, False, restore, "test") == (0, {})  # trainer.resume=false


def test_a_checkpoint_of_another_model_is_refused_as_a_user_error(tmp_path):
    _save(tmp_path, 1, nn.Linear(3, 2))
    wider = nn.Linear(3, 4)
    with pytest.raises(
        CheckpointRefused, match="different model or optimizer.*trainer.resume=false"
    ) as refused:
        resume_from_checkpoint(
            tmp_path, True, lambda weights, state: wider.load_state_dict(weights["model"]), "x"
        )
    assert isinstance(refused.value, UserError) and isinstance(refused.value, RuntimeError)


def test_reached_step_needs_the_artefact_and_the_step(tmp_path):
    assert not reached_step(tmp_path, "encoder/model.safetensors", 4)
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder/model.safetensors").write_bytes(b"")
    (tmp_path / "metrics.json").write_text(json.dumps({"step": 3}))
    assert not reached_step(tmp_path, "encoder/model.safetensors", 4)
    assert reached_step(tmp_path, "encoder/model.safetensors", 3)


class _Saved:
    def __init__(self, text: str) -> None:
        self.text = text

    def save_pretrained(self, folder) -> None:
        folder.mkdir(parents=True)
        (folder / "weights.txt").write_text(self.text)


def test_save_pretrained_atomic_replaces_the_folder_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "encoder"
    save_pretrained_atomic(_Saved("one"), target)
    (target / "stale.txt").write_text("from an earlier save")
    save_pretrained_atomic(_Saved("two"), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]
    assert sorted(p.name for p in target.iterdir()) == ["weights.txt"]
    assert (target / "weights.txt").read_text() == "two"
