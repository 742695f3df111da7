"""Checkpoints every stage shares: step-indexed folders written atomically (weights as safetensors, the rest in one
``state.pt``), exact resume (weights, optimizers, RNG states; the data position follows from the step), and the
atomic ``save_pretrained`` of a stage's result.

Layout of a run folder::

    <run_dir>/checkpoints/step_0000500/{model,ema,...}.safetensors + state.pt
    <run_dir>/checkpoints/latest          # the name of the newest complete step folder
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from or_synth.data.errors import UserError
from or_synth.data.io import atomic_path

log = logging.getLogger(__name__)

LATEST = "latest"


class CheckpointRefused(UserError, RuntimeError):
    """A run folder's checkpoint that this run cannot resume from (another model or optimizer setup, an older
    format); the message says how to start over or choose another run."""


def rng_state() -> dict:
    """The global RNG states (Python, NumPy, torch, CUDA when present), for :func:`set_rng_state`."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path, step: int, weights: Mapping[str, Mapping], state: Mapping, keep: int = 2
) -> Path:
    """Write ``checkpoints/step_NNNNNNN/`` atomically: weights as safetensors, the rest (optimizer, LR schedule,
    RNG, counters) as one ``state.pt``; then point ``checkpoints/latest`` at it and prune older ones.

    The folder is filled under a temporary name and renamed, and ``latest`` is replaced atomically, so a crash at
    any moment leaves the previous checkpoint intact and referenced.

    Args:
        weights: name -> state dict of tensors (``model``, ``ema``, ...), each one safetensors file.
        state: everything else ``torch.save`` can store.
        keep: how many step folders to keep (the newest).

    Returns:
        The step folder.
    """
    from safetensors.torch import save_file

    folder = Path(run_dir) / "checkpoints"
    final = folder / f"step_{step:07d}"
    tmp = folder / f".step_{step:07d}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, tensors in weights.items():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors")
        )
    torch.save({"step": step, **state}, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    with atomic_path(folder / LATEST) as pointer:
        pointer.write_text(final.name + "\n")
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for old in steps[: max(len(steps) - keep, 0)]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The step folder ``checkpoints/latest`` names, or None when the run has no complete checkpoint."""
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    return folder if (folder / "state.pt").is_file() else None


def load_checkpoint(folder: Path) -> tuple[dict[str, dict], dict]:
    """(weights by name, state) of a checkpoint written by :func:`save_checkpoint`."""
    from safetensors.torch import load_file

    weights = {p.stem: load_file(str(p)) for p in Path(folder).glob("*.safetensors")}
    state = torch.load(Path(folder) / "state.pt", map_location="cpu", weights_only=False)
    return weights, state


def mismatch_error(path: Path, exc: Exception) -> CheckpointRefused:
    detail = " ".join(str(exc).split())[:300]  # the first mismatch is enough to tell what differs
    return CheckpointRefused(
        f"{path} was written by a different model or optimizer setup; choose another run "
        f"(name=... or the stage's run_dir=...) or start over with trainer.resume=false. Details: {detail}"
    )


def resume_from_checkpoint(
    run_dir: Path, enabled: bool, restore: Callable[[dict, dict], None], stage: str
) -> tuple[int, dict]:
    """Restore the latest checkpoint of ``run_dir`` (when ``enabled`` and one exists) through ``restore``.

    ``restore(weights, state)`` loads the stage's own models and optimizers; the RNG states are restored here.
    Anything that does not fit (another model size, another optimizer setup) is a :class:`CheckpointRefused`.

    Returns:
        (the step to start from, the metrics saved with the checkpoint); (0, {}) when starting fresh.
    """
    checkpoint = latest_checkpoint(run_dir) if enabled else None
    if checkpoint is None:
        return 0, {}
    weights, state = load_checkpoint(checkpoint)
    try:
        restore(weights, state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise mismatch_error(checkpoint, exc) from exc
    set_rng_state(state["rng"])
    log.info("%s: resumed from %s at step %d", stage, checkpoint, int(state["step"]))
    return int(state["step"]), dict(state.get("metrics", {}))


def reached_step(run_dir: Path, artefact: str, steps: int) -> bool:
    """A stage is complete when its artefact exists and its ``metrics.json`` says it reached ``steps``."""
    metrics = Path(run_dir) / "metrics.json"
    if not (Path(run_dir) / artefact).is_file() or not metrics.is_file():
        return False
    return int(json.loads(metrics.read_text()).get("step", 0)) >= int(steps)


def save_pretrained_atomic(model, directory: Path) -> Path:
    """``model.save_pretrained`` into a temporary folder that then replaces ``directory`` (a crash never leaves a
    half-written component where a later stage or a user would load it)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    old = directory.with_name(f".{directory.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory
