"""The one check of the options that ``sample``, ``export`` and ``edit`` share, run before any file is read.

Each command's config holds a subset of the keys below; a key the config lacks is not checked. The layout option
is checked here as an option (:func:`or_synth.sampling.layouts.check_layout_option`); which source ``auto``
becomes depends on the pipeline (:func:`or_synth.sampling.layouts.resolve_layout`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from or_synth.data.io import check_output_folder
from or_synth.data.manifest import CONTROLS, LAYOUT_SOURCES
from or_synth.data.vocabulary import CAMERAS, PHASES, SPLIT_TAKES
from or_synth.generator import pipeline_hash
from or_synth.render.pipeline import RENDERER_VERSION
from or_synth.sampling.export_scans import check_rebalance
from or_synth.sampling.layouts import check_layout_option
from or_synth.sampling.seeds import Sampling

# Sampler names accepted on the command line -> the name the manifest records.
SAMPLERS = {
    "ddpm": "ddpm",
    "ddim": "ddim",
    "dpmsolver++": "dpmsolver++",
    "dpm-solver++": "dpmsolver++",
    "dpmsolver": "dpmsolver++",
}
# Counts that must be >= 1 wherever a command has them (limit may also be null: all graphs).
POSITIVE = ("samples_per_graph", "steps", "batch_size", "stride")
NON_NEGATIVE = ("dilation",)
FINITE = ("guidance_scale", "layout_guidance_scale")
# true/false options: ``overwrite=no`` must not be read as "yes" (any non-empty text is truthy in Python).
SWITCHES = ("overwrite", "progress", "save_layouts", "allow_eval_graphs")
JPEG_QUALITY = (1, 100)  # PIL's useful range; 0 is no quality at all, above 95 only grows the files


@dataclass(frozen=True)
class SamplingOptions:
    """The checked options: ``cameras`` de-duplicated in the order given, ``sampler`` its canonical name,
    ``layout`` the option as given (``auto`` until the pipeline resolves it)."""

    cameras: list[int]
    sampler: str
    sampling: Sampling
    seed: int
    layout: str
    device: torch.device
    control: str = "none"

    def drawing(self) -> dict:
        """The settings that decide how a job's images are drawn (the ``job`` record of edits and sequences)."""
        return {
            "cameras": list(self.cameras),
            "sampler": self.sampler,
            "steps": self.sampling.steps,
            "guidance_scale": self.sampling.guidance_scale,
            "layout_guidance_scale": self.sampling.layout_guidance_scale,
            "seed": self.seed,
        }

    def recorded(self, layout: str, pipeline_dir: Path, size: tuple[int, int], predictor=None) -> dict:
        """The job's fields of every manifest line but its graphs (:data:`or_synth.data.manifest.SETTINGS`),
        with ``layout`` the resolved source and ``predictor`` its folder (``layout=predicted``)."""
        return {
            "layout": LAYOUT_SOURCES[layout],
            "sampler": self.sampler,
            "steps": self.sampling.steps,
            "guidance_scale": self.sampling.guidance_scale,
            "layout_guidance_scale": self.sampling.layout_guidance_scale,
            "base_seed": self.seed,
            "pipeline": str(pipeline_dir),
            "pipeline_hash": pipeline_hash(pipeline_dir),
            "height": size[0],
            "width": size[1],
            # A new renderer may place graphs differently; another predictor draws other layouts.
            "layout_renderer": RENDERER_VERSION if layout == "render" else None,
            "layout_predictor": str(predictor) if layout == "predicted" else None,
            "layout_predictor_hash": pipeline_hash(predictor) if layout == "predicted" else None,
            "control": self.control,
        }


def check_options(cfg: DictConfig) -> SamplingOptions:
    """Every option check of the keys ``cfg`` has, before any file is read (but ``out``'s write probe and the
    predictor folder's listing) or any model is loaded.

    Raises:
        ValueError: the first bad option, named with what to give instead.
        FileNotFoundError: ``layout_predictor=`` names no predictor folder.
        NotADirectoryError / PermissionError: ``out=`` is a file, or nothing can be written there.
    """
    if not cfg.get("pipeline"):
        raise ValueError(
            "pipeline=DIR is required: a saved ORScenePipeline folder, or a shipped pipeline's name "
            "(e.g. pipeline=cpu_quality, from pretrained/)"
        )
    cameras = check_cameras(cfg.cameras)
    for key in POSITIVE:
        if key in cfg:
            whole_number(cfg[key], key, minimum=1)
    if cfg.get("limit") is not None:
        whole_number(cfg.limit, "limit", minimum=1, also="or null (all graphs)")
    for key in NON_NEGATIVE:
        if key in cfg:
            whole_number(cfg[key], key, minimum=0)
    for key in FINITE:
        finite_number(cfg[key], key)
    seed = whole_number(cfg.seed, "seed", minimum=0, why="it seeds the renderer's layouts and the cameras")
    if "jpeg_quality" in cfg:
        whole_number(cfg.jpeg_quality, "jpeg_quality", minimum=JPEG_QUALITY[0], maximum=JPEG_QUALITY[1])
    for key in SWITCHES:
        if key in cfg and not isinstance(cfg[key], bool):
            raise ValueError(f"{key} must be true or false, got {cfg[key]!r}")
    sampler = SAMPLERS.get(str(cfg.sampler))
    if sampler is None:
        raise ValueError(f"unknown sampler {cfg.sampler!r}; choose ddpm, ddim or dpmsolver++")
    check_layout_option(cfg)
    control = str(cfg.get("control", "none"))
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {control!r}")
    if control == "reconstruction" and cfg.layout not in ("auto", "none"):
        raise ValueError(
            "control=reconstruction passes each scan's real image through the autoencoder: it takes no layout "
            f"(leave layout= at auto or none), got layout={cfg.layout}"
        )
    if control == "conflict" and cfg.layout == "none":
        raise ValueError(
            "control=conflict draws one scan's layout under another scan's graph: it needs a layout"
        )
    if "rebalance" in cfg:
        check_rebalance(cfg.rebalance)
    if "scene_process" in cfg and str(cfg.get("graphs")) == "scene_process":
        check_scene_process(cfg.scene_process)
    device = check_device(cfg.device)
    if cfg.get("out") is None:
        raise ValueError("out=DIR is required: the folder the command writes into")
    check_output_folder(str(cfg.out), "out")
    sampling = Sampling(int(cfg.steps), float(cfg.guidance_scale), float(cfg.layout_guidance_scale))
    return SamplingOptions(cameras, sampler, sampling, seed, str(cfg.layout), device, control)


def whole_number(
    value, key: str, *, minimum: int, maximum: int | None = None, also: str = "", why: str = ""
) -> int:
    """``value`` of option ``key`` as an int in ``minimum..maximum`` (a float like ``2.0`` is fine, ``2.5`` and
    ``true`` are not)."""
    number = value
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    if maximum is not None and not minimum <= number <= maximum:
        raise ValueError(f"{key} must be in {minimum}..{maximum}, got {value}")
    if number < minimum:
        extra = f" {also}" if also else ""
        reason = f" ({why})" if why else ""
        raise ValueError(f"{key} must be >= {minimum}{extra}{reason}, got {value}")
    return number


def finite_number(value, key: str) -> float:
    """``value`` of option ``key`` as a finite float (NaN or infinity would draw black images)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise ValueError(f"{key} must be a finite number, got {value}")
    return float(value)


def check_device(value) -> torch.device:
    """``device=`` as a torch device this machine has."""
    try:
        device = torch.device(str(value))
    except RuntimeError:
        raise ValueError(f"device={value} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={value} but CUDA is not available; use device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"device={value}: the sampling commands run on cpu or cuda")
    return device


def check_scene_process(settings) -> None:
    """``scene_process.*`` (``graphs=scene_process``): training takes, enough scans per take for every phase,
    a seed >= 0 and a boost in 0..1."""
    takes = settings.takes
    if isinstance(takes, str) or not isinstance(takes, Sequence):
        takes = None
    if not takes:
        raise ValueError(f"scene_process.takes must be a list of training takes, got {settings.takes!r}")
    for take in takes:
        whole_number(take, "scene_process.takes", minimum=1)
        if take not in SPLIT_TAKES["train"]:
            raise ValueError(
                f"scene_process.takes: take {take} is not a 4D-OR training take {SPLIT_TAKES['train']}"
            )
    whole_number(settings.scans_per_take, "scene_process.scans_per_take", minimum=len(PHASES),
                 why="one scan per surgery phase at least")  # fmt: skip
    whole_number(settings.seed, "scene_process.seed", minimum=0)
    boost = finite_number(settings.rare_action_boost, "scene_process.rare_action_boost")
    if not 0.0 <= boost <= 1.0:
        raise ValueError(f"scene_process.rare_action_boost must be in 0..1, got {boost}")


def check_cameras(value) -> list[int]:
    """``cameras=`` as a list of 4D-OR camera ids (1..6), de-duplicated in the order given."""
    raw = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    cameras: list[int] = []
    for camera in raw:
        if isinstance(camera, bool) or not isinstance(camera, int) or camera not in CAMERAS:
            raise ValueError(f"camera {camera!r} is not a 4D-OR camera; cameras must be in 1..6")
        if camera not in cameras:
            cameras.append(camera)
    if not cameras:
        raise ValueError("cameras is empty; give at least one camera in 1..6, e.g. cameras=[1]")
    return cameras
