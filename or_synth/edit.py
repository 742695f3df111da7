"""Graph edits entry point: ``python -m or_synth.edit pipeline=... graphs=... scan=TAKE/SCAN edit="..."``.

Applies one edit (:mod:`or_synth.data.edits`) to one scan's graph and draws, per camera, the before image and
the after image with the same seed: with a layout only the edited region is regenerated (latent inpainting,
:mod:`or_synth.generator.editing`), without one the whole image. Writes into ``out/<take>_<scan>_<edit>/``:
``before_cam{c}.png``, ``after_cam{c}.png``, ``full_cam{c}.png`` (the after graph regenerated everywhere),
``mask_cam{c}.png`` (the edit region, white), ``graphs.json`` (both graphs in 4D-OR's scan form) and
``edit.json`` (the edit, seeds, settings, and per camera how much outside the region changed: MSE and SSIM for
the inpainted and the fully regenerated image), and ``pair.png``: before, after, edit mask and full regeneration
side by side for every camera.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from or_synth.data import DatasetFormatError, load_scene_graphs
from or_synth.data.annotations import read_instance_mask
from or_synth.data.edits import EditResult, GraphEditError, apply_edit
from or_synth.data.images import frame_index
from or_synth.data.io import atomic_path, atomic_write_json
from or_synth.data.scene_graph import SceneGraphRecord, record_to_data
from or_synth.data.vocabulary import Vocabulary
from or_synth.generator import make_scheduler, pipeline_hash
from or_synth.generator.editing import kept_region_change, regenerate, renumber_mask
from or_synth.generator.layout_predictor import LayoutPredictor
from or_synth.generator.shipped import resolve_pipeline
from or_synth.render import layout_masks
from or_synth.reports.grids import sample_grid, save_image_atomic
from or_synth.sample import (
    check_predictor_folder,
    encoder_vocabulary,
    item_seed,
    load_layout_predictor,
    load_pipeline,
    predict_layouts,
    resolve_graphs,
)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
LAYOUTS = ("render", "masks", "predicted", "none")


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="edit", overrides=list(overrides))


def find_scan(records: Sequence[SceneGraphRecord], scan: str, source: Path) -> SceneGraphRecord:
    """``TAKE/SCAN`` or a scan id that one take has."""
    take, _, scan_id = str(scan).rpartition("/")
    matches = [r for r in records if r.scan == scan_id.zfill(6) and (not take or r.take == int(take))]
    if len(matches) != 1:
        what = "no scan" if not matches else f"scan {scan_id} in takes {sorted(r.take for r in matches)}"
        raise DatasetFormatError(f"scan={scan}: {what}; give it as TAKE/SCAN (e.g. 4/000057)", file=source)
    return matches[0]


def label_maps(
    layout: str,
    result: EditResult,
    root: Path,
    cameras: list[int],
    size: tuple[int, int],
    seed: int,
    source: Path,
    *,
    predictor: LayoutPredictor | None = None,
    vocabulary: Vocabulary | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]] | None:
    """Before and after label maps per camera, or None for layout=none.

    With layout=predicted each graph gets its own prediction (``vocabulary``: the pipeline encoder's, which the
    predictor shares); the edit changes the node tokens of the edited nodes' neighbours too, so boxes near the
    edit may move and the regenerated region grows accordingly.
    """
    if layout == "none":
        return None
    if layout == "predicted":
        before, after = (
            predict_layouts(predictor, record_to_data(record, vocabulary), cameras, size).numpy()
            for record in (result.before, result.after)
        )
        return dict(zip(cameras, before, strict=True)), dict(zip(cameras, after, strict=True))
    if layout == "render":
        before = layout_masks(result.before, cameras, size, seed, file=source)
        after = layout_masks(result.after, cameras, size, seed, file=source)
        return dict(zip(cameras, before, strict=True)), dict(zip(cameras, after, strict=True))
    before_maps, after_maps = {}, {}
    record = result.before
    for camera in cameras:
        frame = frame_index(root, record.take).frame_id(record.scan, camera)
        mask = Image.fromarray(read_instance_mask(root, record.take, camera, frame))
        before_maps[camera] = np.asarray(mask.resize(size[::-1], Image.Resampling.NEAREST))
        after_maps[camera] = renumber_mask(before_maps[camera], result)
    return before_maps, after_maps


def edit(cfg: DictConfig) -> dict:
    """Run the configured edit; returns the ``edit.json`` content (with ``folder``)."""
    if not cfg.get("pipeline") or not cfg.get("edit") or not cfg.get("scan"):
        raise ValueError('pipeline=, scan=TAKE/SCAN and edit="..." are required')
    if cfg.layout not in LAYOUTS:
        raise ValueError(f"layout={cfg.layout}: use one of {', '.join(LAYOUTS)}")
    if cfg.layout == "predicted":
        check_predictor_folder(cfg.get("layout_predictor"))
    elif cfg.get("layout_predictor"):
        raise ValueError(f"layout_predictor is set but layout={cfg.layout}; add layout=predicted to use it")
    cameras = [int(c) for c in (cfg.cameras if isinstance(cfg.cameras, Sequence) else [cfg.cameras])]
    if not cameras or any(c not in range(1, 7) for c in cameras):
        raise ValueError(f"cameras={list(cameras)}: camera ids are 1..6")
    source, root = resolve_graphs(cfg.graphs, cfg.dataset_root)
    record = find_scan(load_scene_graphs(source, Vocabulary.load(root)).records, str(cfg.scan), source)
    result = apply_edit(record, str(cfg.edit))
    folder_path = resolve_pipeline(cfg.pipeline)
    pipe = load_pipeline(folder_path, progress=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler(cfg.sampler, pipe.scheduler.config)
    pipe.to(torch.device(str(cfg.device)))
    layout = cfg.layout if pipe.has_layout_input else "none"
    predictor = None
    if layout == "predicted":
        predictor = load_layout_predictor(cfg.layout_predictor, pipe, folder_path)
    maps = label_maps(
        layout, result, root, cameras, pipe.image_size, int(cfg.seed), source,
        predictor=predictor, vocabulary=encoder_vocabulary(pipe),
    )  # fmt: skip
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", str(cfg.edit)).strip("_")
    out = Path(cfg.out) / f"{record.take}_{record.scan}_{slug}"
    out.mkdir(parents=True, exist_ok=True)
    sampling = {
        "num_inference_steps": int(cfg.steps),
        "guidance_scale": float(cfg.guidance_scale),
        "layout_guidance_scale": float(cfg.layout_guidance_scale),
    }
    views, columns = {}, {"before": [], "after (edited region)": [], "edit mask": [], "full regeneration": []}
    for camera in cameras:
        seed = item_seed(int(cfg.seed), record.take, record.scan, camera, 0)
        before_mask, after_mask = (None, None) if maps is None else (maps[0][camera], maps[1][camera])
        images = regenerate(
            pipe, result, camera, seed, before_mask=before_mask, after_mask=after_mask,
            dilation=int(cfg.dilation), vocabulary=encoder_vocabulary(pipe), **sampling,
        )  # fmt: skip
        for name, image in (("before", images.before), ("after", images.after), ("full", images.full)):
            _save(out / f"{name}_cam{camera}.png", image)
        entry = {"seed": seed, "regenerated": "edited region" if images.region is not None else "whole image"}
        if images.region is not None:
            _save_mask(out / f"mask_cam{camera}.png", images.region)
            entry["inpainted"] = kept_region_change(images.before, images.after, images.region)
            entry["full_regeneration"] = kept_region_change(images.before, images.full, images.region)
        views[str(camera)] = entry
        region = images.region if images.region is not None else np.ones(images.before.shape[-2:], bool)
        for column, picture in zip(
            columns.values(), (images.before, images.after, region, images.full), strict=True
        ):
            column.append(_picture(picture))
    lines = [str(cfg.edit), f"take {record.take} scan {record.scan}, cameras {', '.join(map(str, cameras))}"]
    save_image_atomic(sample_grid([(lines, *columns.values())], labels=list(columns)), out / "pair.png")
    vocabulary = Vocabulary.load(root)
    atomic_write_json(
        out / "graphs.json",
        {"before": result.before.to_json(vocabulary), "after": result.after.to_json(vocabulary)},
        indent=2,
    )
    summary = {
        "edit": str(cfg.edit),
        "changed_nodes": sorted(result.changed_nodes),
        "take": record.take,
        "scan": record.scan,
        "graphs": str(source),
        "pipeline": str(folder_path),
        "pipeline_hash": pipeline_hash(folder_path),
        "layout": layout,
        "settings": OmegaConf.to_container(cfg, resolve=True),
        "cameras": views,
    }
    atomic_write_json(out / "edit.json", summary, indent=2)
    print(f"edit: before/after pairs in {out}")
    return {**summary, "folder": str(out)}


def _picture(image: torch.Tensor | np.ndarray) -> Image.Image:
    """A (3, H, W) float image in [0, 1], or an (H, W) bool mask, as a PIL image."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image.astype(np.uint8) * 255)
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8))


def _save(path: Path, image: torch.Tensor) -> None:
    array = (image.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _save_mask(path: Path, region: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(region.astype(np.uint8) * 255).save(tmp, format="PNG")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="edit")
def main(cfg: DictConfig) -> None:
    try:
        edit(cfg)
    except (DatasetFormatError, GraphEditError, FileNotFoundError, ValueError) as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
