"""Pair-level relations: which predicates hold between a subject box and an object box of one image.

Scene-graph work scores relations per (subject, object) pair where boxes exist ("predicate classification":
boxes and labels given, the predicate asked). Here boxes exist

- on real images of a rendered dataset: the renderer's per-camera node boxes (``or_synth_annotations/``);
- on generated images drawn from a layout: the dataset's own boxes for ``layout=masks`` (manifest
  ``"layout": "given"``), or the label maps ``or_synth.sample save_layouts=true`` writes beside the images
  (manifest ``"layout_image"``), whose per-node bounding boxes are the boxes the generator was asked to fill;
  or the annotations an ``or_synth.generate`` export drawn from masks writes beside its images.
  :func:`generated_pairs` picks the source for a generated set, or says why there is none.

Real 4D-OR has no 2D boxes, and images sampled without a layout have none either: there the suite scores
relations per image only. A :class:`PairSet` lists every ordered pair of distinct nodes both visible in an
image (boxes of at least :data:`MIN_BOX_SIDE` of the image on each side); its targets are the predicates the
graph states from subject to object (several can hold at once: multi-label).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from or_synth.data import PREDICATES
from or_synth.data.annotations import annotation_path, node_boxes, read_scan_annotation
from or_synth.data.errors import DatasetFormatError
from or_synth.data.images import frame_index
from or_synth.data.layout_maps import RealLayouts
from or_synth.data.panoptic import has_panoptic
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.evaluation.image_sets import ImageSet
from or_synth.evaluation.relation_classifier import RelationClassifier, node_label, role_typed_triples

MIN_BOX_SIDE = 0.03  # normalised: about 2 px at 64 px; a smaller box holds nothing a classifier can read
RENDER_MANIFEST = "or_synth_render.json"
# or_synth.export's record of an export (named here: the suite never imports the sampling layer).
EXPORT_MANIFEST = "or_synth_export.json"

# A manifest's "layout" for images drawn without one: absent (the manifest's one line shape), none (older exports).
NO_LAYOUT = (None, "none", "absent")

Boxes = dict[int, tuple[float, float, float, float]]  # node index -> normalised (x0, y0, x1, y1)


@dataclass
class PairSet:
    """The (subject, object) pairs of the images of an :class:`~or_synth.evaluation.image_sets.ImageSet`.

    Attributes:
        image_index: (P,) the image (row of the set) each pair is in; ascending.
        subject, object: (P,) node indices in that image's graph.
        subject_box, object_box: (P, 4) normalised ``(x0, y0, x1, y1)``.
        source: where the boxes came from, in words (a dataset's annotations, saved layout label maps).
    """

    image_index: torch.Tensor
    subject: torch.Tensor
    object: torch.Tensor
    subject_box: torch.Tensor
    object_box: torch.Tensor
    source: str

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    def in_images(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs that lie in the images ``rows`` (a batch): their indices, and the batch position of the
        image each one is in."""
        ptr = torch.searchsorted(self.image_index, torch.arange(int(rows.max()) + 2 if len(rows) else 1))
        indices, positions = [], []
        for position, row in enumerate(rows.tolist()):
            start, end = int(ptr[row]), int(ptr[row + 1])
            indices.append(torch.arange(start, end))
            positions.append(torch.full((end - start,), position, dtype=torch.long))
        if not indices:
            return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
        return torch.cat(indices), torch.cat(positions)

    def _rows(self):
        """(image, subject, object) of every pair, as Python ints."""
        return zip(self.image_index.tolist(), self.subject.tolist(), self.object.tolist(), strict=True)

    def labels(self, records: Sequence[SceneGraphRecord]) -> tuple[list[str], list[str]]:
        """The subject's and object's label (role for people, class otherwise) of every pair."""
        subjects, objects = [], []
        for i, s, o in self._rows():
            subjects.append(node_label(records[i], s))
            objects.append(node_label(records[i], o))
        return subjects, objects

    def targets(
        self, records: Sequence[SceneGraphRecord], donors: Sequence[SceneGraphRecord] | None = None
    ) -> torch.Tensor:
        """(P, 14) multi-hot predicates from subject to object in each image's graph.

        With ``donors`` (a graph per image), the predicates that the donor graph states between nodes of the
        same two labels instead: the shuffled-graph floor, which asks the image to show another scan's relations.
        """
        out = torch.zeros(len(self), len(PREDICATES))
        facts: dict[int, set[str]] = {}  # the role-typed triples of each donor, read once
        for row, (i, s, o) in enumerate(self._rows()):
            record = records[i]
            if donors is None:
                for ts, to, p in record.triples:
                    if (ts, to) == (s, o):
                        out[row, PREDICATES.index(p)] = 1.0
                continue
            donor = donors[i]
            if id(donor) not in facts:
                facts[id(donor)] = role_typed_triples(donor)
            subject, obj = node_label(record, s), node_label(record, o)
            for p in PREDICATES:
                if f"{subject} {p} {obj}" in facts[id(donor)]:
                    out[row, PREDICATES.index(p)] = 1.0
        return out

    def groups(self, records: Sequence[SceneGraphRecord]) -> torch.Tensor:
        """(P,) an id per (scan, subject, object): the views of one pair share it (per-scan scores)."""
        keys: dict[tuple, int] = {}
        return torch.tensor(
            [keys.setdefault((records[i].key, s, o), len(keys)) for i, s, o in self._rows()], dtype=torch.long
        )


def build_pairs(boxes_per_image: Sequence[Boxes | None], source: str) -> PairSet:
    """Every ordered pair of distinct nodes both visible (large enough) in each image; ``None``: no boxes."""
    image_index, subject, obj, subject_box, object_box = [], [], [], [], []
    for i, boxes in enumerate(boxes_per_image):
        if not boxes:
            continue
        nodes = sorted(
            k for k, (x0, y0, x1, y1) in boxes.items() if x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE
        )
        for s in nodes:
            for o in nodes:
                if s != o:
                    image_index.append(i)
                    subject.append(s)
                    obj.append(o)
                    subject_box.append(boxes[s])
                    object_box.append(boxes[o])
    return PairSet(
        torch.tensor(image_index, dtype=torch.long),
        torch.tensor(subject, dtype=torch.long),
        torch.tensor(obj, dtype=torch.long),
        torch.tensor(subject_box, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(object_box, dtype=torch.float32).reshape(-1, 4),
        source,
    )


def rendered_size(root: str | Path) -> tuple[int, int]:
    """(H, W) the renderer drew a dataset at, from its ``or_synth_render.json``: annotation boxes are in those
    pixels."""
    path = Path(root) / RENDER_MANIFEST
    try:
        height, width = json.loads(path.read_text(encoding="utf-8"))["config"]["image_size"]
    except FileNotFoundError:
        raise DatasetFormatError(
            "no render manifest: only a rendered dataset has 2D boxes (real 4D-OR has none)", file=path
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(
            f"malformed render manifest ({exc})", file=path, field="config.image_size"
        ) from None
    return int(height), int(width)


def rendered_extras(root: str | Path) -> bool:
    """Is ``root`` a rendered dataset with the renderer's per-node boxes (``or_synth_annotations/``; not a
    stand-in in the real format, whose boxes, as real 4D-OR's, come from its panoptic maps)?"""
    path = Path(root) / RENDER_MANIFEST
    if not path.is_file():
        return False
    try:
        return not json.loads(path.read_text(encoding="utf-8"))["config"].get("real_format", False)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return True  # malformed: rendered_size says so, naming the file


def has_boxes(root: str | Path) -> bool:
    """Does the dataset carry per-node 2D boxes: a rendered dataset's ``or_synth_annotations/``, or real 4D-OR's
    panoptic maps (MM-OR), boxed per node (:mod:`or_synth.data.layout_maps`)?"""
    if rendered_extras(root):
        return True
    return any(has_panoptic(root, int(d.name.removeprefix("export_holistic_take").removesuffix("_processed")))
               for d in Path(root).glob("export_holistic_take*_processed"))  # fmt: skip


def annotation_boxes(
    root: str | Path,
    records: Sequence[SceneGraphRecord],
    cameras: Sequence[int],
    size: tuple[int, int] | None = None,
) -> list[Boxes]:
    """The node boxes of every (graph, camera) view in ``or_synth_annotations/``, normalised by ``size`` (H, W)
    (default: the size the renderer drew at); one annotation file read per scan.

    Raises:
        DatasetFormatError: a scan's annotation is missing or malformed, or lacks the camera (naming the file).
    """
    first = records[0] if records else None
    if (
        first is not None
        and not annotation_path(root, first.take, first.scan).is_file()
        and has_panoptic(root, first.take)
    ):
        return layout_boxes(
            root, records, cameras
        )  # real 4D-OR (or its stand-in): boxes off the panoptic maps
    height, width = size or rendered_size(root)
    cache: dict[tuple[int, str], object] = {}
    out = []
    for record, camera in zip(records, cameras, strict=True):
        if record.key not in cache:
            cache[record.key] = read_scan_annotation(root, record.take, record.scan)
        view = cache[record.key].views.get(int(camera))
        if view is None:
            raise DatasetFormatError(
                f"no annotation of camera {camera}",
                file=annotation_path(root, record.take, record.scan),
                take=record.take,
                scan=record.scan,
                field="cameras",
            )
        out.append(
            {
                node: (x0 / width, y0 / height, x1 / width, y1 / height)
                for node, (x0, y0, x1, y1) in view.boxes.items()
                if node < len(record.object_names)
            }
        )
    return out


def layout_boxes(
    root: str | Path, records: Sequence[SceneGraphRecord], cameras: Sequence[int]
) -> list[Boxes | None]:
    """Real 4D-OR's node boxes of every (graph, camera) view: each node's box in the view's layout (panoptic map,
    or projected 3D poses for people where a camera has none), normalised by the map's size; None for a view
    without a layout (its pairs are not scored)."""
    real = RealLayouts(Path(root))
    out: list[Boxes | None] = []
    for record, camera in zip(records, cameras, strict=True):
        frame = frame_index(Path(root), record.take).frame_id(record.scan, int(camera))
        labels = real.view_of(
            record.take, record.scan, list(record.object_names), list(record.roles), int(camera), frame
        )
        if labels is None:
            out.append(None)
            continue
        out.append(normalised_boxes(labels, len(record.object_names)))
    return out


def annotated_pairs(
    root: str | Path, images: ImageSet, source: str, size: tuple[int, int] | None = None
) -> PairSet:
    """The pairs of ``images`` in the node boxes ``root``'s ``or_synth_annotations/`` give their views."""
    return build_pairs(annotation_boxes(root, images.records, images.cameras.tolist(), size), source)


def label_map_boxes(path: str | Path, num_nodes: int) -> Boxes:
    """The normalised bounding box of every node in a layout label map (pixel value = node index + 1, as the
    renderer's ``instance_masks/`` and ``or_synth.sample save_layouts=true`` write them)."""
    try:
        with Image.open(path) as image:
            labels = np.asarray(image.convert("L"))
    except FileNotFoundError:
        raise DatasetFormatError("layout label map is missing", file=path) from None
    return normalised_boxes(labels, num_nodes)


def normalised_boxes(labels: np.ndarray, num_nodes: int) -> Boxes:
    """Node index -> the box of its pixels in a label map (node index + 1), normalised by the map's size."""
    height, width = labels.shape
    boxes, _ = node_boxes(labels, num_nodes)
    return {
        int(k) - 1: (x0 / width, y0 / height, x1 / width, y1 / height)
        for k, (x0, y0, x1, y1) in boxes.items()
    }


def generated_pairs(
    root: Path, generated: ImageSet, classifier: RelationClassifier
) -> tuple[PairSet | None, str | None]:
    """The (subject, object) pairs of the generated images, boxed by the layout each was drawn from, or
    ``(None, why)`` where pairs cannot be scored: no pair head, no boxes for the real images (the ceiling), or
    none for the generated ones."""
    if not classifier.has_pair_head:
        return None, (
            "the relation classifier has no pair-level head (trained without boxes, or before it existed); "
            "retrain it on a rendered dataset: python -m or_synth.train stage=classifier"
        )
    if not has_boxes(root):
        return None, f"dataset_root={root} has no boxes for the real images (the ceiling)"
    if generated.settings.get("control") == "conflict" and generated.settings.get("score_against") == "graph":
        return (
            None,
            "scored against the drawn graph, a conflict image's layout (and boxes) belong to another scan",
        )
    if generated.layouts and all(generated.layouts):
        boxes = [
            label_map_boxes(path, len(r.object_names))
            for path, r in zip(generated.layouts, generated.records, strict=True)
        ]
        return build_pairs(boxes, "layout label maps saved with the samples (layout_image)"), None
    export = Path(generated.source).parent
    if (export / EXPORT_MANIFEST).is_file() and generated.settings.get("layout") not in NO_LAYOUT:
        # An or_synth.generate export keeps the masks that conditioned each image, boxed in its annotations.
        source = f"{export} annotations (the masks each exported image was drawn from)"
        return annotated_pairs(export, generated, source, generated.size), None
    if generated.settings.get("layout") == "given":
        source = f"{root} annotations (the masks the samples were drawn from, layout=masks)"
        return annotated_pairs(root, generated, source), None
    return None, (
        f"the samples were drawn without a saved layout (manifest layout {generated.settings.get('layout')!r}, no "
        "layout_image), so there are no boxes; sample with layout=masks, or save_layouts=true"
    )
