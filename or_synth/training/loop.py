"""The loop machinery every stage shares: the steps with their progress bar, and the tail of each step (one
``train_log.jsonl`` line, TensorBoard scalars at ``log_every``, a sample or evaluation at ``sample_every``, a
checkpoint with ``metrics.json`` at ``ckpt_every``, the last step, and a stop request); plus the non-finite-loss
guard and the stop on request (Ctrl-C, SIGTERM).

A stage's loop then holds only its recipe::

    with TrainingLoop.for_stage(cfg, "layout", start, checkpoint=state, metrics=metrics, sample=evaluate) as loop:
        for step in loop:
            loss = ...  # the optimisation step
            loop.end_step(step + 1, {"train/loss": loss.item()})
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from or_synth.data.errors import StoppedOnRequest
from or_synth.training.checkpoints import rng_state, save_checkpoint
from or_synth.training.logs import RunLogs, log_scalars, write_metrics

log = logging.getLogger(__name__)


class TrainingInterrupted(StoppedOnRequest):
    """A run stopped on request (Ctrl-C, SIGTERM) after saving a checkpoint; the same command resumes it."""


def stopped_on_request(stage: str, run_dir: Path, done: int) -> TrainingInterrupted:
    """What a stage raises once it has saved its checkpoint on a stop request: where it is, how to resume."""
    return TrainingInterrupted(
        f"{stage} stopped on request at step {done} with a checkpoint in {Path(run_dir) / 'checkpoints'}; "
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
        self._previous.clear()


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


def step_progress(stage: str, start: int, steps: int, accelerator=None) -> tqdm:
    """The stage's progress bar over steps ``start..steps`` (shown once per machine)."""
    return tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc=stage,
        dynamic_ncols=True,
        disable=accelerator is not None and not accelerator.is_local_main_process,
    )


def check_divisible(batch_size: int, world: int, key: str) -> None:
    """The global batch is drawn once and sliced per process, so it must split evenly."""
    if batch_size % world:
        raise ValueError(f"{key}={batch_size} must divide evenly over {world} processes")


def due(done: int, every: int | None, last: bool) -> bool:
    """Whether a cadence ``every`` (None: never, except at the last step) falls on step ``done``."""
    return last or (every is not None and done % every == 0)


class TrainingLoop:
    """Steps ``start..steps-1`` of a stage and the tail of each (:meth:`end_step`), under a :class:`StopRequest`.

    Used as a context manager: leaving it closes the progress bar and the logs and restores the signal handlers.

    Args:
        stage: the stage's name (progress bar, messages).
        run_dir: the run folder (``checkpoints/``, ``train_log.jsonl``, ``tensorboard/``, ``metrics.json``).
        start: the first step (the resumed step, or 0).
        steps: the configured step count; step ``steps`` is the last.
        log_every: TensorBoard scalars and the progress-bar loss every this many steps (``trainer.log_every``).
        ckpt_every: a checkpoint and ``metrics.json`` every this many steps, at the last one, and on a stop
            request.
        checkpoint: returns ``(weights, state)`` of the stage for :func:`save_checkpoint`: state dicts of tensors
            by name, and the rest (optimizers, LR schedules); the RNG states and the metrics are added here.
        metrics: the run's metrics (resumed with the checkpoint); each checkpoint records ``step`` and ``loss``
            in it and writes it to ``metrics.json``.
        sample_every: the stage's sample grid or evaluation every this many steps and at the last one (None: only
            at the last one); skipped on a stop request.
        sample: ``sample(done)`` draws or evaluates on the main process and returns what to log: scalars by tag,
            and images (PIL or HWC arrays) by tag.
        export: writes the stage's result with each checkpoint (the encoder, the predictor), before
            ``metrics.json`` says the step is done.
        sample_first: also ``sample(0)`` before the first step of a fresh run (the start to compare the end with).
        keep: checkpoints to keep (``trainer.keep_checkpoints``).
        accelerator: under Accelerate, the stop request is honoured when any rank has one, and every rank waits
            at the end of each step; only the main process logs, samples and saves.
    """

    def __init__(
        self,
        stage: str,
        run_dir: Path,
        start: int,
        steps: int,
        *,
        log_every: int,
        ckpt_every: int,
        checkpoint: Callable[[], tuple[Mapping[str, Mapping], Mapping]],
        metrics: dict,
        sample_every: int | None = None,
        sample: Callable[[int], Mapping] | None = None,
        export: Callable[[], None] | None = None,
        sample_first: bool = False,
        keep: int = 2,
        accelerator=None,
    ) -> None:
        self.stage, self.run_dir, self.start, self.steps = stage, Path(run_dir), int(start), int(steps)
        self.log_every, self.ckpt_every, self.sample_every = int(log_every), int(ckpt_every), sample_every
        self.checkpoint, self.sample, self.export, self.keep = checkpoint, sample, export, int(keep)
        self.sample_first = sample_first
        self.metrics = metrics
        self.accelerator = accelerator
        self.is_main = accelerator is None or accelerator.is_main_process
        self.logs = RunLogs(self.run_dir, self.start, self.is_main)
        self.progress = step_progress(stage, self.start, self.steps, accelerator)
        self.stop = StopRequest()

    @classmethod
    def for_stage(
        cls,
        cfg: DictConfig,
        stage: str,
        start: int,
        *,
        checkpoint: Callable[[], tuple[Mapping[str, Mapping], Mapping]],
        metrics: dict,
        sample: Callable[[int], Mapping] | None = None,
        export: Callable[[], None] | None = None,
        sample_first: bool = False,
        accelerator=None,
    ) -> TrainingLoop:
        """The loop of ``stage`` as configured: ``cfg.<stage>.run_dir``, ``steps``, ``ckpt_every`` and
        ``sample_every`` (or ``eval_every``), with ``trainer.log_every`` and ``trainer.keep_checkpoints``."""
        settings = cfg[stage]
        return cls(
            stage,
            Path(settings.run_dir),
            start,
            settings.steps,
            log_every=cfg.trainer.log_every,
            ckpt_every=settings.ckpt_every,
            checkpoint=checkpoint,
            metrics=metrics,
            sample_every=settings.get("sample_every", settings.get("eval_every")),
            sample=sample,
            export=export,
            sample_first=sample_first,
            keep=cfg.trainer.keep_checkpoints,
            accelerator=accelerator,
        )

    def __enter__(self) -> TrainingLoop:
        self.stop.__enter__()
        if self.sample_first and self.start == 0 and self.sample is not None and self.is_main:
            self.log(self.sample(0), 0)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.__exit__(*exc)
        self.progress.close()
        self.logs.close()

    def __iter__(self) -> Iterator[int]:
        return iter(self.progress)

    def log(self, values: Mapping, step: int) -> None:
        """Scalars (numbers) and images (PIL images or HWC arrays) to TensorBoard, on the main process."""
        if not self.is_main or not values:
            return
        scalars = {k: v for k, v in values.items() if isinstance(v, int | float)}
        for tag, image in values.items():
            if tag not in scalars:
                self.logs.writer.add_image(tag, np.asarray(image), step, dataformats="HWC")
        log_scalars(self.logs.writer, scalars, step)

    def end_step(
        self,
        done: int,
        scalars: Mapping[str, float],
        *,
        line: Mapping | None = None,
        last: bool = False,
        postfix: Mapping[str, str] | None = None,
    ) -> None:
        """The tail of the step that brought the run to ``done`` steps.

        Args:
            done: steps completed.
            scalars: this step's TensorBoard scalars; ``train/loss`` is the loss the log, the progress bar and
                the metrics report.
            line: the ``train_log.jsonl`` fields besides ``step`` (default: ``loss``).
            last: this step ends the run early (a time budget), as the last configured step does.
            postfix: more progress-bar fields.

        Raises:
            TrainingInterrupted: a stop was requested (the checkpoint of ``done`` is saved first).
        """
        interrupted = self._stop_requested() and done < self.steps
        last = last or done == self.steps
        loss = float(scalars["train/loss"])
        if self.is_main:
            self.logs.steps.write({"step": done, **(line if line is not None else {"loss": loss})})
            if due(done, self.log_every, last):
                log_scalars(self.logs.writer, scalars, done)
                self.progress.set_postfix(loss=f"{loss:.4f}", **(postfix or {}))
            if self.sample is not None and due(done, self.sample_every, last) and not interrupted:
                self.log(self.sample(done), done)
            if due(done, self.ckpt_every, last) or interrupted:
                self._save(done, loss)
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
        if interrupted:
            raise stopped_on_request(self.stage, self.run_dir, done)

    def _stop_requested(self) -> bool:
        if self.accelerator is None:
            return self.stop.requested
        requested = torch.tensor(float(self.stop.requested), device=self.accelerator.device)
        return self.accelerator.reduce(requested, "max").item() > 0  # every rank stops at the same step

    def _save(self, done: int, loss: float) -> None:
        self.metrics.update({"step": done, "loss": loss})
        weights, state = self.checkpoint()
        state = {**state, "rng": rng_state(), "metrics": self.metrics}
        save_checkpoint(self.run_dir, done, weights, state, keep=self.keep)
        if self.export is not None:
            self.export()
        write_metrics(self.run_dir, self.metrics)
