"""Every training option a stage reads, checked before any work: no data read, nothing rendered, no run folder
written. :func:`check_options` runs in :func:`or_synth.training.train` for every stage it will run (all three of
the recipe before its first one), so a bad ``ldm`` option is refused before ``vae`` trains for an hour.

The checks are tables: counts (integers with a minimum), rates and weights (finite numbers, above or at least a
bound), fractions (in [0, 1] or [0, 1)), switches (true / false) and choices. A key the stage's config lacks is
not checked (an older experiment file); a value of the wrong type is refused like an out-of-range one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from or_synth.data.errors import UserError
from or_synth.data.io import check_output_folder
from or_synth.data.vocabulary import CAMERAS
from or_synth.training.devices import check_precision, resolve_device

__all__ = ["OptionError", "check_options", "check_trainer_options"]

# A count's smallest allowed value; `None` after it: null is allowed too (and means what the comment says).
Counts = Mapping[str, int | tuple[int, None]]

# Stage -> key -> minimum. Cadences (`*_every`) are steps between two events, so at least 1; `steps` of a stage
# that does not train (vae with pretrained weights or the closed-form codec) may be 0 (see `_stage_counts`).
COUNTS: dict[str, Counts] = {
    "vae": {
        "steps": 1, "batch_size": 1, "warmup_steps": 0, "grad_accum": 1, "ckpt_every": 1,
        "sample_every": (1, None), "eval_images": 1, "scaling_images": 1, "loss.adversarial_start": 0,
        "loss.ms_ssim_scales": 1, "loss.ms_ssim_kernel": 1, "loss.discriminator_channels": 1,
        "loss.discriminator_layers": 1,
    },
    "align": {
        "embed_dim": 1, "eval_max_graphs": 1, "steps": 1, "batch_size": 1, "eval_every": (1, None),
        "ckpt_every": 1,
    },
    "ldm": {
        "layout_channels": 1, "steps": 1, "batch_size": 1, "grad_accum": 1, "warmup_steps": 0,
        "ckpt_every": 1, "sample_every": (1, None), "sample.graphs": 1, "sample.steps": 1,
    },
    "layout": {
        "mask_size": 2, "hidden": 1, "mask_channels": 1, "steps": 1, "batch_size": 1, "eval_every": (1, None),
        "ckpt_every": 1,
    },
    "classifier": {
        "image_size": 8, "min_triple_count": 1, "steps": 1, "batch_size": 1, "max_shift": 0, "ckpt_every": 1,
        "eval_max_scans": (1, None),
    },
}  # fmt: skip
# Learning rates, clipping norms and the like: finite and > 0.
POSITIVE = {
    "vae": ("lr", "discriminator_lr", "grad_clip"),
    "align": ("lr", "image_lr", "grad_clip"),
    "ldm": ("lr", "encoder_lr", "grad_clip", "ema.power"),
    "layout": ("lr", "encoder_lr", "grad_clip"),
    "classifier": ("lr", "max_pos_weight"),
}
# Loss weights and weight decay: finite and >= 0 (0 switches the term off).
NON_NEGATIVE = {
    "vae": ("weight_decay", "loss.kl_weight", "loss.ms_ssim_weight", "loss.adversarial_weight",
            "loss.perceptual_weight"),
    "align": ("weight_decay", "contrastive_weight", "masked_weight"),
    "ldm": ("weight_decay",),
    "layout": ("weight_decay", "loss.box", "loss.mask", "loss.visibility"),
    "classifier": ("weight_decay", "pair_loss_weight"),
}  # fmt: skip
# Probabilities and thresholds: in [0, 1]; EMA decays: in [0, 1) (1 would never move the average).
FRACTIONS = {
    "align": ("mask_prob",),
    "ldm": ("cond_drop.graph", "cond_drop.layout"),
    "layout": ("mask_threshold",),
}
BELOW_ONE = {"ldm": ("ema.decay",)}
# Finite and > 0, or null (off).
POSITIVE_OR_NULL = {"ldm": ("snr_gamma", "time_budget_s")}
# Any finite number.
FINITE = {"ldm": ("sample.guidance_scale", "sample.layout_guidance_scale")}
SWITCHES = {
    "ldm": ("train_encoder", "latent_cache", "ema.warmup"),
    "layout": ("train_encoder",),
}
CHOICES = {
    "ldm": {"layout": ("auto", True, False), "sample.sampler": ("ddpm", "ddim", "dpmsolver++", "dpm-solver++",
                                                                "dpmsolver")},
    "classifier": {"pairs": ("auto", True, False)},
}  # fmt: skip
# At least one of these weights must be > 0, or the stage has nothing to learn.
SOME_WEIGHT = {
    "align": ("contrastive_weight", "masked_weight"),
    "layout": ("loss.box", "loss.mask", "loss.visibility"),
}
LR_SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
TRAINER_COUNTS: Counts = {"num_workers": 0, "log_every": 1, "keep_checkpoints": 1, "max_bad_steps": 1}
TRAINER_SWITCHES = ("compile", "resume", "allow_config_change")
TAKES = range(1, 11)  # 4D-OR's takes
MIN_SIDE = 8  # px: the smallest image side the autoencoders and the sample grid work at
# Seeds feed torch.Generator.manual_seed after an affine map (batches.step_generator): keep them in 32 bits.
MAX_SEED = 2**32 - 1


class OptionError(UserError, ValueError):
    """A training option that cannot work; the message names it, what it got and what to give instead."""


def check_trainer_options(cfg: DictConfig) -> None:
    """``seed`` and ``trainer.*`` (device, precision, bookkeeping): what every stage shares.

    Raises:
        OptionError: the first bad option (a device that is not there among them).
    """
    seed = _value(cfg, "seed")
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise OptionError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    check_precision(str(_value(cfg, "trainer.precision")))
    resolve_device(str(_value(cfg, "trainer.device")))
    cuda = str(_value(cfg, "trainer.device")).startswith("cuda")
    if _value(cfg, "trainer.precision") == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise OptionError(
            f"trainer.precision=bf16 but {torch.cuda.get_device_name()} has no bf16 support; use "
            "trainer.precision=fp32"
        )
    _check_counts(cfg, "trainer", TRAINER_COUNTS)
    _check_switches(cfg, "trainer", TRAINER_SWITCHES)


def check_dataset_options(cfg: DictConfig) -> None:
    """``dataset.*`` as every stage reads it: cameras in 1..6, an image size ``[H, W]`` of at least ``MIN_SIDE``
    px a side (every view is resized to it; the classifier reads ``image_size[0]``), takes of 4D-OR's 1..10 (or
    null: the split's)."""
    _check_cameras(cfg, "dataset.cameras")
    size = _value(cfg, "dataset.image_size")
    if not isinstance(size, list) or len(size) != 2 or any(not _is_int(s) or s < MIN_SIDE for s in size):
        raise OptionError(
            f"dataset.image_size must be [H, W], integers >= {MIN_SIDE} (training resizes every view to it), "
            f"got {size!r}"
        )
    takes = _value(cfg, "dataset.takes")
    if takes is not None and (
        not isinstance(takes, list) or not takes or any(not _is_int(t) or t not in TAKES for t in takes)
    ):
        raise OptionError(
            f"dataset.takes must be null (the split's) or a list of 4D-OR takes in 1..10, got {takes!r}"
        )
    _check_switches(cfg, "dataset", ("strict",))


def check_options(cfg: DictConfig, stages: Iterable[str], world: int = 1) -> None:
    """The options of ``stages`` (and :func:`check_trainer_options`), and that their run folders can be written.

    Args:
        stages: the stages about to run (``vae``, ``align``, ``ldm``, ``layout``, ``classifier``).
        world: processes of this launch; stages ``vae`` and ``ldm`` split their global batch over them.

    Raises:
        OptionError: a bad value (:func:`check_dataset_options` too); ``NotADirectoryError`` / ``PermissionError``: a run folder that is a file or
            cannot be written.
    """
    check_trainer_options(cfg)
    check_dataset_options(cfg)
    stages = list(stages)
    for stage in stages:
        _check_stage(cfg, stage, world)
    _check_folders(cfg, stages)


def _check_stage(cfg: DictConfig, stage: str, world: int) -> None:
    _check_counts(cfg, stage, _stage_counts(cfg, stage))
    for key in POSITIVE.get(stage, ()):
        _check_number(cfg, f"{stage}.{key}", low=0.0, low_open=True)
    for key in NON_NEGATIVE.get(stage, ()):
        _check_number(cfg, f"{stage}.{key}", low=0.0, note="0 switches it off")
    for key in FRACTIONS.get(stage, ()):
        _check_number(cfg, f"{stage}.{key}", low=0.0, high=1.0)
    for key in BELOW_ONE.get(stage, ()):
        _check_number(cfg, f"{stage}.{key}", low=0.0, high=1.0, high_open=True)
    for key in POSITIVE_OR_NULL.get(stage, ()):
        _check_number(cfg, f"{stage}.{key}", low=0.0, low_open=True, null=True, note="null switches it off")
    for key in FINITE.get(stage, ()):
        _check_number(cfg, f"{stage}.{key}")
    _check_switches(cfg, stage, SWITCHES.get(stage, ()))
    for key, allowed in CHOICES.get(stage, {}).items():
        value = _value(cfg, f"{stage}.{key}")
        if value is not _MISSING and not any(value == a and type(value) is type(a) for a in allowed):
            shown = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
            raise OptionError(f"{stage}.{key} must be one of {shown}; got {value!r}")
    weights = SOME_WEIGHT.get(stage)
    if weights and all(_value(cfg, f"{stage}.{k}") in (0, 0.0) for k in weights):
        names = ", ".join(f"{stage}.{k}" for k in weights)
        raise OptionError(f"{names} are all 0: the stage would learn nothing; give at least one a weight > 0")
    if stage in ("vae", "ldm"):  # the global batch is drawn once and sliced per process
        batch = _value(cfg, f"{stage}.batch_size")
        if world > 1 and batch % world:
            raise OptionError(
                f"{stage}.batch_size={batch} must divide evenly over the {world} processes of this launch; "
                f"give a multiple of {world}"
            )
    if stage == "ldm":
        _check_ldm(cfg)
    if stage == "layout" and _value(cfg, "layout.mask_size") & (_value(cfg, "layout.mask_size") - 1):
        raise OptionError(f"layout.mask_size must be a power of two (8, 16, 32), got {cfg.layout.mask_size}")
    if stage == "classifier":
        _check_cameras(cfg, "classifier.cameras")


def _check_ldm(cfg: DictConfig) -> None:
    schedule = _value(cfg, "ldm.lr_schedule")
    if schedule not in LR_SCHEDULES:
        raise OptionError(f"ldm.lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {schedule!r}")
    _check_cameras(cfg, "ldm.sample.cameras")
    reference = cfg.ldm.sample.get("reference_pipeline")
    if reference:  # drawn into the final grid after training: a bad one must not cost the run
        from or_synth.generator.shipped import resolve_pipeline

        try:
            resolve_pipeline(reference)
        except FileNotFoundError as error:
            raise OptionError(f"ldm.sample.reference_pipeline: {error}") from None


def _stage_counts(cfg: DictConfig, stage: str) -> Counts:
    counts = dict(COUNTS[stage])
    if stage == "vae":
        from or_synth.training.vae import trains

        if not trains(cfg):  # pretrained weights or the closed-form codec: nothing to step through
            counts["steps"] = 0
    return counts


def _check_folders(cfg: DictConfig, stages: list[str]) -> None:
    """``runs_root`` (where the run folders lie by default) and each stage's ``run_dir``: a folder, or a place
    where one can be made, that can be written; the latent cache of stage ``ldm`` and ``dataset.processed_root``
    too."""
    runs_root = Path(str(cfg.runs_root))
    folders = {f"{stage}.run_dir": Path(str(cfg[stage].run_dir)) for stage in stages}
    if "ldm" in stages and cfg.ldm.get("latent_cache"):
        folders["ldm.cache_dir"] = Path(str(cfg.ldm.cache_dir))
    if cfg.dataset.get(
        "processed_root"
    ):  # null: <root>/processed, which may exist already in a read-only root
        folders["dataset.processed_root"] = Path(str(cfg.dataset.processed_root))
    if any(_under(path, runs_root) for path in folders.values()):
        check_output_folder(runs_root, "runs_root")
    for option, path in folders.items():
        check_output_folder(path, option)


def _under(path: Path, root: Path) -> bool:
    return path.absolute().is_relative_to(root.absolute())


_MISSING = object()


def _value(cfg: DictConfig, key: str):
    """The value at dotted ``key``, or ``_MISSING`` when the config has no such key."""
    value = OmegaConf.select(cfg, key, default=_MISSING)
    return (
        OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_counts(cfg: DictConfig, group: str, counts: Counts) -> None:
    for key, rule in counts.items():
        minimum, null = (rule, False) if isinstance(rule, int) else (rule[0], True)
        value = _value(cfg, f"{group}.{key}")
        if value is _MISSING or (null and value is None):
            continue
        if not _is_int(value) or value < minimum:
            also = " (or null)" if null else ""
            raise OptionError(f"{group}.{key} must be an integer >= {minimum}{also}, got {value!r}")


def _check_number(
    cfg: DictConfig,
    key: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    null: bool = False,
    note: str = "",
) -> None:
    value = _value(cfg, key)
    if value is _MISSING or (null and value is None):
        return
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    fine = math.isfinite(number)
    if fine and low is not None:
        fine = number > low if low_open else number >= low
    if fine and high is not None:
        fine = number < high if high_open else number <= high
    if fine:
        return
    if low is not None and high is not None:
        bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        bounds = f"{'>' if low_open else '>='} {low:g}"
    else:
        bounds = "finite"
    hint = f"; {note}" if note else ""
    also = " (or null)" if null else ""
    raise OptionError(f"{key} must be a finite number {bounds}{also}, got {value!r}{hint}")


def _check_switches(cfg: DictConfig, group: str, keys: Iterable[str]) -> None:
    for key in keys:
        value = _value(cfg, f"{group}.{key}")
        if value is not _MISSING and not isinstance(value, bool):
            raise OptionError(f"{group}.{key} must be true or false, got {value!r}")


def _check_cameras(cfg: DictConfig, key: str) -> None:
    cameras = _value(cfg, key)
    if cameras is _MISSING:
        return
    if (
        not isinstance(cameras, list)
        or not cameras
        or any(not _is_int(c) or c not in CAMERAS for c in cameras)
    ):
        raise OptionError(f"{key} must be a non-empty list of 4D-OR cameras in 1..6, got {cameras!r}")
