"""What a run writes about itself: TensorBoard scalars and images, ``train_log.jsonl`` (one line per step) and
``metrics.json`` (the run's record of its configuration is :mod:`.record`'s).

Both JSON files are strict JSON: a NaN or infinite loss (a step the non-finite guard skipped) is written as
``null``, since JSON has no NaN."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from or_synth.data.io import atomic_path

log = logging.getLogger(__name__)


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
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if line and int(json.loads(line)["step"]) <= resume_step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):  # a line cut by a kill in the middle of a write
                    log.warning("%s: dropped an unreadable line (%s...)", path, line[:40])
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
        self.handle = path.open("a", encoding="utf-8")

    def write(self, record: Mapping) -> None:
        record = {**record, "time": round(time.time(), 3)}
        if torch.cuda.is_initialized():  # the GPU check reads each run's peak memory off its log
            record["cuda_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        line = json.dumps(finite_or_null(record), allow_nan=False)
        self.handle.write(line + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class RunLogs:
    """The main process's TensorBoard writer and ``train_log.jsonl``; other ranks get a no-op."""

    def __init__(self, run_dir: Path, start: int, is_main: bool) -> None:
        self.writer = summary_writer(run_dir / "tensorboard") if is_main else None
        self.steps = StepLog(run_dir / "train_log.jsonl", start) if is_main else None

    def close(self) -> None:
        """Close both (again: nothing)."""
        if self.writer is not None:
            self.writer.close()
            self.steps.close()
            self.writer = None


def write_metrics(run_dir: Path, metrics: Mapping) -> None:
    with atomic_path(Path(run_dir) / "metrics.json") as tmp:
        tmp.write_text(json.dumps(finite_or_null(dict(metrics)), indent=2, allow_nan=False) + "\n")


def finite_or_null(value):
    """``value`` with every NaN or infinite float replaced by None: a loss that is not a number (a skipped step)
    or a PSNR of identical images is undefined, and JSON's ``null`` says so (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    return value
