"""Where a stage runs: the device, the precision, and Accelerate (one process, or several under ``accelerate
launch`` / ``torchrun``)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from omegaconf import DictConfig

from or_synth.data.errors import UserError

PRECISIONS = ("fp32", "bf16")


class DeviceUnavailable(UserError, RuntimeError):
    """``trainer.device`` names no device this machine has (CUDA without a GPU, a GPU index beyond the count)."""


def resolve_device(name: str) -> torch.device:
    """``trainer.device`` as a device; a clear error for one this machine does not have."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceUnavailable(f"trainer.device={name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"trainer.device={name} but CUDA is not available; use trainer.device=cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceUnavailable(
                f"trainer.device={name} but this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceUnavailable(f"trainer.device={name} but MPS is not available; use trainer.device=cpu")
    elif device.type != "cpu":
        raise DeviceUnavailable(f"trainer.device={name}: training runs on cpu, cuda or cuda:N")
    return device


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision must be fp32 or bf16, got {precision!r}")


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast when ``trainer.precision=bf16``; fp32 otherwise (the single-device stages)."""
    check_precision(precision)
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def make_accelerator(trainer_cfg: DictConfig, grad_accum: int = 1):
    """An ``accelerate.Accelerator`` for ``trainer.device`` / ``trainer.precision``.

    Under ``accelerate launch`` (or ``torchrun``) each process gets its rank's device; on CPU the processes
    talk over gloo.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    resolve_device(trainer_cfg.device)
    check_precision(trainer_cfg.precision)
    return Accelerator(
        cpu=torch.device(trainer_cfg.device).type == "cpu",
        mixed_precision="bf16" if trainer_cfg.precision == "bf16" else "no",
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
