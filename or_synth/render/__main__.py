"""``python -m or_synth.render [preset=gpu] [root=DIR takes=N scans_per_take=M seed=S] [from_json=PATH]``.

A thin wrapper around :func:`or_synth.render.render` (options: ``configs/render/config.yaml``); user errors end
with one line and exit 2 (:mod:`or_synth.cli`).
"""

from __future__ import annotations

from omegaconf import DictConfig

from or_synth.cli import command
from or_synth.render.config import CONFIG_DIR
from or_synth.render.pipeline import render


@command("config", config_dir=CONFIG_DIR)
def main(cfg: DictConfig) -> None:
    render(cfg)


if __name__ == "__main__":
    main()
