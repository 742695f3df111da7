"""The relation classifier that scores generated images: image + camera view -> the relations present.

A torchvision ResNet-18 (random init: no machine here reaches a model hub, and a scorer must never have seen
generated images) with a learned camera-view embedding added to its pooled features, and two multi-label heads:

- predicates: which of 4D-OR's 14 predicates the scan's graph contains;
- role-typed triples: which ``subject Predicate object`` facts it contains, with people named by their
  clinical role (``head-surgeon Drilling Patient``) and objects by their class; the triple vocabulary is every
  triple seen at least ``min_count`` times in the training graphs.

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

from or_synth.data import CAMERAS, PREDICATES
from or_synth.data.io import atomic_path, atomic_write_json
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import NOT_A_PERSON

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
QUALITY = "quality.json"


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
    """ResNet-18 features + camera embedding -> predicate and triple logits."""

    def __init__(self, triples: Sequence[str], image_size: int) -> None:
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

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float in [-1, 1]; the classifier's only input normalisation."""
        return images.float().div(127.5).sub(1.0)

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

    @torch.no_grad()
    def predict(
        self, images: torch.Tensor, cameras: torch.Tensor, batch_size: int = 128
    ) -> dict[str, torch.Tensor]:
        """Probabilities and features of many images, in batches: ``{"predicates", "triples", "features"}``."""
        was_training = self.training
        self.eval()
        out: dict[str, list] = {"predicates": [], "triples": [], "features": []}
        for start in range(0, len(images), batch_size):
            x, c = images[start : start + batch_size], cameras[start : start + batch_size]
            feats = self.features(x)
            predicates, triples = self.heads(feats, c)
            out["features"].append(feats)
            out["predicates"].append(torch.sigmoid(predicates))
            out["triples"].append(torch.sigmoid(triples))
        self.train(was_training)
        return {k: torch.cat(v) if v else torch.empty(0) for k, v in out.items()}

    # --- save / load ------------------------------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "architecture": "torchvision resnet18 (random init) + camera embedding, multi-label heads",
            "triples": list(self.triples),
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
        model = cls(config["triples"], config["image_size"])
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
        return model.eval()


def classifier_hash(folder: str | Path) -> str:
    """SHA-256 (16 hex) of the weights and config: the pin that metric cards carry."""
    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()[:16]


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
