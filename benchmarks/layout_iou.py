"""Does the layout predictor put each node where the renderer did? Box IoU on held-out takes, per class.

    python -m benchmarks.layout_iou --predictor runs/layout/cpu_quality/predictor \
        --dataset-root datasets/synthetic_or_quality --split test

For every (scan, camera) view of the held-out split (default: the test takes, 2 and 6, which neither training
nor the stage's validation saw) and every node the renderer's annotation has a box for, the IoU of the predicted
box with the true one, averaged per class (the encoder's node label: the role for people, the object class
otherwise) and over all boxes, beside the per-class mean-box baseline: the mean training box of that class in
that camera (the class's mean over all cameras where that camera never saw it). Also how often the visibility
head says rightly whether a node is in view. A node the predictor calls invisible still has its box scored: the
IoU measures placement, visibility is reported on its own.

Writes ``benchmarks/results/layout_iou.json`` (``--out``): per class the predictor's and the baseline's mean IoU
and N boxes, the overall and macro means, the command, the predictor folder's content hash and its training step
(from the run's ``metrics.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from or_synth.data import FourDORDataset
from or_synth.data.layout_targets import MeanBoxBaseline, load_layout_targets, paired_box_iou
from or_synth.generator import pipeline_hash
from or_synth.generator.layout_predictor import LayoutPredictor
from or_synth.training.layout import node_classes, predict_boxes

RESULTS = Path(__file__).resolve().parent / "results" / "layout_iou.json"


def targets_of(args, split: str):
    dataset = FourDORDataset(
        args.dataset_root, split, cameras=args.cameras, processed_root=args.processed_root
    )
    return dataset, load_layout_targets(dataset, 8, progress=False)  # mask crops are not scored


def check_vocabulary(predictor: LayoutPredictor, dataset: FourDORDataset) -> None:
    """Graph ids of the dataset must mean what they meant to the predictor."""
    ours, theirs = predictor.vocabulary(), dataset.vocabulary
    for key in ("object_classes", "roles", "predicates"):
        if ours[key] != list(getattr(theirs, key)):
            raise SystemExit(f"the predictor's {key} differ from the vocabulary of {dataset.dataset_root}")


def trained_step(predictor_dir: Path) -> int | None:
    """The step of the run that wrote the predictor (``<run_dir>/metrics.json``), when it is there."""
    metrics = predictor_dir.parent / "metrics.json"
    return json.loads(metrics.read_text()).get("step") if metrics.is_file() else None


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    predictor = LayoutPredictor.from_pretrained(args.predictor).eval()
    train_set, train = targets_of(args, "train")
    held_set, held = targets_of(args, args.split)
    check_vocabulary(predictor, held_set)
    train_classes, held_classes = node_classes(predictor, train), node_classes(predictor, held)
    baseline = MeanBoxBaseline(train, train_classes)
    device = torch.device("cpu")
    boxes, visibility = predict_boxes(predictor, held, args.batch_size, device)
    seen = held.visible
    ours = paired_box_iou(boxes[seen], held.boxes[seen])
    base = paired_box_iou(baseline.predict(held, held_classes)[seen], held.boxes[seen])
    names = predictor.config.encoder_config["node_labels"]
    per_class = {}
    for c in torch.unique(held_classes[seen]).tolist():
        chosen = held_classes[seen] == c
        per_class[names[c]] = {
            "predictor_iou": round(ours[chosen].mean().item(), 4),
            "baseline_iou": round(base[chosen].mean().item(), 4),
            "boxes": int(chosen.sum()),
        }
    return {
        "suite": "layout_iou",
        "command": "python -m benchmarks.layout_iou " + " ".join(args.argv),
        "predictor": str(args.predictor),
        "predictor_hash": pipeline_hash(args.predictor),
        "predictor_step": trained_step(Path(args.predictor)),
        "dataset": str(args.dataset_root),
        "baseline": "per-class mean training box in the same camera (train split), class = node label",
        "heldout": f"split {args.split} (takes {list(held_set.takes)}): {len(held)} views, cameras {args.cameras}",
        "train_views_for_baseline": len(train),
        "per_class": per_class,
        "mean_iou_over_boxes": {
            "predictor": round(ours.mean().item(), 4),
            "baseline": round(base.mean().item(), 4),
            "boxes": int(seen.sum()),
        },
        "macro_mean_iou_over_classes": {
            "predictor": round(sum(r["predictor_iou"] for r in per_class.values()) / len(per_class), 4),
            "baseline": round(sum(r["baseline_iou"] for r in per_class.values()) / len(per_class), 4),
        },
        "visibility_accuracy": round(((visibility >= 0.5) == seen).float().mean().item(), 4),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictor", type=Path, required=True, help="a layout predictor folder")
    parser.add_argument("--dataset-root", type=Path, default=Path("datasets/synthetic_or"))
    parser.add_argument("--processed-root", type=Path, default=None, help="for a read-only dataset root")
    parser.add_argument("--split", default="test", choices=["validation", "test"], help="held-out takes")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--batch-size", type=int, default=256, help="views per forward pass")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'class':<22} {'predictor':>9} {'baseline':>9} {'boxes':>6}")
    for name, row in result["per_class"].items():
        print(f"{name:<22} {row['predictor_iou']:>9} {row['baseline_iou']:>9} {row['boxes']:>6}")
    print(
        f"over boxes: {result['mean_iou_over_boxes']}; over classes: {result['macro_mean_iou_over_classes']}"
    )
    print(f"visibility accuracy {result['visibility_accuracy']}; wrote {args.out}")


if __name__ == "__main__":
    main()
