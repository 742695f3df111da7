"""The "no model" control of the evidence protocol: a mask painter.

The renderer draws every predicate into its instance masks (action poses, a tool's pixels labelled as the
person holding it), so a generator conditioned on those masks can score well by copying the layout alone. The
painter makes that visible: it fills each node's mask with the mean training colour of the node's label (a
person's role, an object's class) on the mean background colour, and nothing else. Sampled and scored like a
generator (``python -m or_synth.sample pipeline=painter ...``), it says how much graph consistency the layout
carries without any model: where the painter reaches the generator's score, the layout, not the generator,
carries the metric (``docs/evaluation.md``).

The colours are fitted once on the REAL training images of a rendered dataset (images and instance masks of the
training takes) and saved as ``painter.json`` (a component that saves its own config, like a pipeline folder).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from or_synth.data import SPLIT_TAKES, load_scene_graphs, relationships_file
from or_synth.data.annotations import read_instance_mask
from or_synth.data.errors import DatasetFormatError
from or_synth.data.images import frame_index
from or_synth.data.io import atomic_write_json
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import CAMERAS

PAINTER_FILE = "painter.json"
FORMAT = "or_synth.painter/1"
BACKGROUND = "background"


def node_label(record: SceneGraphRecord, node: int) -> str:
    """A person's clinical role, an object's class: what the painter colours by (as the scorer names nodes)."""
    role = record.roles[node]
    return record.object_names[node] if role == "not-a-person" else role


@dataclass
class MaskPainter:
    """Mean training colour (RGB 0..255) per node label, and of the background.

    Attributes:
        colours: label -> [r, g, b].
        source: what it was fitted on (dataset, split, cameras, size, pixel counts).
    """

    colours: dict[str, list[float]]
    source: dict

    @property
    def digest(self) -> str:
        """A hash that names this painter in manifests and cards (as a pipeline hash does)."""
        text = json.dumps({"colours": self.colours, "source": self.source}, sort_keys=True)
        return "painter-" + hashlib.sha256(text.encode()).hexdigest()[:8]

    @classmethod
    def fit(
        cls,
        root: str | Path,
        *,
        split: str = "train",
        cameras: Sequence[int] = CAMERAS,
        size: tuple[int, int] | None = None,
        max_scans: int | None = None,
        progress: bool = False,
    ) -> MaskPainter:
        """The mean colour of each label's pixels over the split's real images (at ``size``, nearest-resized
        masks: the size the painter will paint at)."""
        root = Path(root)
        path = relationships_file(root, split)
        if path is None:
            raise DatasetFormatError(
                f"no relationships_{split}.json: the painter fits on a rendered dataset", file=root
            )
        records = load_scene_graphs(path, takes=SPLIT_TAKES.get(split)).records
        if max_scans is not None and max_scans < len(records):
            records = [records[i] for i in np.linspace(0, len(records) - 1, max_scans).round().astype(int)]
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for record in tqdm(records, desc="painter: fit", disable=not progress, leave=False):
            index = frame_index(root, record.take)
            names = [BACKGROUND, *(node_label(record, k) for k in range(record.num_nodes))]
            for camera in cameras:
                frame = index.frame_id(record.scan, camera)
                image = Image.open(index.image_path(record.scan, camera)).convert("RGB")
                mask = Image.fromarray(read_instance_mask(root, record.take, camera, frame))
                if size is not None:
                    image = image.resize(size[::-1], Image.Resampling.BILINEAR)
                    mask = mask.resize(size[::-1], Image.Resampling.NEAREST)
                pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
                labels = np.asarray(mask).reshape(-1).astype(np.int64)
                labels[labels > record.num_nodes] = 0  # clutter belongs to no node: background
                for value in np.unique(labels):
                    chosen = labels == value
                    name = names[int(value)]
                    sums[name] = sums.get(name, np.zeros(3)) + pixels[chosen].sum(0)
                    counts[name] = counts.get(name, 0) + int(chosen.sum())
        colours = {name: [round(float(v), 2) for v in sums[name] / counts[name]] for name in sorted(sums)}
        source = {
            "dataset": str(root),
            "split": split,
            "cameras": list(cameras),
            "size": list(size) if size else None,
            "scans": len(records),
            "pixels": {name: counts[name] for name in sorted(counts)},
        }
        return cls(colours, source)

    def paint(self, record: SceneGraphRecord, mask: np.ndarray | torch.Tensor) -> Image.Image:
        """(H, W) label map (node index + 1) -> the painted RGB image."""
        labels = np.asarray(mask).astype(np.int64)
        background = self.colours.get(BACKGROUND, [0.0, 0.0, 0.0])
        table = [background] + [
            self.colours.get(node_label(record, k), background) for k in range(record.num_nodes)
        ]
        palette = np.asarray(table, dtype=np.float64)
        labels = np.where((labels >= 0) & (labels < len(palette)), labels, 0)
        return Image.fromarray(palette[labels].round().clip(0, 255).astype(np.uint8))

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        atomic_write_json(
            folder / PAINTER_FILE,
            {"format": FORMAT, "colours": self.colours, "source": self.source},
            indent=2,
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> MaskPainter:
        path = Path(folder) / PAINTER_FILE
        try:
            document = json.loads(path.read_text())
            if document.get("format") != FORMAT:
                raise ValueError(f"format {document.get('format')!r}, expected {FORMAT}")
            return cls(dict(document["colours"]), dict(document["source"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DatasetFormatError(f"not a mask painter ({error})", file=path) from None


# --- pipeline=painter: sampled like a generator --------------------------------------------------------------
def fitted_painter(cfg, data_root: Path, size: tuple[int, int], progress: bool) -> MaskPainter:
    """The painter of ``data_root``'s training split at ``size``: loaded from ``painter.dir`` when fitted there
    before on the same dataset and size, else fitted now and kept there. ``painter.palette=distinct`` needs no
    fit: one distinct colour per label of the training split (the mask-only probe's label maps)."""
    if str(cfg.get("palette", "fitted")) == "distinct":
        return distinct_painter(training_labels(data_root))
    folder = (
        Path(cfg.dir)
        if cfg.get("dir")
        else data_root / "processed" / "or_synth_painter" / f"{size[0]}x{size[1]}"
    )
    if (folder / PAINTER_FILE).is_file():
        painter = MaskPainter.load(folder)
        if painter.source.get("size") == list(size) and painter.source.get("dataset") == str(data_root):
            return painter
    painter = MaskPainter.fit(data_root, size=size, max_scans=cfg.get("max_scans"), progress=progress)
    painter.save(folder)
    return painter


def prepare_painter(cfg, options, records: Sequence[SceneGraphRecord], source: Path, data_root: Path):
    """The sample plan of ``pipeline=painter``: each (scan, camera)'s layout painted (one image: the painter
    draws no noise, so ``samples_per_graph`` is 1), written and listed exactly as a generator's samples."""
    from or_synth.render.pipeline import RENDERER_VERSION
    from or_synth.sampling.layouts import GivenMasks, RenderedLayouts, check_renderable_graphs
    from or_synth.sampling.plan import finish_plan, graphs_fields
    from or_synth.sampling.seeds import plan_items

    size = tuple(int(v) for v in cfg.painter.size)
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"painter.size must be [H, W] of at least 8 pixels, got {list(cfg.painter.size)}")
    if str(cfg.painter.get("palette", "fitted")) not in ("fitted", "distinct"):
        raise ValueError(f"painter.palette must be fitted or distinct, got {cfg.painter.palette!r}")
    layout = "render" if options.layout == "auto" else options.layout
    if layout not in ("masks", "render"):
        raise ValueError(
            f"pipeline=painter paints a layout: layout=masks or layout=render, got layout={layout}"
        )
    if options.control != "none":
        raise ValueError("pipeline=painter draws no graph: control= applies to a generator")
    items = plan_items(records, options.cameras, 1, options.seed)
    if layout == "masks":
        layouts = GivenMasks(data_root, size, records)
        layouts.check(items)
    else:
        check_renderable_graphs(records, source)
        layouts = RenderedLayouts(records, options.cameras, size, options.seed, source)
    painter = fitted_painter(cfg.painter, Path(data_root), size, bool(cfg.progress))
    settings = {
        **graphs_fields(source),
        "layout": {"masks": "given", "render": "rendered"}[layout],
        "sampler": "painter",
        "steps": 0,
        "guidance_scale": 1.0,
        "layout_guidance_scale": 1.0,
        "base_seed": options.seed,
        "pipeline": PAINTER_PIPELINE,
        "pipeline_hash": painter.digest,
        "height": size[0],
        "width": size[1],
        "layout_renderer": RENDERER_VERSION if layout == "render" else None,
        "layout_predictor": None,
        "layout_predictor_hash": None,
        "control": "none",
    }

    def draw(batch, masks):
        return [painter.paint(records[item.graph], mask) for item, mask in zip(batch, masks, strict=True)]

    return finish_plan(cfg, draw, items, settings, layouts)


PAINTER_PIPELINE = "painter (mask painter: each node's mask in its label's mean training colour; no model)"


# --- the mask-only probe's dataset ----------------------------------------------------------------------------
def training_labels(root: str | Path) -> list[str]:
    """Every node label (role or object class) of a dataset's training split, sorted: the distinct palette's keys,
    so the probe's training images and its test images get the same colour per label."""
    path = relationships_file(root, "train")
    if path is None:
        raise DatasetFormatError(
            "no relationships_train.json: the labels come from the training split", file=root
        )
    records = load_scene_graphs(path, takes=SPLIT_TAKES.get("train")).records
    return sorted({node_label(r, k) for r in records for k in range(r.num_nodes)})


def distinct_painter(labels: Sequence[str]) -> MaskPainter:
    """A painter with one clearly distinct colour per label (hues spaced by the golden ratio) on black: the label
    map itself as an image, for the mask-only probe (a classifier trained on label maps alone)."""
    import colorsys

    colours = {BACKGROUND: [0.0, 0.0, 0.0]}
    for i, label in enumerate(sorted(labels)):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618_034) % 1.0, 0.9 if i % 2 else 0.6, 1.0 if i % 3 else 0.75)
        colours[label] = [round(255 * r, 2), round(255 * g, 2), round(255 * b, 2)]
    return MaskPainter(colours, {"palette": "distinct (golden-ratio hues)", "labels": sorted(labels)})


def write_painted_dataset(
    root: str | Path, out: str | Path, painter: MaskPainter | None = None, *, progress: bool = False
) -> Path:
    """A copy of the rendered dataset at ``root`` whose colour images are its own instance masks painted by
    ``painter``: every other file (graphs, frame lists, masks, boxes, calibration, phases) is copied as it is, so
    ``python -m or_synth.train stage=classifier dataset.root=OUT`` trains the relation classifier on label maps
    alone and its ``quality.json`` says, per held-out split, what the layout carries without any pixel. The
    painter defaults to the distinct palette of the training labels (as ``painter.palette=distinct`` samples).
    Resumes: images already written are kept."""
    import shutil

    root, out = Path(root), Path(out)
    painter = painter or distinct_painter(training_labels(root))
    if not (out / "relationships_train.json").is_file():
        shutil.copytree(
            root, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("colorimage", "processed", "*.tmp")
        )
    from or_synth.data.images import color_image_path

    for split in ("train", "validation", "test"):
        path = relationships_file(root, split)
        if path is None:
            continue
        records = load_scene_graphs(path, takes=SPLIT_TAKES.get(split)).records
        for record in tqdm(records, desc=f"paint {split}", disable=not progress, leave=False):
            index = frame_index(root, record.take)
            for camera in CAMERAS:
                frame = index.frame_id(record.scan, camera)
                target = color_image_path(out, record.take, camera, frame)
                if target.is_file():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                painted = painter.paint(record, read_instance_mask(root, record.take, camera, frame))
                tmp = target.with_name(f".{target.name}.tmp")
                painted.save(tmp, format="JPEG", quality=95, subsampling=0)  # 4:4:4: crisp label edges
                tmp.replace(target)
    return out
