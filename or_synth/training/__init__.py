"""Training stages, one module each (``vae``, ``align``, ``ldm``), and the machinery they share (``common``).

``python -m or_synth.train`` composes the config and dispatches here; :func:`train` is what tests call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from omegaconf import DictConfig

from or_synth.training import align, ldm, vae
from or_synth.training.common import ensure_rendered

log = logging.getLogger(__name__)

STAGES: dict[str, Callable[[DictConfig], dict]] = {
    "vae": vae.train_vae,
    "align": align.train_align,
    "ldm": ldm.train_ldm,
}
COMPLETE: dict[str, Callable[[DictConfig], bool]] = {
    "vae": vae.is_complete,
    "align": align.is_complete,
    "ldm": ldm.is_complete,
}
RECIPE = ("vae", "align", "ldm")


def train(cfg: DictConfig) -> dict:
    """Run the stage named by ``cfg.stage.name``; ``all`` runs the recipe (vae, align, ldm) and skips stages
    whose result is complete (a partly trained one resumes).

    Returns:
        The stage's result; for ``all``, ``{stage: result}`` (``{"skipped": True}`` for complete stages).
    """
    name = cfg.stage.name
    ensure_rendered(cfg.dataset)
    if name == "all":
        results = {}
        for stage in RECIPE:
            if cfg.trainer.resume and COMPLETE[stage](cfg):
                log.info("stage %s is complete in %s: skipped", stage, cfg[stage].run_dir)
                results[stage] = {"skipped": True, "run_dir": str(cfg[stage].run_dir)}
                continue
            results[stage] = _timed(stage, cfg)
        return results
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; available: all, {', '.join(STAGES)}")
    return _timed(name, cfg)


def _timed(name: str, cfg: DictConfig) -> dict:
    started = time.perf_counter()
    result = STAGES[name](cfg)
    result["seconds"] = round(time.perf_counter() - started, 1)
    log.info("stage %s finished in %.1f s", name, result["seconds"])
    return result
