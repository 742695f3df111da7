"""Training stages, one module each (``vae``, ``align``, ``ldm``, ``layout``, ``classifier``), and the machinery they
share, one module per concern: ``batches`` (datasets, the batch and random numbers of a step), ``devices`` (device,
precision, Accelerate), ``checkpoints`` (step folders, exact resume, the fallback past a damaged one, atomic saves),
``logs`` (TensorBoard, ``train_log.jsonl``, ``metrics.json``), ``loop`` (the steps and their shared tail: log,
sample, checkpoint, stop on request), ``options`` (every option checked before any work) and ``record`` (what a run
was started with, and the check that a resume continues the same computation); ``sample_grid`` draws stage
``ldm``'s grids.

``python -m or_synth.train`` composes the config and dispatches here; :func:`train` is what tests call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from omegaconf import DictConfig

from or_synth.training import align, classifier, layout, ldm, vae
from or_synth.training.batches import ensure_rendered
from or_synth.training.devices import process_state
from or_synth.training.loop import TrainingInterrupted, TrainingLoop
from or_synth.training.options import check_options, check_trainer_options
from or_synth.training.record import open_run

__all__ = ["COMPLETE", "RECIPE", "STAGES", "TrainingInterrupted", "TrainingLoop", "train"]

log = logging.getLogger(__name__)


def align_on_main_process(cfg: DictConfig) -> dict:
    """Stage ``align`` keeps its own single-device loop (a small model trained for minutes). Under a multi-process
    launch (``accelerate launch`` / ``torchrun``) the main process runs it and the others wait at a barrier, so
    no two processes write the same run folder; the later stages then find its encoder on every rank."""
    return _on_main_process(align.train_align, "align", cfg)


def layout_on_main_process(cfg: DictConfig) -> dict:
    """Stage ``layout`` is a small single-device loop too: run on the main process, as ``align`` is."""
    return _on_main_process(layout.train_layout, "layout", cfg)


def classifier_on_main_process(cfg: DictConfig) -> dict:
    """Stage ``classifier`` (the evaluation suite's scorer) is a single-device loop too."""
    return _on_main_process(classifier.train_classifier, "classifier", cfg)


def _on_main_process(train_stage: Callable[[DictConfig], dict], stage: str, cfg: DictConfig) -> dict:
    state = process_state(cfg.trainer)
    if state.is_main_process:
        result = train_stage(cfg)
    else:
        result = {"run_dir": str(cfg[stage].run_dir), "ran_on": "main process"}
    state.wait_for_everyone()
    return result


STAGES: dict[str, Callable[[DictConfig], dict]] = {
    "vae": vae.train_vae,
    "align": align_on_main_process,
    "ldm": ldm.train_ldm,
    "layout": layout_on_main_process,
    "classifier": classifier_on_main_process,
}
COMPLETE: dict[str, Callable[[DictConfig], bool]] = {
    "vae": vae.is_complete,
    "align": align.is_complete,
    "ldm": ldm.is_complete,
    "layout": layout.is_complete,
    "classifier": classifier.is_complete,
}
# What `stage=all` runs. The layout predictor and the relation classifier are stages of their own (only sampling with layout=predicted needs it),
# so the default recipe stays vae, align, ldm.
RECIPE = ("vae", "align", "ldm")


def train(cfg: DictConfig) -> dict:
    """Run the stage named by ``cfg.stage.name``; ``all`` runs the recipe (vae, align, ldm) and skips stages
    whose result is complete (a partly trained one resumes).

    Before any work (no data read, nothing rendered, no run folder written) the options of every stage it will
    run are checked, and so is every resume against its run's record: a bad ``ldm`` option, or an ``ldm`` resume
    under another learning rate, is refused before ``vae`` trains.

    Returns:
        The stage's result; for ``all``, ``{stage: result}`` (``{"skipped": True}`` for complete stages).
    """
    name = cfg.stage.name
    if name != "all" and name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; available: all, {', '.join(STAGES)}")
    check_trainer_options(cfg)
    state = process_state(cfg.trainer)
    stages = RECIPE if name == "all" else (name,)
    check_options(cfg, stages, world=state.num_processes)
    skipped = {s for s in stages if name == "all" and cfg.trainer.resume and COMPLETE[s](cfg)}
    for stage in stages:
        if stage not in skipped:
            open_run(cfg, stage)  # reads only: refuses a resume under a changed configuration
    # Under a multi-process launch only the main process renders the embedded dataset; the others wait for it.
    if state.is_main_process:
        ensure_rendered(cfg.dataset)
    state.wait_for_everyone()
    if name == "all":
        results = {}
        for stage in RECIPE:
            if stage in skipped:
                log.info("stage %s is complete in %s: skipped", stage, cfg[stage].run_dir)
                results[stage] = {"skipped": True, "run_dir": str(cfg[stage].run_dir)}
                continue
            results[stage] = _timed(stage, cfg)
        return results
    return _timed(name, cfg)


def _timed(name: str, cfg: DictConfig) -> dict:
    started = time.perf_counter()
    result = STAGES[name](cfg)
    result["seconds"] = round(time.perf_counter() - started, 1)
    log.info("stage %s finished in %.1f s", name, result["seconds"])
    return result
