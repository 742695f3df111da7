"""Downstream test of synthetic data: does adding generated images help a classifier recognise a scan's MAIN
ACTION (LABRAD-OR's rule, :func:`or_synth.data.main_action`) on real held-out takes?

Protocol (``../shared/docs/prior_work.md``, "Measuring downstream gains"): a small torchvision classifier with
random init is trained on real training images, alone or with synthetic images drawn from TRAINING-split graphs
at a synthetic:real ratio r, and scored per scan (probabilities averaged over a scan's views) on real held-out
takes: macro-F1 over the actions present in the test set, with a per-class table so rare actions stay visible.
:func:`downstream_study` sweeps real-data fractions x ratios over seeds, with a bootstrap CI of the mean, the
gain over real-only paired by seed, a matched-compute control and an oracle (real images in place of the
synthetic ones).

Works on tensors (:class:`LabelledImages`); the benchmark ``benchmarks/action_recognition.py`` loads the images.
Never imports the generator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torchvision.models import mobilenet_v3_small, resnet18

from or_synth.data import MAIN_ACTIONS

# Measured on one CPU thread at 64 px, batch 32 (train step with backward; inference per image): ResNet-18
# 0.42 s and 5.6 ms, MobileNetV3-small 0.14 s and 0.44 ms. ResNet-18 learns more per step (per-scan macro-F1
# 0.33 after 60 steps against 0.15-0.22 after 100-300 steps, one seed on the benchmark's data), but the study is
# 72 training runs, each scored on 2,400 test images, inside a 35-minute one-core budget: ResNet-18's scoring
# alone would take 16 minutes and leave about 20 steps per run, so MobileNetV3-small is the default.
ARCHITECTURES = {"mobilenet_v3_small": mobilenet_v3_small, "resnet18": resnet18}
DEFAULT_ARCHITECTURE = "mobilenet_v3_small"
CLASS_WEIGHT_CAP = 10.0  # rare actions (a handful of scans) get at most 10x the weight of a typical one
WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.05
BN_CALIBRATION_IMAGES = 1024
MATCHED_COMPUTE = (
    "real images only, trained for steps x (1 + max ratio) optimiser steps at the same batch size: the same "
    "steps and the same number of image draws as the largest-ratio run, spent on more epochs of the real "
    "images instead of on synthetic ones"
)
STEP_RULE = (
    "a run at ratio r trains round(steps x (1 + r)) optimiser steps with batches drawn uniformly from its real + "
    "added images, so every row draws each real image the same expected number of times (steps x batch / "
    "real images): added images come on top of the real exposure, never in place of it"
)


@dataclass
class LabelledImages:
    """Images with the main action of the scan each one shows.

    Attributes:
        images: (N, 3, H, W) uint8.
        labels: (N,) int64 main-action ids, indices into :data:`or_synth.data.MAIN_ACTIONS`.
        groups: (N,) int64 scan id per image; the views of one scan share it (per-scan scores average them).
        takes: (N,) int64 take of each image, so images of held-out takes can be refused.
    """

    images: torch.Tensor
    labels: torch.Tensor
    groups: torch.Tensor
    takes: torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0] if self.images.dim() == 4 else -1
        if self.images.dim() != 4 or self.images.shape[1] != 3 or self.images.dtype != torch.uint8:
            raise ValueError(
                f"images must be (N, 3, H, W) uint8, got {tuple(self.images.shape)} {self.images.dtype}"
            )
        for name in ("labels", "groups", "takes"):
            value = getattr(self, name)
            if value.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) like the images, got {tuple(value.shape)}")
            setattr(self, name, value.long())
        if n and (self.labels.min() < 0 or self.labels.max() >= len(MAIN_ACTIONS)):
            raise ValueError(f"labels must index MAIN_ACTIONS (0..{len(MAIN_ACTIONS) - 1})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> LabelledImages:
        rows = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return LabelledImages(self.images[rows], self.labels[rows], self.groups[rows], self.takes[rows])

    @staticmethod
    def concat(parts: Sequence[LabelledImages]) -> LabelledImages:
        """One training set from several; group ids are offset so scans of different parts never merge."""
        offset, groups = 0, []
        for part in parts:
            groups.append(part.groups + offset)
            offset += int(part.groups.max()) + 1 if len(part) else 0
        return LabelledImages(
            torch.cat([p.images for p in parts]),
            torch.cat([p.labels for p in parts]),
            torch.cat(groups),
            torch.cat([p.takes for p in parts]),
        )


# --- the classifier ---------------------------------------------------------------------------------------


def build_classifier(architecture: str = DEFAULT_ARCHITECTURE) -> nn.Module:
    """A real torchvision model with random init (no weights download; nothing pre-trained has seen the data)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    return ARCHITECTURES[architecture](weights=None, num_classes=len(MAIN_ACTIONS))


def class_weights(labels: torch.Tensor, cap: float = CLASS_WEIGHT_CAP) -> torch.Tensor:
    """(C,) inverse-frequency weights normalised to 1 for an average present class, capped: rare actions count
    without a single image of them dominating the loss; absent classes get 1 (they never occur)."""
    counts = torch.bincount(labels, minlength=len(MAIN_ACTIONS)).float()
    present = counts > 0
    weights = torch.ones(len(MAIN_ACTIONS))
    weights[present] = (counts[present].mean() / counts[present]).clamp(max=cap)
    return weights


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float around 0 (fixed constants: the same transform for every training set)."""
    return (images.float() / 255.0 - 0.5) / 0.25


def index_stream(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Batches of indices from successive random permutations (epochs), so every image is drawn equally often;
    a batch may span two epochs (and sets smaller than the batch repeat within it)."""
    buffer = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        while len(buffer) < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=generator)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def train_classifier(
    train: LabelledImages,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float,
    architecture: str = DEFAULT_ARCHITECTURE,
) -> nn.Module:
    """Exactly ``steps`` AdamW steps (linear warm-up then cosine decay to 0), class-weighted cross-entropy and
    random horizontal flips (an action reads the same mirrored); deterministic given ``seed``."""
    if len(train) == 0:
        raise ValueError("the training set is empty")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch.manual_seed(seed)
    model = build_classifier(architecture)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    warmup = max(1, int(WARMUP_FRACTION * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    weights = class_weights(train.labels)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for batch in index_stream(len(train), batch_size, steps, generator):
        x = normalise(train.images[batch])  # (B, 3, H, W)
        flip = torch.rand(len(batch), generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = F.cross_entropy(model(x), train.labels[batch], weight=weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    recalibrate_batchnorm(model, train.images, batch_size, generator)
    return model.eval()


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, images: torch.Tensor, batch_size: int, generator: torch.Generator
) -> None:
    """Recompute BatchNorm running statistics with the final weights ("precise BN", Wu & Johnson 2021): after
    a few hundred steps the running averages still mix in early weights (MobileNetV3's momentum is 0.01), and
    eval-mode predictions collapse to one class even on a trivial task. Forward passes only, over at most
    :data:`BN_CALIBRATION_IMAGES` training images, cumulative averages."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    model.train()
    rows = torch.randperm(len(images), generator=generator)[:BN_CALIBRATION_IMAGES]
    batches = list(rows.split(max(batch_size, 2)))
    if len(batches[-1]) == 1:  # BatchNorm cannot normalise a 1x1 feature map of a single image
        batches = [*batches[:-2], torch.cat(batches[-2:])] if len(batches) > 1 else [rows.repeat(2)]
    for batch in batches:
        model(normalise(images[batch]))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """(N, C) softmax probabilities, in eval mode (BatchNorm running statistics)."""
    model.eval()
    return torch.cat([model(normalise(part)).softmax(-1) for part in images.split(chunk)])


# --- scoring ------------------------------------------------------------------------------------------------


def per_scan(probabilities: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor):
    """Probabilities averaged over each scan's views (S, C) and the scan labels (S,); views must agree."""
    ids, inverse = torch.unique(groups, return_inverse=True)
    sums = torch.zeros(len(ids), probabilities.shape[1]).index_add_(0, inverse, probabilities)
    counts = torch.bincount(inverse, minlength=len(ids)).float()
    scan_labels = torch.full((len(ids),), -1, dtype=torch.long).scatter_(0, inverse, labels)
    if not torch.equal(scan_labels[inverse], labels):
        raise ValueError("views of one scan (same group) carry different labels")
    return sums / counts[:, None], scan_labels


def classification_table(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Macro-F1 over the classes present in ``truth``, accuracy, and support/F1/precision/recall per class
    (``None`` where undefined: no support, or never predicted)."""
    table, f1s = {}, []
    for c, name in enumerate(MAIN_ACTIONS):
        tp = int(((predicted == c) & (truth == c)).sum())
        fp = int(((predicted == c) & (truth != c)).sum())
        fn = int(((predicted != c) & (truth == c)).sum())
        support = tp + fn
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / support if support else None
        f1 = 2 * tp / (2 * tp + fp + fn) if support else None
        if support:
            f1s.append(f1)
        table[name] = {"support": support, "f1": f1, "precision": precision, "recall": recall}
    return {
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "accuracy": float((predicted == truth).mean()) if len(truth) else float("nan"),
        "classes_scored": int(len(f1s)),
        "per_class": table,
    }


def score(probabilities: torch.Tensor, test: LabelledImages, *, keep_predictions: bool = False) -> dict:
    """Per-scan scores (the headline) and the per-image macro-F1 beside them; with ``keep_predictions`` also
    each scan's predicted and true action (``scan_predictions``, ``scan_truth``: a bootstrap over scans needs
    them)."""
    scan_probabilities, scan_labels = per_scan(probabilities, test.labels, test.groups)
    predicted, truth = scan_probabilities.argmax(1).numpy(), scan_labels.numpy()
    result = classification_table(predicted, truth)
    if keep_predictions:
        result["scan_predictions"], result["scan_truth"] = predicted.tolist(), truth.tolist()
    per_image = classification_table(probabilities.argmax(1).numpy(), test.labels.numpy())
    result["macro_f1_per_image"] = per_image["macro_f1"]
    result["scans"] = int(len(scan_labels))
    result["images"] = len(test)
    return result


def check_compatible(**sets: LabelledImages) -> None:
    """Every set non-empty and of one image size."""
    for name, images in sets.items():
        if len(images) == 0:
            raise ValueError(f"{name} is empty")
    sizes = {name: images.size for name, images in sets.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"image sets of different sizes: {sizes}; load them at one size")


def train_and_score(
    train: LabelledImages,
    test: LabelledImages,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float,
    architecture: str = DEFAULT_ARCHITECTURE,
    keep_predictions: bool = False,
) -> dict:
    """Train a fresh classifier on ``train`` and score it on ``test`` (:func:`score`).

    Returns:
        ``macro_f1`` (per scan, over the classes present in ``test``), ``accuracy`` (per scan),
        ``macro_f1_per_image``, ``per_class`` ({action: support, f1, precision, recall}), ``classes_scored``,
        ``scans``, ``images``, ``seconds`` (training + scoring wall time).
    """
    check_compatible(train=train, test=test)
    start = time.perf_counter()
    model = train_classifier(
        train, steps=steps, batch_size=batch_size, seed=seed, lr=lr, architecture=architecture
    )
    result = score(predict_probabilities(model, test.images), test, keep_predictions=keep_predictions)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


# --- statistics ---------------------------------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over seeds (``scipy.stats.bootstrap``, method ``percentile``: BCa's
    jackknife is unstable at 3 values). With 3 seeds there are only 10 distinct resamples, so the interval is
    close to [min, max]: read it as the spread over seeds, not as a population CI."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if data.size == 1 or np.ptp(data) == 0:
        return float(data[0]), float(data[0])  # no spread to resample (scipy warns on degenerate data)
    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# --- the study ----------------------------------------------------------------------------------------------


def scan_labels_of(images: LabelledImages) -> tuple[np.ndarray, np.ndarray]:
    """Distinct scan ids (sorted) and each one's main action."""
    ids, first = np.unique(images.groups.numpy(), return_index=True)
    return ids, images.labels.numpy()[first]


def stratified_scans(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of ``count`` scans, each action represented in proportion to its frequency (largest
    remainder), and by at least one scan where ``count`` allows; fewer scans than actions: that many actions
    drawn with probability by frequency, one scan each."""
    classes, sizes = np.unique(labels, return_counts=True)
    count = min(count, len(labels))
    if count < len(classes):
        chosen = rng.choice(classes, size=count, replace=False, p=sizes / sizes.sum())
        return np.sort([rng.choice(np.flatnonzero(labels == c)) for c in chosen])
    quota = count * sizes / sizes.sum()
    take = np.minimum(np.maximum(np.floor(quota).astype(int), 1), sizes)
    while take.sum() > count:  # the floor of 1 overshot: trim the most over-served class
        over = np.where(take > 1, take - quota, -np.inf)
        take[int(np.argmax(over))] -= 1
    while take.sum() < count:
        room = np.where(take < sizes, quota - take, -np.inf)
        take[int(np.argmax(room))] += 1
    rows = [
        rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(rows))


def real_subset(real_train: LabelledImages, fraction: float, seed: int) -> LabelledImages:
    """All views of a seeded, action-stratified ``fraction`` of the real training scans."""
    ids, labels = scan_labels_of(real_train)
    count = max(1, round(fraction * len(ids)))
    rng = np.random.default_rng([seed, round(fraction * 1_000_000), 17])
    keep = ids[stratified_scans(labels, count, rng)]
    return real_train.subset(np.flatnonzero(np.isin(real_train.groups.numpy(), keep)))


def added_count(real_images: int, ratio: float) -> int:
    return round(ratio * real_images)


def draw_added(pool: LabelledImages, count: int, seed: int, fraction: float, ratio: float) -> LabelledImages:
    """``count`` images of ``pool``, seeded by (seed, fraction, ratio) only: the oracle draws the same rows
    of its pool as the synthetic arm, so pools listed in the same (take, scan, camera) order pair image by
    image."""
    rng = np.random.default_rng([seed, round(fraction * 1_000_000), round(ratio * 1_000_000), 29])
    return pool.subset(np.sort(rng.choice(len(pool), size=count, replace=False)))


def check_added_pools(
    real_train: LabelledImages,
    real_test: LabelledImages,
    pools: dict[str, LabelledImages | None],
    fractions: Sequence[float],
    ratios: Sequence[float],
    seeds: Sequence[int],
) -> None:
    """Refuse images of held-out takes (synthetic images must come from training-split graphs) and pools too
    small for the sweep, before any training."""
    held_out = set(real_test.takes.tolist())
    for name, images in {"real_train": real_train, **pools}.items():
        if images is None:
            continue
        leaked = sorted(held_out & set(images.takes.tolist()))
        if leaked:
            raise ValueError(
                f"{name} has images of take(s) {leaked}, which are held out in real_test: synthetic and extra "
                "real images must come from training-split graphs only"
            )
    for name, images in pools.items():
        if images is None:
            continue
        for fraction in fractions:
            # The subset's size per seed (views per scan may vary, so measure it rather than predict it).
            real_images = max(len(real_subset(real_train, fraction, seed)) for seed in seeds)
            need = max(added_count(real_images, r) for r in ratios)
            if need > len(images):
                raise ValueError(
                    f"not enough {name} images: ratio {max(ratios)} at real fraction {fraction} "
                    f"({real_images} real images) needs {need}, got {len(images)}"
                )


def summarise(scores: list[dict], seeds: Sequence[int]) -> dict:
    """Raw per-seed scores, their mean and bootstrap CI, and the per-class table averaged over seeds."""
    f1 = [s["macro_f1"] for s in scores]
    per_class = {}
    for name in MAIN_ACTIONS:
        rows = [s["per_class"][name] for s in scores]
        per_class[name] = {"support": rows[0]["support"]}
        for key in ("f1", "precision", "recall"):
            values = [r[key] for r in rows if r[key] is not None]
            per_class[name][key] = round(float(np.mean(values)), 4) if values else None
    return {
        "seeds": list(seeds),
        "macro_f1": [round(v, 4) for v in f1],
        "mean": round(float(np.mean(f1)), 4),
        "ci95": [round(v, 4) for v in bootstrap_ci(f1)],
        "accuracy": [round(s["accuracy"], 4) for s in scores],
        "macro_f1_per_image": [round(s["macro_f1_per_image"], 4) for s in scores],
        "seconds": [s["seconds"] for s in scores],
        "per_class": per_class,
    }


def paired_gain(row: dict, baseline: dict) -> dict:
    """Per-seed differences to the baseline row (same seed: same real subset and init), mean and CI."""
    diffs = [a - b for a, b in zip(row["macro_f1"], baseline["macro_f1"], strict=True)]
    return {
        "per_seed": [round(d, 4) for d in diffs],
        "mean": round(float(np.mean(diffs)), 4),
        "ci95": [round(v, 4) for v in bootstrap_ci(diffs)],
    }


def downstream_study(
    real_train: LabelledImages,
    synthetic: LabelledImages,
    real_test: LabelledImages,
    extra_real: LabelledImages | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    ratios: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
    fractions: Sequence[float] = (1.0, 0.25, 0.1),
    steps: int,
    batch_size: int,
    lr: float = 3e-3,
    architecture: str = DEFAULT_ARCHITECTURE,
    log=None,
) -> dict:
    """Real-only vs real + synthetic over real-data fractions x synthetic:real ratios, with two controls.

    For each fraction f (a seeded subset of the real training SCANS, stratified by main action; it changes with
    the seed, so the spread includes which scans were kept) and ratio r, ``r x (real images)`` images drawn
    from ``synthetic`` join the real ones. Step budget: a run at ratio r trains ``round(steps x (1 + r))`` steps
    (:data:`STEP_RULE`), so every row sees each real image equally often and the synthetic images are pure
    additions. Controls per fraction:

    - matched compute (:data:`MATCHED_COMPUTE`): real only for ``steps x (1 + max r)`` steps. Since the
      augmented rows also train longer, a gain that this row matches is a gain from compute (more epochs), not
      from the synthetic images;
    - oracle: the same number of images drawn from ``extra_real`` (REAL renders of training takes) in place of
      the synthetic ones at each r > 0, with the same seeded draw; the ceiling a perfect generator would reach.

    Every training run is scored on ``real_test`` per scan (:func:`train_and_score`).

    Args:
        real_train, synthetic, real_test, extra_real: one image size; ``synthetic`` / ``extra_real`` must hold
            no take of ``real_test`` and enough images for the largest ratio at the largest fraction.
        log: optional callable receiving a line per finished run (progress of long benchmarks).

    Returns:
        ``rows``: one per (fraction, arm, ratio), arm in ``real_only`` (r = 0), ``synthetic``, ``oracle``,
        ``matched_compute``, each with steps, image counts, per-seed macro-F1 / accuracy, mean, 95% bootstrap
        CI, per-class table (mean over seeds) and ``gain_over_real_only`` (paired by seed, with CI);
        ``definitions`` (step rule, matched compute, CI method); ``best`` (per fraction, the synthetic ratio
        with the highest mean).
    """
    if not seeds or not ratios or not fractions:
        raise ValueError("seeds, ratios and fractions must be non-empty")
    if any(r < 0 for r in ratios) or any(not 0 < f <= 1 for f in fractions):
        raise ValueError("ratios must be >= 0 and fractions in (0, 1]")
    sets = {"real_train": real_train, "synthetic": synthetic, "real_test": real_test}
    check_compatible(**sets, **({"extra_real": extra_real} if extra_real is not None else {}))
    check_added_pools(
        real_train, real_test, {"synthetic": synthetic, "extra_real": extra_real}, fractions, ratios, seeds
    )
    ratios = sorted({float(r) for r in ratios} | {0.0})
    positive = [r for r in ratios if r > 0]
    max_ratio = max(ratios)
    rows = []

    def run(fraction: float, arm: str, ratio: float, run_steps: int, pool: LabelledImages | None) -> dict:
        scores, counts = [], None
        for seed in seeds:
            real = real_subset(real_train, fraction, seed)
            added = added_count(len(real), ratio)
            train = (
                real
                if pool is None or added == 0
                else LabelledImages.concat([real, draw_added(pool, added, seed, fraction, ratio)])
            )
            counts = {
                "real_images": len(real),
                "real_scans": int(real.groups.unique().numel()),
                "added_images": added,
            }
            scores.append(
                train_and_score(
                    train,
                    real_test,
                    steps=run_steps,
                    batch_size=batch_size,
                    seed=seed,
                    lr=lr,
                    architecture=architecture,
                )
            )
            if log is not None:
                log(
                    f"fraction {fraction} {arm} r={ratio} seed {seed}: macro-F1 {scores[-1]['macro_f1']:.3f} "
                    f"({scores[-1]['seconds']:.1f} s)"
                )
        row = {"fraction": fraction, "arm": arm, "ratio": ratio, "steps": run_steps, **counts}
        row.update(summarise(scores, seeds))
        rows.append(row)
        return row

    best = {}
    for fraction in fractions:
        baseline = run(fraction, "real_only", 0.0, steps, None)
        for ratio in positive:
            row = run(fraction, "synthetic", ratio, round(steps * (1 + ratio)), synthetic)
            row["gain_over_real_only"] = paired_gain(row, baseline)
        if extra_real is not None:
            for ratio in positive:
                row = run(fraction, "oracle", ratio, round(steps * (1 + ratio)), extra_real)
                row["gain_over_real_only"] = paired_gain(row, baseline)
        if positive:
            row = run(fraction, "matched_compute", 0.0, round(steps * (1 + max_ratio)), None)
            row["gain_over_real_only"] = paired_gain(row, baseline)
        synthetic_rows = [r for r in rows if r["fraction"] == fraction and r["arm"] == "synthetic"]
        if synthetic_rows:
            top = max(synthetic_rows, key=lambda r: r["mean"])
            best[str(fraction)] = {"ratio": top["ratio"], "mean": top["mean"]}
    return {
        "rows": rows,
        "best_synthetic_ratio": best,
        "definitions": {
            "metric": "macro-F1 per scan (softmax probabilities averaged over the scan's views) over the main "
            "actions present in the test set",
            "step_rule": STEP_RULE,
            "matched_compute": MATCHED_COMPUTE,
            "oracle": "extra REAL images (extra_real) in place of the synthetic ones, same count and same "
            "seeded row draw",
            "real_subset": "per (fraction, seed): a stratified-by-main-action draw of real training scans, all "
            "their views; the same subset for every arm and ratio of that seed (gains are paired by seed)",
            "ci": "95% percentile bootstrap of the mean over seeds (scipy.stats.bootstrap, 10,000 resamples)",
        },
        "settings": {
            "seeds": list(seeds),
            "ratios": ratios,
            "fractions": list(fractions),
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "architecture": architecture,
            "class_weight_cap": CLASS_WEIGHT_CAP,
            "weight_decay": WEIGHT_DECAY,
            "augmentation": "random horizontal flip (p = 0.5)",
            "schedule": f"AdamW, linear warm-up over {WARMUP_FRACTION:.0%} of the steps, cosine decay to 0",
            "sizes": {
                name: len(images) for name, images in {**sets, "extra_real": extra_real}.items() if images
            },
        },
    }
