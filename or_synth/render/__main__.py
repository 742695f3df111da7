"""``python -m or_synth.render [preset=gpu] [root=DIR takes=N scans_per_take=M seed=S] [from_json=PATH]``."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from or_synth.data.errors import DatasetFormatError
from or_synth.render.config import CONFIG_DIR
from or_synth.render.pipeline import RenderRefused, render


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        render(cfg)
    except (RenderRefused, DatasetFormatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
