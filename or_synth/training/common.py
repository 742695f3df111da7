"""Machinery the training stages share: data, devices and Accelerate, deterministic randomness, atomic
checkpoints with exact resume, the non-finite-loss guard and logging (sample grids: :mod:`or_synth.reports.grids`).

Each stage module (``align``, ``vae``, ``ldm``) is one plain function that reads like its recipe and calls
these helpers; nothing here knows about a particular stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from or_synth.data import FourDORDataset
from or_synth.data.errors import StoppedOnRequest
from or_synth.data.io import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

LATEST = "latest"


# --- data -------------------------------------------------------------------------------------------------
def build_dataset(dataset_cfg: DictConfig, split: str, *, load_images: bool = True) -> FourDORDataset:
    """A split of the configured dataset (4D-OR or anything in its layout, e.g. the synthetic OR)."""
    return FourDORDataset(
        dataset_cfg.root,
        split,
        takes=dataset_cfg.get("takes"),
        cameras=dataset_cfg.cameras,
        image_size=dataset_cfg.image_size,
        load_images=load_images,
        strict=dataset_cfg.get("strict", True),
        processed_root=dataset_cfg.get("processed_root"),
    )


def ensure_rendered(dataset_cfg: DictConfig) -> None:
    """Render the embedded synthetic dataset on first use: when the config says how (``dataset.render``) and
    ``dataset.root`` holds no dataset yet (an interrupted render resumes; a complete one is never touched)."""
    overrides = dataset_cfg.get("render")
    if overrides is not None:
        from or_synth.render import render_on_first_use

        render_on_first_use(dataset_cfg.root, list(overrides), dataset_cfg.train_split)


def forever(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


def epoch_batch(num_items: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the global batch of ``step``: epochs are seeded permutations, so the data position is a
    function of the step alone and a resumed run sees exactly the batches an uninterrupted one would."""
    per_epoch = max(num_items // batch_size, 1)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    if num_items < batch_size:  # tiny datasets (tests): repeat the permutation
        order = order.repeat(batch_size // num_items + 1)
    return order[position * batch_size : (position + 1) * batch_size]


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one step's noise, timesteps and dropouts, independent of what ran before it (so
    resuming at any step, or splitting the global batch over processes, draws the same numbers)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 7 + stream)


# --- devices ------------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name} but CUDA is not available; use trainer.device=cpu")
    return device


def autocast(device: torch.device, precision: str):
    """bf16 autocast when ``trainer.precision=bf16``; fp32 otherwise."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"trainer.precision must be fp32 or bf16, got {precision!r}")
    return nullcontext()


def make_accelerator(trainer_cfg: DictConfig, grad_accum: int = 1):
    """An ``accelerate.Accelerator`` for ``trainer.device`` / ``trainer.precision``.

    Under ``accelerate launch`` (or ``torchrun``) each process gets its rank's device; on CPU the processes
    talk over gloo.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    resolve_device(trainer_cfg.device)
    precision = trainer_cfg.precision
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"trainer.precision must be fp32 or bf16, got {precision!r}")
    return Accelerator(
        cpu=torch.device(trainer_cfg.device).type == "cpu",
        mixed_precision="bf16" if precision == "bf16" else "no",
        gradient_accumulation_steps=grad_accum,
        # The graph encoder's masked-modelling tokens, and the null graph in steps that drop no graph, get no
        # gradient; DDP must not wait for them.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def process_state(trainer_cfg: DictConfig):
    """Accelerate's ``PartialState``: rank and barrier of a multi-process launch without an ``Accelerator``, so
    the precision of a stage that builds its own Accelerator later is not fixed here."""
    from accelerate import PartialState

    return PartialState(cpu=resolve_device(trainer_cfg.device).type == "cpu")


# --- checkpoints ----------------------------------------------------------------------------------------------
def rng_state() -> dict:
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
        state: everything else ``torch.save`` can store with ``weights_only`` loading.
    """
    from safetensors.torch import save_file

    folder = run_dir / "checkpoints"
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
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = run_dir / "checkpoints" / pointer.read_text().strip()
    return folder if (folder / "state.pt").is_file() else None


def load_checkpoint(folder: Path) -> tuple[dict[str, dict], dict]:
    """(weights by name, state) of a checkpoint written by :func:`save_checkpoint`."""
    from safetensors.torch import load_file

    weights = {p.stem: load_file(str(p)) for p in folder.glob("*.safetensors")}
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
    return weights, state


def mismatch_error(path: Path, exc: Exception) -> RuntimeError:
    detail = " ".join(str(exc).split())[:300]  # the first mismatch is enough to tell what differs
    return RuntimeError(
        f"{path} was written by a different model or optimizer setup; choose another run "
        f"(name=... or the stage's run_dir=...) or start over with trainer.resume=false. Details: {detail}"
    )


def resume_from_checkpoint(
    run_dir: Path, enabled: bool, restore: Callable[[dict, dict], None], stage: str
) -> tuple[int, dict]:
    """Restore the latest checkpoint of ``run_dir`` (when ``enabled`` and one exists) through ``restore``.

    ``restore(weights, state)`` loads the stage's own models and optimizers; the RNG states are restored here.
    Anything that does not fit (another model size, another optimizer setup) is a clear error.

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


def config_fingerprint(cfg: Mapping) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- logging ----------------------------------------------------------------------------------------------------
def summary_writer(log_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


def log_scalars(writer, scalars: Mapping, step: int) -> None:
    for key, value in scalars.items():
        writer.add_scalar(key, value, step)
    writer.flush()


class StepLog:
    """``train_log.jsonl``: one line per optimisation step (loss and friends, plus ``time``, the wall clock when
    the step finished, for throughput), truncated to the resumed step so a resumed run's log reads exactly like
    an uninterrupted one."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        kept = []
        if path.is_file() and resume_step > 0:
            kept = [
                line
                for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= resume_step
            ]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
        self.handle = path.open("a", encoding="utf-8")

    def write(self, record: Mapping) -> None:
        self.handle.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class RunLogs:
    """The main process's TensorBoard writer and ``train_log.jsonl``; other ranks get a no-op."""

    def __init__(self, run_dir: Path, start: int, is_main: bool) -> None:
        self.writer = summary_writer(run_dir / "tensorboard") if is_main else None
        self.steps = StepLog(run_dir / "train_log.jsonl", start) if is_main else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.steps.close()


class TrainingInterrupted(StoppedOnRequest):
    """A run stopped on request (Ctrl-C, SIGTERM) after saving a checkpoint; the same command resumes it."""


def stopped_on_request(stage: str, run_dir: Path, done: int) -> TrainingInterrupted:
    """What a stage raises once it has saved its checkpoint on a stop request: where it is, how to resume."""
    return TrainingInterrupted(
        f"{stage} stopped on request at step {done} with a checkpoint in {run_dir / 'checkpoints'}; "
        "run the same command again to resume"
    )


class StopRequest:
    """Turns the first SIGINT / SIGTERM into a request the training loop honours at the end of its step (so it can
    save a checkpoint first); a second SIGINT interrupts at once. Handlers are installed only in the main thread
    and restored on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested (%s): saving a checkpoint after this step", signal.Signals(signum).name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def step_progress(stage: str, start: int, steps: int, accelerator) -> tqdm:
    """The stage's progress bar over steps ``start..steps`` (shown once per machine)."""
    return tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc=stage,
        dynamic_ncols=True,
        disable=not accelerator.is_local_main_process,
    )


def check_divisible(batch_size: int, world: int, key: str) -> None:
    """The global batch is drawn once and sliced per process, so it must split evenly."""
    if batch_size % world:
        raise ValueError(f"{key}={batch_size} must divide evenly over {world} processes")


def write_metrics(run_dir: Path, metrics: Mapping) -> None:
    atomic_write_json(run_dir / "metrics.json", dict(metrics), indent=2)


def save_resolved_config(run_dir: Path, cfg: DictConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))


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


class NonFiniteGuard:
    """Skip an optimisation step whose loss is NaN or inf, report it, and stop after ``limit`` in a row."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.skipped: list[int] = []

    def check(self, finite: bool, step: int) -> bool:
        """True when the step may be applied."""
        if finite:
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.skipped.append(step)
        log.warning("non-finite loss at step %d: step skipped (%d in a row)", step, self.in_a_row)
        if self.in_a_row >= self.limit:
            raise FloatingPointError(
                f"{self.limit} non-finite losses in a row (steps {self.skipped[-self.limit :]}); lower the "
                "learning rate, or check the data"
            )
        return False
