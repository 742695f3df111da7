"""Procedural OR renderer: the embedded default dataset, written in 4D-OR's own on-disk format.

``python -m or_synth.render`` (Hydra config ``configs/render/config.yaml``) writes ``datasets/synthetic_or``;
:func:`layout_masks` draws only the instance masks of any graph (a layout source for sampling).
Imports only :mod:`or_synth.data`.
"""

from or_synth.render.config import CONFIG_DIR, load_config
from or_synth.render.layout_masks import check_renderable, layout_masks
from or_synth.render.pipeline import (
    EMBEDDED_ROOT,
    RenderRefused,
    render,
    render_embedded_on_first_use,
    render_on_first_use,
)

__all__ = [
    "CONFIG_DIR",
    "EMBEDDED_ROOT",
    "RenderRefused",
    "check_renderable",
    "layout_masks",
    "load_config",
    "render",
    "render_embedded_on_first_use",
    "render_on_first_use",
]
