"""Learnability check: can a small CNN, trained a few minutes on CPU, see each predicate in rendered images?

    python -m benchmarks.learnability [--scans-per-take 60] [--minutes 4] [--size 128]

Renders all 10 takes (rare actions re-balanced), reads them back through ``FourDORDataset`` (the same loader
as for 4D-OR), trains a tiny CNN on the train takes (1,3,5,7,9,10) to predict which predicates a scan's graph
contains from ONE camera image (multi-label), and scores held-out takes (validation + test: 2,4,6,8):

- F1 per predicate, per image (threshold 0.5) and per scan (image probabilities averaged over the 6 views);
- two chance levels from the held-out prevalence p: a random guesser with rate p (F1 = p) and "always
  present" (F1 = 2p / (1 + p)).

Writes ``benchmarks/results/learnability.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from or_synth.data import PREDICATES, FourDORDataset
from or_synth.render import load_config, render

RESULTS = Path(__file__).resolve().parent / "results" / "learnability.json"
HELD_OUT = ("validation", "test")


def render_set(root: Path, scans_per_take: int, size: int, seed: int, workers: int) -> None:
    render(
        load_config(
            [
                f"root={root}",
                "takes=10",
                f"scans_per_take={scans_per_take}",
                f"image_size=[{size},{size}]",
                "rare_action_boost=1.0",
                f"seed={seed}",
                f"workers={workers}",
                "progress=false",
            ]
        )
    )


def load_split(root: Path, splits: tuple[str, ...], processed: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (S, 6, 3, H, W) uint8 and predicate multi-hot labels (S, 14) of the scans in ``splits``."""
    images, labels = [], []
    for split in splits:
        dataset = FourDORDataset(root, split, load_images=True, processed_root=processed)
        for index in range(len(dataset)):
            data = dataset[index]
            images.append(data.images[0])
            labels.append(data.predicate_multi_hot[0])
    return torch.stack(images), torch.stack(labels)


class TinyCNN(nn.Module):
    """Five strided conv blocks (about 30 M multiply-adds at 128 px) and global max pooling: a tool can be
    anywhere in the image, and small, so the strongest response anywhere counts."""

    def __init__(self, classes: int = len(PREDICATES)) -> None:
        super().__init__()

        def block(cin: int, cout: int, kernel: int = 3, stride: int = 2) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *block(3, 24, kernel=5),  # (B, 24, H/2, W/2)
            *block(24, 48),  # H/4
            *block(48, 64),  # H/8
            *block(64, 96, stride=1),
            *block(96, 128),  # H/16
        )
        self.head = nn.Linear(128, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) float in [0, 1]
        return self.head(self.features(images).amax(dim=(2, 3)))  # (B, classes)


def train(
    images: torch.Tensor, labels: torch.Tensor, seconds: float, seed: int = 0, max_steps: int | None = None
) -> tuple[TinyCNN, int]:
    """Train on every view of every scan (each image gets its scan's labels) for a wall-clock budget, or for
    exactly ``max_steps`` steps when given (deterministic, whatever the machine's load: what tests use)."""
    torch.manual_seed(seed)
    flat_images = images.flatten(0, 1)  # (S*6, 3, H, W)
    flat_labels = labels.repeat_interleave(images.shape[1], dim=0)
    model = TinyCNN()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    # Rare predicates are rare in the data too: weight positives by the class imbalance (capped).
    prevalence = flat_labels.mean(0).clamp(min=1e-3)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=((1 - prevalence) / prevalence).clamp(max=10.0))
    generator = torch.Generator().manual_seed(seed)
    start, steps, epochs = time.perf_counter(), 0, 0
    model.train()

    def done() -> bool:
        return steps >= max_steps if max_steps is not None else time.perf_counter() - start >= seconds

    while not done():
        order = torch.randperm(len(flat_images), generator=generator)
        for batch in order.split(64):
            x = flat_images[batch].float() / 255.0
            if torch.rand(1, generator=generator).item() < 0.5:
                x = x.flip(-1)  # presence labels do not care about mirroring
            loss = loss_fn(model(x), flat_labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            steps += 1
            if done():
                break
        epochs += 1
    return model, steps


@torch.no_grad()
def predict(model: TinyCNN, images: torch.Tensor) -> torch.Tensor:
    """(S, 6, 14) probabilities."""
    model.eval()
    flat = images.flatten(0, 1)
    out = torch.cat([torch.sigmoid(model(chunk.float() / 255.0)) for chunk in flat.split(256)])
    return out.view(images.shape[0], images.shape[1], -1)


def f1_scores(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    predicted = probabilities >= 0.5
    tp = (predicted & labels).sum(0)
    fp = (predicted & ~labels).sum(0)
    fn = (~predicted & labels).sum(0)
    return np.where(tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)


def evaluate(model: TinyCNN, images: torch.Tensor, labels: torch.Tensor) -> dict:
    probabilities = predict(model, images).numpy()  # (S, 6, 14)
    truth = labels.numpy().astype(bool)  # (S, 14)
    per_image = f1_scores(
        probabilities.reshape(-1, truth.shape[1]), np.repeat(truth, images.shape[1], axis=0)
    )
    per_scan = f1_scores(probabilities.mean(1), truth)
    prevalence = truth.mean(0)
    table = {
        name: {
            "prevalence": round(float(prevalence[i]), 3),
            "f1_per_image": round(float(per_image[i]), 3),
            "f1_per_scan": round(float(per_scan[i]), 3),
            "chance_f1_random": round(float(prevalence[i]), 3),
            "chance_f1_always": round(float(2 * prevalence[i] / (1 + prevalence[i])), 3),
        }
        for i, name in enumerate(PREDICATES)
    }
    return {
        "macro_f1_per_image": round(float(np.nanmean(per_image)), 3),
        "macro_f1_per_scan": round(float(np.nanmean(per_scan)), 3),
        "macro_chance_f1_random": round(float(prevalence.mean()), 3),
        "macro_chance_f1_always": round(float(np.mean(2 * prevalence / (1 + prevalence))), 3),
        "predicates": table,
    }


def run(
    scans_per_take: int,
    minutes: float,
    size: int,
    seed: int,
    workers: int,
    root: Path | None = None,
    threads: int = 1,
    steps: int | None = None,
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = root or Path(tmp) / "synthetic_or"
        start = time.perf_counter()
        if not (root / "relationships_train.json").is_file():
            render_set(root, scans_per_take, size, seed, workers)
        render_seconds = time.perf_counter() - start
        train_images, train_labels = load_split(root, ("train",), Path(tmp) / "processed")
        test_images, test_labels = load_split(root, HELD_OUT, Path(tmp) / "processed")
        torch.set_num_threads(threads)
        model, steps = train(train_images, train_labels, minutes * 60, seed, max_steps=steps)
        result = evaluate(model, test_images, test_labels)
    result["setup"] = {
        "render": f"10 takes x {scans_per_take} scans x 6 cameras, {size} px, rare_action_boost=1.0, seed {seed}",
        "train": f"takes 1,3,5,7,9,10: {len(train_images)} scans, {len(train_images) * 6} images",
        "held_out": f"takes 2,4,6,8: {len(test_images)} scans, {len(test_images) * 6} images",
        "model": "TinyCNN (5 conv blocks, global max pool), random init, AdamW 3e-3, batch 64, h-flip, "
        "BCE with pos_weight (1-p)/p capped at 10",
        "train_minutes": minutes,
        "train_steps": steps,
        "render_seconds": round(render_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans-per-take", type=int, default=120)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=None, help="a fixed step budget instead of --minutes")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None, help="reuse (or keep) a rendered set here")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)"
    )
    args = parser.parse_args()
    result = run(
        args.scans_per_take,
        args.minutes,
        args.size,
        args.seed,
        args.workers,
        args.root,
        args.threads,
        args.steps,
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'predicate':<10} {'prev':>5} {'F1 img':>7} {'F1 scan':>8} {'chance':>7}")
    for name, row in result["predicates"].items():
        chance = max(row["chance_f1_random"], row["chance_f1_always"])
        print(
            f"{name:<10} {row['prevalence']:>5} {row['f1_per_image']:>7} {row['f1_per_scan']:>8} {chance:>7}"
        )
    print(f"macro F1 per image {result['macro_f1_per_image']}, per scan {result['macro_f1_per_scan']}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
