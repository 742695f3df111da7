"""The two kinds of image sets the suite scores: real views of a dataset split, and generated images listed in a
``manifest.jsonl`` of ``or_synth.sample`` / ``or_synth.export``, read through the data layer's manifest reader
(:mod:`or_synth.data.manifest`; the suite never imports the generator).

One fixed preprocessing for both: decode the file (PNG for generated images, the dataset's JPEG for real ones; no
re-encoding anywhere), then, only when the size differs from the scoring size, torchvision's antialiased bilinear
resize (:func:`or_synth.data.read_image`, the data layer's own). :data:`PREPROCESSING` names it in every card.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2.functional import resize
from tqdm import tqdm

from or_synth.data import SPLIT_TAKES, load_scene_graphs, read_image, relationships_file
from or_synth.data.errors import UserError
from or_synth.data.images import frame_index
from or_synth.data.manifest import MANIFEST, ManifestError, ManifestLine
from or_synth.data.manifest import read_manifest as read_manifest_file
from or_synth.data.scene_graph import SceneGraphRecord

PREPROCESSING = (
    "decode (PIL, RGB uint8); resize only when the size differs: torchvision antialiased bilinear "
    "(or_synth.data.read_image); no lossy re-encoding"
)


class ImageSetError(UserError, ValueError):
    """A manifest or image set the suite cannot score; the message names the file, line and field."""


@dataclass
class ImageSet:
    """Images with the graph and camera each one shows.

    Attributes:
        images: (N, 3, H, W) uint8.
        records: the scene graph of each image (one object per distinct scan, shared by its views).
        cameras: (N,) camera ids 1..6.
        ids: a readable name per image (its file, relative to the set's root).
        source: where the set came from (a manifest path, or ``root:split``).
        settings: the manifest's sampling settings (pipeline hash, sampler, ...) or the split's description.
        layouts: per image, the layout label map it was drawn from (``or_synth.sample save_layouts=true``), or
            None where the manifest names none.
    """

    images: torch.Tensor
    records: list[SceneGraphRecord]
    cameras: torch.Tensor
    ids: list[str]
    source: str
    settings: dict
    layouts: list[str | None] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def takes(self) -> set[int]:
        return {r.take for r in self.records}

    def scan_groups(self) -> torch.Tensor:
        """(N,) an id per distinct (take, scan): views of one scan share it (per-scan scores average them)."""
        keys: dict[tuple[int, str], int] = {}
        return torch.tensor([keys.setdefault(r.key, len(keys)) for r in self.records])

    def subset(self, rows: Sequence[int]) -> ImageSet:
        rows = list(rows)
        return ImageSet(
            self.images[rows],
            [self.records[i] for i in rows],
            self.cameras[rows],
            [self.ids[i] for i in rows],
            self.source,
            self.settings,
            None if self.layouts is None else [self.layouts[i] for i in rows],
        )


def split_of_take(take: int) -> str | None:
    return next((split for split, takes in SPLIT_TAKES.items() if take in takes), None)


def load_real_views(
    root: str | Path,
    split: str,
    cameras: Sequence[int],
    size: int,
    *,
    limit: int | None = None,
    keys: Sequence[tuple[int, str]] | None = None,
    progress: bool = False,
) -> ImageSet:
    """Every camera view of the split's scans (or of ``keys``, in that order) at ``size`` px.

    ``limit`` keeps that many scans spread evenly over the split (the same ones every time).
    """
    root = Path(root)
    path = relationships_file(root, split)
    if path is None:
        raise FileNotFoundError(f"no relationships_{split}.json under {root}: not a 4D-OR-format dataset")
    records = load_scene_graphs(path, takes=SPLIT_TAKES.get(split)).records
    if keys is not None:
        by_key = {r.key: r for r in records}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise ImageSetError(
                f"{path}: has no scan {missing[0][0]}/{missing[0][1]} (and {len(missing) - 1} more) that the "
                "generated images show, so their real counterparts cannot be read"
            )
        records = [by_key[k] for k in keys]
    elif limit is not None and limit < len(records):
        rows = np.unique(np.linspace(0, len(records) - 1, limit).round().astype(int))
        records = [records[i] for i in rows]
    images, rows, cams, ids = [], [], [], []
    for record in tqdm(records, desc=f"real {split} images", disable=not progress, leave=False):
        index = frame_index(root, record.take)
        for camera in cameras:
            file = index.image_path(record.scan, camera)
            images.append(read_image(file, (size, size), take=record.take, scan=record.scan, camera=camera))
            rows.append(record)
            cams.append(int(camera))
            ids.append(str(file.relative_to(root)))
    if not images:
        raise ImageSetError(f"{path}: the {split} split has no scans to score")
    settings = {"dataset_root": str(root), "split": split, "cameras": list(cameras), "size": size}
    return ImageSet(torch.stack(images), rows, torch.tensor(cams), ids, f"{root}:{split}", settings)


def _graphs_for_manifest(
    manifest: Path, lines: list[ManifestLine]
) -> dict[tuple[int, str], SceneGraphRecord]:
    """The conditioning graph of every line, from the relationships files its lines name as ``graphs``."""
    files = set()
    for number, line in enumerate(lines, start=1):
        file = line.graphs_file(manifest.parent)
        if file is None:
            raise ImageSetError(
                f"{manifest}, line {number}: field 'graphs' is missing, so the graph the image was drawn from is "
                "unknown"
            )
        files.add(file)
    graphs: dict[tuple[int, str], SceneGraphRecord] = {}
    for file in sorted(files):
        if not file.is_file():
            raise ImageSetError(f"{manifest}: 'graphs' names {file}, which does not exist")
        graphs.update({r.key: r for r in load_scene_graphs(file)})
    return graphs


def _manifest_lines(path: str | Path) -> tuple[Path, list[ManifestLine]]:
    """The manifest file (a folder holding one is accepted) and its lines, older shapes converted."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise ImageSetError(
            f"no manifest at {path}: pass the manifest.jsonl written by or_synth.sample/export"
        )
    try:
        lines = read_manifest_file(path).lines
    except ManifestError as error:
        raise ImageSetError(str(error)) from None
    if not lines:
        raise ImageSetError(f"{path}: the manifest lists no images (an empty set cannot be scored)")
    return path, lines


def read_manifest(path: str | Path) -> list[dict]:
    """The lines of a ``manifest.jsonl`` (a folder holding one is accepted) in the current line shape
    (:class:`~or_synth.data.manifest.ManifestLine`, older shapes converted), with ``graphs`` resolved to an
    absolute path, so a line copied into another manifest still finds its graph; errors name the file, the line
    and the field."""
    path, lines = _manifest_lines(path)
    resolved = []
    for line in lines:
        graphs = line.graphs_file(path.parent)
        resolved.append({**line.to_json(), "graphs": str(graphs.resolve()) if graphs else None})
    return resolved


SCORE_AGAINST = ("image", "graph")


def load_generated(
    manifest: str | Path, *, size: int | None = None, progress: bool = False, against: str = "image"
) -> ImageSet:
    """The images a manifest lists, with the graphs they are scored against; all must exist and share one size.

    Args:
        against: ``image``: each image's own scan (whose layout it was drawn in); ``graph``: the scan whose graph
            was drawn, where a line names another (``graph_scan``, the conflict control). Scored against the
            drawn graph, an image's layout belongs to another scan, so its boxes are not the graph's
            (``layouts`` are left out).
    """
    if against not in SCORE_AGAINST:
        raise ImageSetError(f"score_against={against}: use one of {', '.join(SCORE_AGAINST)}")
    manifest, lines = _manifest_lines(manifest)
    root = manifest.parent
    missing = [line.image for line in lines if not (root / line.image).is_file()]
    if missing:
        raise ImageSetError(
            f"{manifest}: {len(missing)} listed image(s) are missing, e.g. {root / missing[0]}; re-run the "
            "sampling command (it resumes) or remove their lines"
        )
    graphs = _graphs_for_manifest(manifest, lines)
    images, records, cameras, ids, layouts, sizes = [], [], [], [], [], {}
    for number, line in enumerate(tqdm(lines, desc="generated images", disable=not progress, leave=False), 1):
        key = (line.take, line.scan)
        if against == "graph" and line.graph_scan:
            take, _, scan = line.graph_scan.partition("/")
            key = (int(take), scan)
        if key not in graphs:
            raise ImageSetError(
                f"{manifest}, line {number}: take {key[0]} scan {key[1]} is in no relationships file of the set"
            )
        image = read_image(root / line.image, take=key[0], scan=key[1])  # decoded once, at its own size
        sizes.setdefault((image.shape[-1], image.shape[-2]), line.image)
        if len(sizes) > 1:
            (a, first), (b, second) = list(sizes.items())[:2]
            raise ImageSetError(
                f"{manifest}: images of mixed sizes ({first} is {a[0]}x{a[1]}, {second} is {b[0]}x{b[1]}); "
                "score one size at a time"
            )
        if size and tuple(image.shape[-2:]) != (size, size):  # the one preprocessing (PREPROCESSING)
            image = resize(image, [size, size], antialias=True)
        images.append(image)
        records.append(graphs[key])
        cameras.append(line.camera)
        ids.append(line.image)
        own_layout = line.layout_image and not (against == "graph" and line.graph_scan)
        layouts.append(str(root / line.layout_image) if own_layout else None)
    settings = lines[0].settings()
    settings["score_against"] = against
    settings["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    return ImageSet(
        torch.stack(images), records, torch.tensor(cameras), ids, str(manifest), settings, layouts
    )


def load_real_counterparts(root: str | Path, generated: ImageSet) -> ImageSet:
    """The real image of every generated (scan, camera), at the generated size: the ceiling's input. The graphs
    must be the ones the images were generated from, else the ceiling would score something else."""
    root = Path(root)
    by_key: dict[tuple[int, str], SceneGraphRecord] = {}
    for split in sorted({split_of_take(t) for t in generated.takes} - {None}):
        path = relationships_file(root, split)
        if path is not None:
            by_key.update({r.key: r for r in load_scene_graphs(path, takes=SPLIT_TAKES[split])})
    images = []
    size = generated.size
    for record, camera in zip(generated.records, generated.cameras.tolist(), strict=True):
        real = by_key.get(record.key)
        if real is None:
            raise ImageSetError(
                f"dataset_root={root} has no scan take {record.take} / {record.scan}, so the ceiling (real images "
                "of the generated graphs) cannot be measured; point dataset_root at the dataset the graphs came from"
            )
        if sorted(real.triples) != sorted(record.triples) or real.object_names != record.object_names:
            raise ImageSetError(
                f"take {record.take} scan {record.scan}: the graph in {generated.source} differs from the one in "
                f"{root}; the real image does not show the generated image's graph"
            )
        file = frame_index(root, record.take).image_path(record.scan, camera)
        images.append(read_image(file, size, take=record.take, scan=record.scan, camera=camera))
    settings = {"dataset_root": str(root), "size": size[0], "counterparts_of": generated.source}
    ids = [
        f"real:{r.take}/{r.scan}/cam{c}"
        for r, c in zip(generated.records, generated.cameras.tolist(), strict=True)
    ]
    return ImageSet(
        torch.stack(images), list(generated.records), generated.cameras.clone(), ids, str(root), settings
    )


def dataset_fingerprint(root: str | Path, split: str) -> str:
    """A cheap content fingerprint of a split: its relationships file and the renderer's manifest (when there is
    one). Images are not hashed (thousands of files); a re-render changes the render manifest."""
    root = Path(root)
    digest = hashlib.sha256()
    for file in (relationships_file(root, split), root / "or_synth_render.json"):
        if file is not None and Path(file).is_file():
            digest.update(Path(file).read_bytes())
    return digest.hexdigest()[:16]
