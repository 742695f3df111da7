"""The layout predictor as a layout source (``layout=predicted``): its folder check, its loading beside a
pipeline, and its label maps of one graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch_geometric.data import Data

from or_synth.generator import ORScenePipeline
from or_synth.generator.layout_predictor import LayoutPredictor, check_vocabulary
from or_synth.sampling.pipelines import check_model_files


def check_predictor_folder(path) -> Path:
    """``layout_predictor=`` names a saved predictor folder (checked before any model is loaded)."""
    if not path:
        raise ValueError(
            "layout=predicted needs layout_predictor=DIR: a trained layout predictor folder, e.g. "
            "runs/layout/<name>/predictor from `python -m or_synth.train stage=layout`"
        )
    folder = Path(str(path))
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        what = "does not exist" if not folder.exists() else "holds no config.json + safetensors weights"
        raise FileNotFoundError(
            f"layout_predictor={folder} {what}: point it at a layout predictor folder "
            "(runs/layout/<name>/predictor, written by `python -m or_synth.train stage=layout`)"
        )
    return folder


def load_layout_predictor(path, pipe: ORScenePipeline, pipeline_dir: str | Path) -> LayoutPredictor:
    """The trained layout predictor folder ``path`` (``runs/layout/<name>/predictor``), on the pipeline's device.

    Raises:
        ValueError: ``path`` is not set, or the predictor was trained with another vocabulary than the
            pipeline's graph encoder (graph ids would name other labels).
        FileNotFoundError: no predictor folder there (config.json + safetensors weights).
    """
    folder = check_predictor_folder(path)
    check_model_files(folder, "layout_predictor")
    predictor = LayoutPredictor.from_pretrained(folder)
    check_vocabulary(predictor, pipe.graph_encoder.encoder.config, f"the pipeline {pipeline_dir}")
    return predictor.to(pipe.device).eval()


def predict_layouts(
    predictor: LayoutPredictor, graph: Data, cameras: Sequence[int], size: tuple[int, int]
) -> torch.Tensor:
    """(V, H, W) uint8 label maps of one graph in ``cameras``, one forward pass per camera (batch-independent)."""
    return torch.cat([predictor.label_maps([graph], [int(camera)], size) for camera in cameras])
