"""Training entry point: ``python -m or_synth.train [stage=vae|align|ldm|layout|classifier] dataset=... experiment=...``.

A thin wrapper: the stages live in :mod:`or_synth.training` (one module each), and :func:`train` runs the one
named by ``stage`` or, by default, the whole recipe (vae, align, ldm). Runs on CPU, one GPU, or several with
``accelerate launch -m or_synth.train ...``. User errors end with one line and exit 2; a run stopped on request
(Ctrl-C) saves a checkpoint and exits 130 (:mod:`or_synth.cli`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from or_synth.cli import CONFIG_DIR, command
from or_synth.data.errors import UserError
from or_synth.encoders.towers import PretrainedWeightsError
from or_synth.training import STAGES, train
from or_synth.training.classifier import CLASSIFIER_DIR
from or_synth.training.layout import PREDICTOR_DIR
from or_synth.training.ldm import FINAL_GRID, PIPELINE_DIR

__all__ = ["CONFIG_DIR", "STAGES", "main", "train"]


class WeightsUnavailable(UserError, RuntimeError):
    """Pretrained weights a config asks for that cannot be loaded here (no hub access, a missing file)."""


@command("train")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except PretrainedWeightsError as error:  # its message says which key and what to do instead
        raise WeightsUnavailable(str(error)) from error
    if cfg.stage.name in ("all", "ldm"):
        run_dir = Path(cfg.ldm.run_dir)
        print(f"sample grid: {run_dir / FINAL_GRID}\npipeline: {run_dir / PIPELINE_DIR}")
    elif cfg.stage.name == "layout":
        print(f"layout predictor: {Path(cfg.layout.run_dir) / PREDICTOR_DIR}")
    elif cfg.stage.name == "classifier":
        print(f"relation classifier: {Path(cfg.classifier.run_dir) / CLASSIFIER_DIR}")


if __name__ == "__main__":
    main()
