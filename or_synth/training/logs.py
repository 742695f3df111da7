"""What a run writes about itself: TensorBoard scalars and images, ``train_log.jsonl`` (one line per step),
``metrics.json`` and the resolved ``config.yaml``."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from or_synth.data.io import atomic_path, atomic_write_json


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
        """Close both (again: nothing)."""
        if self.writer is not None:
            self.writer.close()
            self.steps.close()
            self.writer = None


def write_metrics(run_dir: Path, metrics: Mapping) -> None:
    atomic_write_json(Path(run_dir) / "metrics.json", dict(metrics), indent=2)


def save_resolved_config(run_dir: Path, cfg: DictConfig) -> None:
    """``<run_dir>/config.yaml``: the config the run was started with, interpolations resolved."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "config.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
