"""The 4D-OR dataset (and anything written in its format, such as ``datasets/synthetic_or``) for PyG.

Follows PyG's dataset contract: raw files under ``root`` (the relationships JSON of the split), a processed
cache written once by :meth:`FourDORDataset.process`, and :meth:`FourDORDataset.download` that explains how
to obtain the gated data instead of downloading it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch_geometric.data import Data, InMemoryDataset

from or_synth.data.errors import DatasetFormatError, DatasetMissing
from or_synth.data.images import ResizedImageCache, frame_index, read_image
from or_synth.data.io import atomic_write_json
from or_synth.data.phases import PhaseTable
from or_synth.data.scene_graph import SceneGraphRecord, load_scene_graphs, records_to_data
from or_synth.data.vocabulary import CAMERAS, SPLIT_TAKES, Vocabulary, canonical_split

log = logging.getLogger(__name__)

# Bump when process() changes what it writes: the processed folder name carries it, so an old cache is
# never read by new code.
SCHEMA_VERSION = 1

DOWNLOAD_INSTRUCTIONS = """\
4D-OR is gated: request access with the form on the 4D-OR project page
(https://github.com/egeozsoy/4D-OR, section "Dataset"), then unpack it so that {root} looks like:

  {root}/
    relationships_train.json, relationships_validation.json, relationships_test.json
        (from the 4D-OR code repository's data/ folder; root/data/ works too)
    phases/phase_to_frames_{{take}}.json          (optional: surgery phases)
    export_holistic_take{{N}}_processed/          N = 1..10
      colorimage/camera0{{c}}_colorimage-{{id}}.jpg
      timestamp_to_pcd_and_frames_list.json

Without the download, use the embedded synthetic OR dataset instead, which has the same layout: training
renders it on first use when dataset= is left at its default (or given as dataset=synthetic_or):
  python -m or_synth.train
and python -m or_synth.render renders it on its own (datasets/synthetic_or).
"""


def relationships_file(root: str | Path, split: str) -> Path | None:
    """``relationships_{split}.json`` in ``root`` or ``root/data`` (4D-OR's code-repo layout), or None."""
    root = Path(root)
    for folder in (root, root / "data"):
        path = folder / f"relationships_{canonical_split(split)}.json"
        if path.is_file():
            return path
    return None


class FourDORDataset(InMemoryDataset):
    """Scene graphs (and optionally multi-view images) of one 4D-OR split as PyG ``Data``.

    Args:
        root: dataset root (see :data:`DOWNLOAD_INSTRUCTIONS` for the tree).
        split: ``train``, ``validation`` (or ``val``) or ``test``; takes 1,3,5,7,9,10 / 4,8 / 2,6.
        takes: override the split's takes (for datasets with other take numbers).
        cameras: camera ids (1..6) whose images are loaded.
        image_size: ``(H, W)`` or an int for square images; None keeps the stored size.
        load_images: attach ``images`` (1, V, 3, H, W) uint8 to each graph, read lazily in ``get``.
        dense: add the all-pairs ``dense_edge_index`` / ``dense_edge_label`` (4D-OR protocol).
        strict: raise on bad scans (default) or skip and report them in :attr:`skipped`.
        processed_root: where the processed cache goes (default ``root/processed``); use it when the
            dataset root is read-only.
        image_cache: keep the images resized to ``image_size`` under ``processed_root/images`` (true), read the
            sources every time (false), or cache when the stored images are at least 4x the size asked for
            ("auto": real 4D-OR's 2048 x 1536 JPEGs, not the small rendered datasets).
        transform, pre_transform, force_reload: as in PyG.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        takes: Sequence[int] | None = None,
        cameras: Sequence[int] = CAMERAS,
        image_size: int | Sequence[int] | None = None,
        load_images: bool = False,
        dense: bool = False,
        strict: bool = True,
        processed_root: str | Path | None = None,
        image_cache: bool | str = "auto",
        transform=None,
        pre_transform=None,
        force_reload: bool = False,
    ) -> None:
        self.split = canonical_split(split)
        self.takes = tuple(takes) if takes is not None else SPLIT_TAKES[self.split]
        self.cameras = tuple(int(c) for c in cameras)
        bad = [c for c in self.cameras if c not in CAMERAS]
        if bad:
            raise ValueError(f"cameras must be in {CAMERAS}, got {bad}")
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.load_images = load_images
        self.dense = dense
        self.strict = strict
        self.dataset_root = Path(root)
        self._processed_root = Path(processed_root) if processed_root else self.dataset_root / "processed"
        if image_cache not in (True, False, "auto"):
            raise ValueError(f"image_cache must be true, false or auto, got {image_cache!r}")
        self.image_cache = image_cache
        self._resized: ResizedImageCache | None | bool = None  # decided on the first read (auto)
        self.vocabulary = Vocabulary.load(root)
        self.annotation_file = relationships_file(root, self.split)
        if self.annotation_file is None:
            self.download()
        self._cache_key = self._fingerprint(pre_transform)
        super().__init__(str(root), transform, pre_transform, force_reload=force_reload)
        self.load(self.processed_paths[0])
        report = json.loads(Path(self.processed_paths[1]).read_text())
        self.skipped: list[dict] = report["skipped"]
        self.keys: list[tuple[int, str]] = [tuple(k) for k in report["keys"]]

    # --- PyG dataset contract -------------------------------------------------------------------------
    @property
    def raw_dir(self) -> str:
        return str(self.annotation_file.parent)

    @property
    def raw_file_names(self) -> list[str]:
        return [self.annotation_file.name]

    @property
    def processed_dir(self) -> str:
        return str(self._processed_root / f"or_synth_v{SCHEMA_VERSION}")

    @property
    def processed_file_names(self) -> list[str]:
        stem = f"{self.split}_{self._cache_key}"
        return [f"{stem}.pt", f"{stem}.report.json"]

    def download(self) -> None:
        raise DatasetMissing(
            f"no relationships_{self.split}.json under {self.dataset_root}.\n"
            + DOWNLOAD_INSTRUCTIONS.format(root=self.dataset_root)
        )

    def process(self) -> None:
        scene_graphs = load_scene_graphs(self.annotation_file, self.vocabulary, strict=self.strict)
        skipped = [error.as_dict() for error in scene_graphs.skipped]
        records = []
        for record in scene_graphs.records:
            try:
                self._check_record(record)
            except DatasetFormatError as error:
                if self.strict:
                    raise
                skipped.append(error.as_dict())
                continue
            records.append(record)
        phases = PhaseTable.load(self.dataset_root)
        data_list = records_to_data(records, self.vocabulary, phases=phases, dense=self.dense)
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        if not data_list:
            raise DatasetFormatError(
                f"no usable scans for takes {self.takes} ({len(skipped)} skipped)", file=self.annotation_file
            )
        self.save(data_list, self.processed_paths[0])
        report = {"file": str(self.annotation_file), "keys": [r.key for r in records], "skipped": skipped}
        atomic_write_json(self.processed_paths[1], report)
        if skipped:
            log.warning(
                "%s: skipped %d scan(s): see %s", self.annotation_file, len(skipped), self.processed_paths[1]
            )

    def _check_record(self, record: SceneGraphRecord) -> None:
        if record.take not in self.takes:
            raise DatasetFormatError(
                f"take {record.take} is not in the {self.split} split (takes {self.takes})",
                file=self.annotation_file,
                take=record.take,
                scan=record.scan,
                field="take_idx",
            )
        if self.load_images:
            # Resolve every image now, so a missing frame or file fails (or is skipped) before training.
            index = frame_index(self.dataset_root, record.take)
            for camera in self.cameras:
                path = index.image_path(record.scan, camera)
                if not path.is_file():
                    raise DatasetFormatError(
                        "image file is missing",
                        file=path,
                        take=record.take,
                        scan=record.scan,
                        field=f"color_{camera}",
                    )

    def _fingerprint(self, pre_transform) -> str:
        """Key of everything process() depends on, so a changed input or option never reads a stale cache."""
        stat = self.annotation_file.stat()
        phase_files = PhaseTable.load(self.dataset_root).files
        parts = [
            str(self.annotation_file.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            self.takes,
            self.dense,
            self.strict,
            self.vocabulary,
            self.load_images and self.cameras,
            sorted((t, p.stat().st_mtime_ns) for t, p in phase_files.items()),
            pre_transform and repr(pre_transform),
        ]
        return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]

    # --- access ---------------------------------------------------------------------------------------
    # PyG's get separates one graph per call and caches it in _data_list; here the first read of _data_list
    # separates every graph at once (:func:`separate_all`), so loading the cache stays cheap and the first pass
    # costs one split per attribute. PyG resets it (None) whenever the storage changes; the next read redoes it.
    @property
    def _data_list(self) -> list[Data] | None:
        graphs = self.__dict__.get("_graph_list")
        if graphs is None and getattr(self, "_data", None) is not None and getattr(self, "slices", None):
            graphs = self.__dict__["_graph_list"] = separate_all(self._data, self.slices)
        return graphs

    @_data_list.setter
    def _data_list(self, value: list[Data] | None) -> None:
        self.__dict__["_graph_list"] = value

    def len(self) -> int:
        # PyG recounts from the slices on every call (twice per get).
        graphs = self.__dict__.get("_graph_list")
        return len(graphs) if graphs is not None else super().len()

    def get(self, idx: int) -> Data:
        data = super().get(idx)
        if self.load_images:
            data.images = self.read_images(int(data.take), data.scan).unsqueeze(0)  # (1, V, 3, H, W)
            data.cameras = torch.tensor([self.cameras])
        return data

    def image_paths(self, take: int, scan: str) -> list[Path]:
        """The colour image of each configured camera for one scan."""
        index = frame_index(self.dataset_root, take)
        return [index.image_path(scan, camera) for camera in self.cameras]

    def read_images(self, take: int, scan: str) -> torch.Tensor:
        """(V, 3, H, W) uint8 images of the configured cameras."""
        paths = self.image_paths(take, scan)
        cache = self._image_cache(paths[0])
        read = cache.read if cache else read_image
        return torch.stack(
            [
                read(path, self.image_size, take=take, scan=scan, camera=camera)
                for path, camera in zip(paths, self.cameras, strict=True)
            ]
        )

    def _image_cache(self, probe: Path) -> ResizedImageCache | None:
        if self._resized is None:
            wanted = self.image_size is not None and self.image_cache is not False
            if wanted and self.image_cache == "auto":
                try:
                    with Image.open(probe) as handle:
                        wanted = (
                            min(handle.width / self.image_size[1], handle.height / self.image_size[0]) >= 4
                        )
                except OSError:
                    wanted = False  # the read itself reports the file
            self._resized = ResizedImageCache(self._processed_root / "images") if wanted else False
        return self._resized or None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)}, split={self.split}, root={self.dataset_root})"


def separate_all(store: Data, slices: dict | None) -> list[Data] | None:
    """Every graph of a collated ``InMemoryDataset`` storage at once.

    PyG's ``get`` separates one graph per call (``torch_geometric.data.separate``), which made a first full pass
    over the processed cache about 2x slower than parsing the JSON naively (``benchmarks/loader.py``).
    ``InMemoryDataset.collate`` stores attributes without increments, so each graph is a plain slice of every
    attribute: one ``torch.split`` per attribute. Served as ``_data_list``, PyG's ``get`` returns copies of these;
    the test suite checks them against ``separate`` attribute by attribute.
    """
    if not slices:  # one graph (PyG stores it uncollated) or none: PyG's get serves it as it is
        return None
    count = len(next(iter(slices.values()))) - 1
    columns = {}
    for key, bounds in slices.items():
        value, bounds = store[key], bounds.tolist()
        if torch.is_tensor(value):
            sizes = [end - start for start, end in zip(bounds, bounds[1:], strict=False)]
            columns[key] = torch.split(value, sizes, dim=store.__cat_dim__(key, value))
        else:  # lists (the scan ids): one item per graph
            columns[key] = [value[start] if end - start == 1 else value[start:end]
                            for start, end in zip(bounds, bounds[1:], strict=False)]  # fmt: skip
    num_nodes = store._store._num_nodes
    graphs = []
    for i in range(count):
        graph = Data()
        # Straight into the storage: Data(**attributes) validates each attribute, most of this function's cost.
        graph._store._mapping.update({key: column[i] for key, column in columns.items()})
        graph.num_nodes = num_nodes[i]
        graphs.append(graph)
    return graphs
