"""Where the renderer's Hydra configs are, and composing them without the command line (tests, scripts)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "render"


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The render config with command-line style overrides, e.g. ``["takes=3", "root=/tmp/x"]``.

    Works inside another Hydra app too (``python -m or_synth.train`` renders the embedded dataset on first
    use): that app's global Hydra state is set aside and restored.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    finally:
        restore_gh_from_backup(backup)
