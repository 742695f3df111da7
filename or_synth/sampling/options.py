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

from or_synth.data.manifest import LAYOUT_SOURCES
from or_synth.data.vocabulary import CAMERAS
from or_synth.generator import pipeline_hash
from or_synth.render.pipeline import RENDERER_VERSION
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
# Counts that must be >= 1 wherever a command has them.
POSITIVE = ("samples_per_graph", "steps", "batch_size", "stride")
FINITE = ("guidance_scale", "layout_guidance_scale")


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
        }


def check_options(cfg: DictConfig) -> SamplingOptions:
    """Plain option checks (no files read) of the keys ``cfg`` has.

    Raises:
        ValueError: the first bad option, named with what to give instead.
        FileNotFoundError: ``layout_predictor=`` names no predictor folder.
    """
    if not cfg.get("pipeline"):
        raise ValueError(
            "pipeline=DIR is required: a saved ORScenePipeline folder, or a shipped pipeline's name "
            "(e.g. pipeline=cpu_quality, from pretrained/)"
        )
    cameras = check_cameras(cfg.cameras)
    for key in POSITIVE:
        if key in cfg and int(cfg[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]}")
    if cfg.get("limit") is not None and int(cfg.limit) < 1:
        raise ValueError(f"limit must be >= 1 or null (all graphs), got {cfg.limit}")
    for key in FINITE:
        if not math.isfinite(float(cfg[key])):
            raise ValueError(f"{key} must be a finite number, got {cfg[key]}")
    if int(cfg.seed) < 0:
        raise ValueError(
            f"seed must be >= 0 (it seeds the renderer's layouts and the cameras), got {cfg.seed}"
        )
    sampler = SAMPLERS.get(str(cfg.sampler))
    if sampler is None:
        raise ValueError(f"unknown sampler {cfg.sampler!r}; choose ddpm, ddim or dpmsolver++")
    check_layout_option(cfg)
    device = torch.device(str(cfg.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device} but CUDA is not available; use device=cpu")
    sampling = Sampling(int(cfg.steps), float(cfg.guidance_scale), float(cfg.layout_guidance_scale))
    return SamplingOptions(cameras, sampler, sampling, int(cfg.seed), str(cfg.layout), device)


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
