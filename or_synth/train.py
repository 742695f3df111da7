"""Training entry point: ``python -m or_synth.train [stage=vae|align|ldm|layout|classifier] dataset=... experiment=...``.

A thin ``@hydra.main`` wrapper: the stages live in :mod:`or_synth.training` (one module each), and
:func:`train` runs the one named by ``stage`` or, by default, the whole recipe (vae, align, ldm). Runs on CPU,
one GPU, or several with ``accelerate launch -m or_synth.train ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from or_synth.training import STAGES, train
from or_synth.training.classifier import CLASSIFIER_DIR
from or_synth.training.common import TrainingInterrupted
from or_synth.training.layout import PREDICTOR_DIR
from or_synth.training.ldm import FINAL_GRID, PIPELINE_DIR

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")

__all__ = ["CONFIG_DIR", "STAGES", "main", "train"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except TrainingInterrupted as stopped:
        print(stopped, file=sys.stderr)
        sys.exit(130)
    if cfg.stage.name in ("all", "ldm"):
        run_dir = Path(cfg.ldm.run_dir)
        print(f"sample grid: {run_dir / FINAL_GRID}\npipeline: {run_dir / PIPELINE_DIR}")
    elif cfg.stage.name == "layout":
        print(f"layout predictor: {Path(cfg.layout.run_dir) / PREDICTOR_DIR}")
    elif cfg.stage.name == "classifier":
        print(f"relation classifier: {Path(cfg.classifier.run_dir) / CLASSIFIER_DIR}")


if __name__ == "__main__":
    main()
