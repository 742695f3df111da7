"""Stage ``ldm``'s sample grid: fixed validation graphs drawn by the run's pipeline (and, in the final grid, by a
reference pipeline) beside the real renders, with each graph as text (``ldm.sample``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from or_synth.data.views import ViewSet
from or_synth.generator.pipeline import ORScenePipeline, make_scheduler
from or_synth.generator.shipped import resolve_pipeline
from or_synth.reports.grids import describe_graph, sample_grid, save_image_atomic

GridItems = list[tuple[int, list[int]]]


def grid_items(sample_cfg: DictConfig, views: ViewSet) -> GridItems:
    """Fixed validation graphs (``sample_cfg.graphs``, evenly spaced) and, for each, its rows of the views in
    ``sample_cfg.cameras`` (its first view when it has none of them)."""
    count = min(sample_cfg.graphs, len(views.graphs))
    picks = np.linspace(0, len(views.graphs) - 1, count).round().astype(int).tolist()
    items = []
    for g in picks:
        rows = [
            int(r)
            for r in (views.graph_index == g).nonzero().flatten()
            if int(views.cameras[r]) in sample_cfg.cameras
        ]
        items.append((g, rows or [int((views.graph_index == g).nonzero()[0])]))
    return items


def reference_pipeline(sample_cfg: DictConfig) -> tuple[ORScenePipeline, str] | None:
    """``sample_cfg.reference_pipeline`` (a folder or a shipped name) and its column label, for the final grid:
    what a longer recipe draws from the same graphs, beside this run's images."""
    spec = sample_cfg.get("reference_pipeline")
    if not spec:
        return None
    folder = resolve_pipeline(spec)
    manifest = folder / "shipped.json"
    label = f"{folder.name}"
    if manifest.is_file():
        notes = json.loads(manifest.read_text())
        seconds = notes.get("train_wall_seconds")
        label = f"shipped {notes['name']}" + (f" ({seconds / 3600:.1f} h CPU)" if seconds else "")
    return ORScenePipeline.from_pretrained(folder), label


@torch.no_grad()
def write_grid(
    pipeline: ORScenePipeline,
    sample_cfg: DictConfig,
    seed: int,
    items: GridItems,
    views: ViewSet,
    path: Path,
    label: str = "generated",
    reference: tuple[ORScenePipeline, str] | None = None,
) -> Image.Image:
    """Each graph as text beside its generated views (and a reference pipeline's) and the real renders; saved at
    ``path`` and returned."""
    rows_flat = [r for _, rows in items for r in rows]
    groups, labels = [_draw(pipeline, sample_cfg, seed, rows_flat, views)], [label]
    if reference is not None:
        other, other_label = reference
        if other.image_size != pipeline.image_size:
            raise ValueError(
                f"ldm.sample.reference_pipeline draws {other.image_size} images, this run {pipeline.image_size}"
            )
        groups.append(_draw(other, sample_cfg, seed, rows_flat, views))
        labels.append(other_label)
    grid_rows, k = [], 0
    for g, rows in items:
        real = [Image.fromarray(views.images[r].permute(1, 2, 0).numpy()) for r in rows]
        cams = ", ".join(str(int(views.cameras[r])) for r in rows)
        lines = [f"take {int(views.graphs[g].take)} scan {views.graphs[g].scan}, cameras {cams}"]
        grid_rows.append(
            ([*lines, *describe_graph(views.graphs[g])], *(im[k : k + len(rows)] for im in groups), real)
        )
        k += len(rows)
    grid = sample_grid(grid_rows, labels=[*labels, "real render"])
    save_image_atomic(grid, path)
    return grid


def _draw(pipeline: ORScenePipeline, sample_cfg: DictConfig, seed: int, rows_flat: list[int], views: ViewSet):
    """The grid's images of ``pipeline``: the same validation graph-views and per-image seeds for every model."""
    pipeline.scheduler = make_scheduler(sample_cfg.sampler, pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    graphs = [views.graphs[int(views.graph_index[r])] for r in rows_flat]
    masks = views.masks[rows_flat] if pipeline.has_layout_input and views.masks is not None else None
    return pipeline(
        graphs,
        views.cameras[rows_flat].tolist(),
        masks=masks,
        num_inference_steps=sample_cfg.steps,
        guidance_scale=sample_cfg.guidance_scale,
        layout_guidance_scale=sample_cfg.layout_guidance_scale,
        generator=[torch.Generator().manual_seed(seed * 1000 + i) for i in range(len(rows_flat))],
    ).images
