"""The relation classifier that scores generated images: image + camera view -> the relations present.

A torchvision ResNet-18 (random init: no machine here reaches a model hub, and a scorer must never have seen
generated images) with a learned camera-view embedding added to its pooled features, and two multi-label heads:

- predicates: which of 4D-OR's 14 predicates the scan's graph contains;
- role-typed triples: which ``subject Predicate object`` facts it contains, with people named by their
  clinical role (``head-surgeon Drilling Patient``) and objects by their class; the triple vocabulary is every
  triple seen at least ``min_count`` times in the training graphs;
- pair-level predicates, where boxes exist (:mod:`or_synth.evaluation.pairs`): for a subject box and an object
  box of the image and their labels, which predicates hold from one to the other. RoIAlign
  (``torchvision.ops.roi_align``) pools the backbone's stride-8 and stride-16 feature maps in the subject, object
  and union boxes; a small MLP reads them with the two labels' embeddings. The boxes' coordinates are NOT an
  input: a generated image's boxes come from the layout it was drawn from, which already encodes the graph, so
  only what the pixels inside the boxes show may decide the answer.

Its pooled 512-d features are also the offline feature space of the second Fréchet distance and of the
memorisation search. It is trained on real images only (``python -m or_synth.train stage=classifier``), saved
as ``config.json`` + ``model.safetensors`` + ``quality.json`` (its own scores on real held-out takes), and
pinned by :func:`classifier_hash` in every metric card.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import resnet18
from torchvision.ops import roi_align

from or_synth.data import CAMERAS, PREDICATES
from or_synth.data.io import atomic_path, atomic_write_json
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import NOT_A_PERSON

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
QUALITY = "quality.json"
ROI_SIZE = 2  # RoIAlign output (ROI_SIZE x ROI_SIZE) per box and feature map
PAIR_LABEL_DIM = 32
PAIR_HIDDEN = 256


def node_label(record: SceneGraphRecord, node: int) -> str:
    """A person's clinical role (``head-surgeon``), an object's class (``operating_table``)."""
    role = record.roles[node]
    return record.object_names[node] if role == NOT_A_PERSON else role


def role_typed_triples(record: SceneGraphRecord) -> set[str]:
    """The scan's facts as ``"subject Predicate object"`` strings, people named by role."""
    return {f"{node_label(record, s)} {p} {node_label(record, o)}" for s, o, p in record.triples}


def triple_vocabulary(records: Iterable[SceneGraphRecord], min_count: int) -> tuple[str, ...]:
    """Every role-typed triple seen in at least ``min_count`` scans, most frequent first (ties by name)."""
    counts = Counter(t for record in records for t in role_typed_triples(record))
    return tuple(sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t)))


class RelationLabels:
    """Multi-hot targets of a graph: predicates (14) and the triples of a fixed vocabulary."""

    def __init__(self, triples: Sequence[str]) -> None:
        self.triples = tuple(triples)
        self._triple_index = {t: i for i, t in enumerate(self.triples)}

    def predicates(self, records: Sequence[SceneGraphRecord]) -> torch.Tensor:
        out = torch.zeros(len(records), len(PREDICATES))
        for row, record in enumerate(records):
            for p in record.predicates:
                out[row, PREDICATES.index(p)] = 1.0
        return out

    def triple_targets(self, records: Sequence[SceneGraphRecord]) -> torch.Tensor:
        """(N, K); triples outside the vocabulary are dropped (too rare to score), as the classifier never
        predicts them."""
        out = torch.zeros(len(records), len(self.triples))
        for row, record in enumerate(records):
            for t in role_typed_triples(record):
                if t in self._triple_index:
                    out[row, self._triple_index[t]] = 1.0
        return out


class RelationClassifier(nn.Module):
    """ResNet-18 features + camera embedding -> predicate and triple logits; with ``node_labels`` (the labels
    its pairs may carry) also a pair-level predicate head on RoIAlign features."""

    def __init__(self, triples: Sequence[str], image_size: int, node_labels: Sequence[str] = ()) -> None:
        super().__init__()
        self.triples = tuple(triples)
        self.image_size = int(image_size)
        self.backbone = resnet18(weights=None)
        self.feature_dim = self.backbone.fc.in_features  # 512
        self.backbone.fc = nn.Identity()
        self.camera_embedding = nn.Embedding(len(CAMERAS) + 1, self.feature_dim)  # row 0: view unknown
        nn.init.zeros_(self.camera_embedding.weight)
        self.predicate_head = nn.Linear(self.feature_dim, len(PREDICATES))
        self.triple_head = nn.Linear(self.feature_dim, max(len(self.triples), 1))
        self.node_labels = tuple(node_labels)
        self._label_ids = {label: i + 1 for i, label in enumerate(self.node_labels)}  # 0: a label never seen
        self.pair_head: nn.Module | None = None
        if self.node_labels:
            map_channels = (
                self.backbone.layer2[-1].conv2.out_channels + self.backbone.layer3[-1].conv2.out_channels
            )
            roi_dim = map_channels * ROI_SIZE * ROI_SIZE
            self.label_embedding = nn.Embedding(len(self.node_labels) + 1, PAIR_LABEL_DIM)
            self.pair_head = nn.Sequential(
                nn.Linear(3 * roi_dim + 2 * PAIR_LABEL_DIM, PAIR_HIDDEN),
                nn.ReLU(),
                nn.Linear(PAIR_HIDDEN, len(PREDICATES)),
            )

    @property
    def has_pair_head(self) -> bool:
        return self.pair_head is not None

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float in [-1, 1]; the classifier's only input normalisation."""
        return images.float().div(127.5).sub(1.0)

    def feature_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 512) pooled features and the stride-8 and stride-16 maps the pair head pools boxes from
        (torchvision's ResNet forward, unrolled to keep the intermediate maps)."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(self.preprocess(images)))))
        stride8 = b.layer2(b.layer1(x))
        stride16 = b.layer3(stride8)
        pooled = torch.flatten(b.avgpool(b.layer4(stride16)), 1)
        return pooled, [stride8, stride16]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 512) pooled backbone features of uint8 images: the offline feature space (view-independent)."""
        return self.backbone(self.preprocess(images))

    def forward(self, images: torch.Tensor, cameras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicate logits (B, 14) and triple logits (B, K) of uint8 images seen from ``cameras`` (1..6)."""
        return self.heads(self.features(images), cameras)

    def heads(self, features: torch.Tensor, cameras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits of pooled features seen from ``cameras``: the camera embedding added, then both heads."""
        h = features + self.camera_embedding(cameras.long())
        return self.predicate_head(h), self.triple_head(h)[:, : len(self.triples)]

    def label_ids(self, labels: Sequence[str]) -> torch.Tensor:
        """Embedding rows of node labels (0 for a label the classifier never saw in training)."""
        return torch.tensor([self._label_ids.get(label, 0) for label in labels], dtype=torch.long)

    def pair_logits(
        self,
        maps: Sequence[torch.Tensor],
        image_position: torch.Tensor,
        subject_box: torch.Tensor,
        object_box: torch.Tensor,
        subject_label: torch.Tensor,
        object_label: torch.Tensor,
    ) -> torch.Tensor:
        """(P, 14) predicate logits of P pairs: boxes normalised ``(x0, y0, x1, y1)`` in the image at batch
        position ``image_position`` of ``maps`` (from :meth:`feature_maps`); labels from :meth:`label_ids`."""
        if self.pair_head is None:
            raise ValueError(
                "this relation classifier has no pair-level head: it was trained without boxes (a dataset "
                "without or_synth_annotations/, or an older checkpoint); retrain it on a rendered dataset"
            )
        union = torch.cat([torch.minimum(subject_box[:, :2], object_box[:, :2]),
                           torch.maximum(subject_box[:, 2:], object_box[:, 2:])], 1)  # fmt: skip
        # A node's box recurs in every pair it is part of: pool each distinct (image, box) once.
        position = image_position[:, None].to(subject_box)
        keys = torch.cat([torch.cat([position, subject_box], 1), torch.cat([position, object_box], 1)])
        distinct, inverse = torch.unique(keys, dim=0, return_inverse=True)
        nodes = self._roi_features(maps, distinct[:, 0].long(), distinct[:, 1:])
        # The first layer on [subject, object, union, subject label, object label] is a sum of one product per
        # block, so the subject and object blocks are multiplied once per distinct box, not once per pair.
        first, rest = self.pair_head[0], self.pair_head[1:]
        d, count = nodes.shape[1], len(subject_box)
        weight_s, weight_o, weight_u, weight_labels = first.weight.split([d, d, d, 2 * PAIR_LABEL_DIM], dim=1)
        labels = torch.cat([self.label_embedding(subject_label), self.label_embedding(object_label)], 1)
        hidden = (
            (nodes @ weight_s.T)[inverse[:count]]
            + (nodes @ weight_o.T)[inverse[count:]]
            + self._roi_features(maps, image_position, union) @ weight_u.T
            + labels @ weight_labels.T
            + first.bias
        )
        return rest(hidden)

    @staticmethod
    def _roi_features(
        maps: Sequence[torch.Tensor], image_position: torch.Tensor, boxes: torch.Tensor
    ) -> torch.Tensor:
        out = []
        for fmap in maps:
            height, width = fmap.shape[-2:]
            scale = torch.tensor([width, height, width, height], dtype=fmap.dtype, device=fmap.device)
            rois = torch.cat([image_position[:, None].to(fmap), boxes.to(fmap) * scale], 1)
            pooled = roi_align(
                fmap, rois, output_size=ROI_SIZE, spatial_scale=1.0, sampling_ratio=2, aligned=True
            )
            out.append(pooled.flatten(1))
        return torch.cat(out, 1)

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        cameras: torch.Tensor,
        batch_size: int = 128,
        *,
        pairs=None,
        records: Sequence[SceneGraphRecord] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Probabilities and features of many images, in batches: ``{"predicates", "triples", "features"}``,
        and ``"pairs"`` (P, 14) for a :class:`~or_synth.evaluation.pairs.PairSet` of these images (whose graphs
        ``records`` name the pairs' labels)."""
        was_training = self.training
        self.eval()
        out: dict[str, list] = {"predicates": [], "triples": [], "features": []}
        if pairs is not None:
            if records is None:
                raise ValueError("predict(pairs=...) needs the images' records (the pairs' labels)")
            labels = tuple(self.label_ids(x) for x in pairs.labels(records))
            pair_probabilities = torch.zeros(len(pairs), len(PREDICATES))
        device = next(self.parameters()).device
        for start in range(0, len(images), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(images)))
            x, c = images[rows].to(device), cameras[rows].to(device)
            feats, maps = self.feature_maps(x)
            predicates, triples = self.heads(feats, c)
            out["features"].append(feats.cpu())
            out["predicates"].append(torch.sigmoid(predicates).cpu())
            out["triples"].append(torch.sigmoid(triples).cpu())
            if pairs is not None and len(pairs):
                index, position = pairs.in_images(rows)
                if len(index):
                    pair_probabilities[index] = self._pair_probabilities(maps, position, pairs, index, labels)
        self.train(was_training)
        result = {k: torch.cat(v) if v else torch.empty(0) for k, v in out.items()}
        if pairs is not None:
            result["pairs"] = pair_probabilities
        return result

    @torch.no_grad()
    def predict_blank(
        self, pairs, records: Sequence[SceneGraphRecord], batch_size: int = 4096
    ) -> torch.Tensor:
        """(P, 14) pair probabilities on a blank (mid-grey) image with the same boxes and labels: what the
        labels alone predict. Every blank image has the same feature maps, so one forward pass serves all."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        blank = torch.full((1, 3, self.image_size, self.image_size), 128, dtype=torch.uint8, device=device)
        _, maps = self.feature_maps(blank)
        labels = tuple(self.label_ids(x) for x in pairs.labels(records))
        out = torch.zeros(len(pairs), len(PREDICATES))
        for start in range(0, len(pairs), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(pairs)))
            out[rows] = self._pair_probabilities(maps, torch.zeros_like(rows), pairs, rows, labels)
        self.train(was_training)
        return out

    def _pair_probabilities(
        self,
        maps: Sequence[torch.Tensor],
        image_position: torch.Tensor,
        pairs,
        rows: torch.Tensor,
        labels: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Probabilities (on the CPU) of the pairs ``rows``, in the images at ``image_position`` of ``maps``."""
        device = maps[0].device
        logits = self.pair_logits(
            maps,
            image_position.to(device),
            pairs.subject_box[rows].to(device),
            pairs.object_box[rows].to(device),
            labels[0][rows].to(device),
            labels[1][rows].to(device),
        )
        return torch.sigmoid(logits).float().cpu()

    # --- save / load ------------------------------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "architecture": "torchvision resnet18 (random init) + camera embedding, multi-label heads"
            + (
                ", pair-level predicate head (RoIAlign on subject / object / union boxes + labels)"
                if self.node_labels
                else ""
            ),
            "triples": list(self.triples),
            "node_labels": list(self.node_labels),
            "predicates": list(PREDICATES),
            "image_size": self.image_size,
        }

    def save_pretrained(
        self, folder: Path, *, quality: dict | None = None, training: dict | None = None
    ) -> Path:
        """``config.json`` (with how it was trained), ``model.safetensors``, ``quality.json``; atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp))
        atomic_write_json(folder / CONFIG, {**self.config(), "training": training or {}}, indent=2)
        if quality is not None:
            atomic_write_json(folder / QUALITY, quality, indent=2)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, expected_hash: str | None = None) -> RelationClassifier:
        """Load a saved classifier; with ``expected_hash`` (the pin of a metric card) refuse any other one."""
        folder = Path(folder)
        for name in (CONFIG, WEIGHTS):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"no relation classifier at {folder} ({name} missing): train one with "
                    "`python -m or_synth.train stage=classifier` and pass its classifier/ folder"
                )
        if expected_hash is not None:
            actual = classifier_hash(folder)
            if not actual.startswith(expected_hash) and not expected_hash.startswith(actual):
                raise ValueError(
                    f"relation classifier {folder} has hash {actual}, but {expected_hash} is pinned: scores from "
                    "another classifier are not comparable; pass the pinned checkpoint or drop the pin"
                )
        config = json.loads((folder / CONFIG).read_text())
        if tuple(config["predicates"]) != tuple(PREDICATES):
            raise ValueError(f"{folder / CONFIG}: the classifier was trained on another predicate list")
        with torch.device("meta"):  # no random init of weights that are replaced at once
            model = cls(config["triples"], config["image_size"], config.get("node_labels", ()))
        model.load_state_dict(load_file(str(folder / WEIGHTS)), assign=True)
        return model.eval()


def classifier_hash(folder: str | Path) -> str:
    """SHA-256 (16 hex) of the weights and config: the pin that metric cards carry."""
    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()[:16]


def node_label_vocabulary(records: Iterable[SceneGraphRecord]) -> tuple[str, ...]:
    """Every node label (role or class) of the training graphs, sorted: the pair head's label embedding rows."""
    return tuple(sorted({node_label(r, n) for r in records for n in range(len(r.object_names))}))


def multilabel_loss(
    logits: tuple[torch.Tensor, torch.Tensor],
    targets: tuple[torch.Tensor, torch.Tensor],
    pos_weights: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """BCE on both heads, positives weighted by the class imbalance (rare relations are rare in images too)."""
    return sum(
        F.binary_cross_entropy_with_logits(x, y, pos_weight=w)
        for x, y, w in zip(logits, targets, pos_weights, strict=True)
        if x.shape[1]
    )
