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
from typing import TypeVar

import numpy as np
import torch

from or_synth.data.errors import UserError
from or_synth.data.io import atomic_path

log = logging.getLogger(__name__)

LATEST = "latest"
T = TypeVar("T")
# The key of state.pt listing the checkpoint's safetensors files (a deleted one is then noticed at resume).
WEIGHT_FILES = "weight_files"


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
    any moment leaves the previous checkpoint intact and referenced. ``state.pt`` lists the weight files, so a
    deleted one is found at resume (:func:`read_checkpoint`).

    Args:
        weights: name -> state dict of tensors (``model``, ``ema``, ...), each one safetensors file.
        state: everything else ``torch.save`` can store.
        keep: how many step folders to keep (the newest up to ``step``). Folders beyond ``step`` are the damaged
            ones a resume fell back from (:func:`find_checkpoint`): they go, so a later fallback never lands
            on them.

    Returns:
        The step folder.
    """
    from safetensors.torch import save_file

    folder = Path(run_dir) / "checkpoints"
    final = folder / step_folder_name(step)
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, tensors in weights.items():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors")
        )
    torch.save({"step": step, WEIGHT_FILES: sorted(weights), **state}, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    with atomic_path(folder / LATEST) as pointer:
        pointer.write_text(final.name + "\n")
    # The `keep` newest up to this step stay; one beyond it is a damaged checkpoint a resume fell back from.
    folders = step_folders(run_dir)
    older = [p for p in folders if folder_step(p) < step]
    newer = [p for p in folders if folder_step(p) > step]
    for old in older[: max(len(older) - keep + 1, 0)] + newer:
        shutil.rmtree(old, ignore_errors=True)
    return final


def step_folder_name(step: int) -> str:
    return f"step_{step:07d}"


def folder_step(folder: Path) -> int:
    """The step of a ``step_NNNNNNN`` folder (-1 for a name that is not one)."""
    digits = folder.name.removeprefix("step_")
    return int(digits) if digits.isdigit() else -1


def step_folders(run_dir: Path) -> list[Path]:
    """The run's ``checkpoints/step_*`` folders, oldest first (complete or not: see :func:`read_checkpoint`)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("step_*") if p.is_dir() and folder_step(p) >= 0]
    return sorted(found, key=folder_step)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The step folder ``checkpoints/latest`` names, or None when the run has no complete checkpoint."""
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    return folder if (folder / "state.pt").is_file() else None


class CheckpointDamaged(UserError, RuntimeError):
    """Files of a checkpoint folder that cannot be read (a crash or a full disk in the middle of a copy, a
    truncated download): :attr:`files` names each with why."""

    def __init__(self, folder: Path, files: list[tuple[str, str]], message: str | None = None) -> None:
        self.folder = Path(folder)
        self.files = files
        super().__init__(message or f"{self.folder}: {self.listed()}")

    def listed(self) -> str:
        return "; ".join(f"{name} {why}" for name, why in self.files)


def read_checkpoint(folder: Path) -> tuple[dict[str, dict], dict]:
    """(weights by name, state) of a checkpoint written by :func:`save_checkpoint`, every file checked.

    Raises:
        CheckpointDamaged: naming each file that is missing, truncated or unreadable.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    damaged: list[tuple[str, str]] = []
    state: dict = {}
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "step" not in state or "rng" not in state:
            raise ValueError("no step or RNG state in it")
    except Exception as error:  # noqa: BLE001 - unpickling a damaged file raises almost anything
        damaged.append(("state.pt", _reason(error)))
        state = {}
    weights = {}
    found = {p.stem for p in folder.glob("*.safetensors")}
    for name in sorted(found | set(state.get(WEIGHT_FILES, ()))):
        try:
            weights[name] = load_file(str(folder / f"{name}.safetensors"))
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error type, or an OSError
            damaged.append((f"{name}.safetensors", _reason(error)))
    if damaged:
        raise CheckpointDamaged(folder, damaged)
    return weights, state


def _reason(error: BaseException) -> str:
    """Why a checkpoint file cannot be read, in a few words (the first sentence of the library's message)."""
    if isinstance(error, FileNotFoundError):
        return "(missing)"
    text = " ".join(str(error).split()).split(". ")[0][:100]
    return f"(truncated or damaged: {text})" if text else f"(truncated or damaged: {type(error).__name__})"


def load_checkpoint(folder: Path) -> tuple[dict[str, dict], dict]:
    """(weights by name, state) of a checkpoint written by :func:`save_checkpoint`."""
    return read_checkpoint(folder)


def find_checkpoint(run_dir: Path) -> tuple[Path, dict[str, dict], dict] | None:
    """The newest intact checkpoint of ``run_dir``, read: (folder, weights, state); None when it has none.

    A damaged newer one (its files truncated, deleted or unreadable) is named in a warning and the previous
    intact one is used (``trainer.keep_checkpoints`` >= 2 keeps one).

    Raises:
        CheckpointDamaged: the run has checkpoints but none of them is intact (each one's files named).
    """
    damaged: list[CheckpointDamaged] = []
    for folder in reversed(step_folders(run_dir)):
        try:
            weights, state = read_checkpoint(folder)
        except CheckpointDamaged as error:
            damaged.append(error)
            log.warning("checkpoint %s cannot be read: %s; trying the one before it", folder, error.listed())
            continue
        if damaged:
            log.warning("resuming from %s, the newest intact checkpoint", folder)
        return folder, weights, state
    if damaged:
        where = Path(run_dir) / "checkpoints"
        files = [(f"{e.folder.name}/{name}", why) for e in damaged for name, why in e.files]
        listed = "; ".join(f"{name} {why}" for name, why in files)
        raise CheckpointDamaged(
            where,
            files,
            f"no intact checkpoint in {where}: {listed}. Start the run over with trainer.resume=false (its "
            "checkpoints are replaced), or put back an intact copy of one",
        )
    return None


def mismatch_error(path: Path, exc: Exception) -> CheckpointRefused:
    detail = " ".join(str(exc).split())[:300]  # the first mismatch is enough to tell what differs
    return CheckpointRefused(
        f"{path} was written by a different model or optimizer setup; choose another run "
        f"(name=... or the stage's run_dir=...) or start over with trainer.resume=false. Details: {detail}"
    )


def resume_from_checkpoint(
    run_dir: Path, enabled: bool, restore: Callable[[dict, dict], None], stage: str
) -> tuple[int, dict]:
    """Restore the newest intact checkpoint of ``run_dir`` (when ``enabled`` and one exists) through ``restore``.

    ``restore(weights, state)`` loads the stage's own models and optimizers; the RNG states are restored here.
    Anything that does not fit (another model size, another optimizer setup) is a :class:`CheckpointRefused`;
    a damaged newest checkpoint falls back to the one before it (:func:`find_checkpoint`).

    Returns:
        (the step to start from, the metrics saved with the checkpoint); (0, {}) when starting fresh.
    """
    found = find_checkpoint(run_dir) if enabled else None
    if found is None:
        return 0, {}
    checkpoint, weights, state = found
    try:
        restore(weights, state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise mismatch_error(checkpoint, exc) from exc
    set_rng_state(state["rng"])
    log.info("%s: resumed from %s at step %d", stage, checkpoint, int(state["step"]))
    return int(state["step"]), dict(state.get("metrics", {}))


def reached_step(run_dir: Path, artefact: str, steps: int) -> bool:
    """A stage is complete when its artefact exists and its ``metrics.json`` says it reached ``steps``."""
    if not (Path(run_dir) / artefact).is_file():
        return False
    return int(read_metrics(run_dir).get("step", 0)) >= int(steps)


def read_metrics(run_dir: Path) -> dict:
    """``<run_dir>/metrics.json``, or {} when it is missing or unreadable (a stage that cannot tell it finished
    runs again: it resumes from its checkpoint, which holds the metrics too)."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("%s cannot be read (%s): the stage is run again", path, error)
        return {}
    return metrics if isinstance(metrics, dict) else {}


class ComponentUnreadable(UserError, OSError):
    """A saved component (an earlier stage's autoencoder or encoder folder) that cannot be loaded."""


def load_component(load: Callable[[Path], T], folder: Path, option: str, remedy: str) -> T:
    """``load(folder)`` of an earlier stage's saved result; anything that goes wrong reading it (a truncated
    weights file, a hand-edited config.json) is one :class:`ComponentUnreadable` naming ``option``, the folder,
    what failed and ``remedy``."""
    try:
        return load(Path(folder))
    except Exception as error:  # noqa: BLE001 - JSON, safetensors, diffusers and torch errors all mean the same
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise ComponentUnreadable(
            f"{option}={folder} cannot be loaded ({type(error).__name__}: {detail}); {remedy}"
        ) from error


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
