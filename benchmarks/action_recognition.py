"""Do generated images help a classifier recognise a scan's main action on real held-out takes?

    python -m benchmarks.action_recognition [--steps 150] [--batch-size 32] [--threads 1]

:func:`or_synth.evaluation.action_recognition.downstream_study` on the quality dataset (``datasets/
synthetic_or_quality``: 6 takes x 200 scans, rendered here first if absent, with the cpu_quality recipe's
overrides, so it is the data the shipped generator was trained on), 64 px, cameras 1, 3, 5:

- synthetic: the shipped ``cpu_quality`` generator draws the first ``--synthetic-graphs`` TRAINING graphs
  (take 1) x the cameras, with the dataset's own instance masks as layouts, through the sampling entry point
  (``python -m or_synth.sample``; it resumes, and this script never imports the generator);
- real training pool: ``--real-scans`` scans spread evenly over the other training scans (take 3), all their
  views: disjoint from the synthetic graphs, so added images bring new graphs, not new views of known scans;
- oracle: fresh REAL renders of exactly the synthetic graphs (``python -m or_synth.render from_json=...`` with
  another seed: new placements, camera mounts and paint), listed in the synthetic images' (take, scan, camera)
  order, so the oracle arm draws the real counterpart of each synthetic image it replaces;
- test: every scan of the validation and test takes (4, 8, 2, 6) x the cameras.

Writes ``benchmarks/results/action_recognition.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from or_synth.data import MAIN_ACTIONS, FourDORDataset, main_action
from or_synth.data.views import load_views
from or_synth.evaluation.action_recognition import LabelledImages, downstream_study
from or_synth.evaluation.image_sets import load_generated

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "action_recognition.json"
QUALITY_RENDER = [
    "scans_per_take=200",
    "progress=false",
]  # configs/experiment/cpu_quality.yaml dataset.render
HELD_OUT = ("validation", "test")


def timed(timings: dict, key: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[key] = round(time.perf_counter() - start, 1)
    return out


def ensure_dataset(root: Path, overrides: list[str]) -> None:
    """Render the dataset as the training recipe does (:func:`or_synth.render.pipeline.render_on_first_use`)."""
    from or_synth.render.pipeline import render_on_first_use

    render_on_first_use(root, overrides)


def sample_synthetic(args, threads: int) -> Path:
    """Run the sampling entry point (a subprocess: the benchmark never imports the generator); it resumes."""
    command = [
        sys.executable,
        "-m",
        "or_synth.sample",
        f"pipeline={args.pipeline}",
        "graphs=train",
        f"dataset_root={args.dataset_root}",
        f"cameras=[{','.join(map(str, args.cameras))}]",
        "layout=masks",
        f"guidance_scale={args.guidance_scale}",
        f"out={args.samples}",
        f"limit={args.synthetic_graphs}",
        "progress=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, cwd=REPO, env=env)
    return Path(args.samples) / "manifest.jsonl"


def render_extra_real(dataset_root: Path, keys: list[tuple[int, str]], out: Path, seed: int) -> Path:
    """Fresh real renders of the graphs ``keys`` (``render from_json``, another seed), at the dataset's own
    render settings; returns the root (:func:`or_synth.render.pipeline.render_again`)."""
    from or_synth.render.pipeline import render_again

    return render_again(dataset_root, keys, out, seed)


def real_views(
    root: Path, splits: tuple[str, ...], cameras: list[int], size: int, processed: Path
) -> tuple[LabelledImages, list[tuple[int, str, int]]]:
    """All views of the splits' scans, and each view's (take, scan, camera)."""
    parts, keys, offset = [], [], 0
    for split in splits:
        dataset = FourDORDataset(
            root, split, load_images=True, image_size=size, cameras=cameras, processed_root=processed
        )
        views = load_views(dataset, masks=False, progress=False)
        graph_labels = torch.cat([g.main_action for g in views.graphs])
        graph_takes = torch.cat([g.take for g in views.graphs])
        parts.append(
            LabelledImages(
                views.images,
                graph_labels[views.graph_index],
                views.graph_index + offset,
                graph_takes[views.graph_index],
            )
        )
        keys += [
            (int(views.graphs[g].take), views.graphs[g].scan, int(c))
            for g, c in zip(views.graph_index.tolist(), views.cameras.tolist(), strict=True)
        ]
        offset += len(views.graphs)
    return LabelledImages.concat(parts), keys


def synthetic_views(manifest: Path, size: int) -> tuple[LabelledImages, list[tuple[int, str, int]]]:
    """The generated images of a sampling manifest, sorted by (take, scan, camera), with their graphs' labels."""
    generated = load_generated(manifest, size=size)
    keys = [
        (r.take, r.scan, int(c)) for r, c in zip(generated.records, generated.cameras.tolist(), strict=True)
    ]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    labels = torch.tensor([MAIN_ACTIONS.index(main_action(r.predicates)) for r in generated.records])
    images = LabelledImages(
        generated.images, labels, generated.scan_groups(), torch.tensor([r.take for r in generated.records])
    )
    return images.subset(order), [keys[i] for i in order]


def by_keys(images: LabelledImages, keys: list, wanted: list) -> LabelledImages:
    index = {k: i for i, k in enumerate(keys)}
    missing = [k for k in wanted if k not in index]
    if missing:
        raise ValueError(f"{len(missing)} wanted views are missing, e.g. take/scan/camera {missing[0]}")
    return images.subset([index[k] for k in wanted])


def real_pool_keys(train_keys: list, synthetic_scans: set, scans: int) -> list:
    """``scans`` training scans spread evenly over those the synthetic images do not show, all their views."""
    candidates = sorted({(t, s) for t, s, _ in train_keys} - synthetic_scans)
    if scans > len(candidates):
        raise ValueError(
            f"--real-scans {scans}: only {len(candidates)} training scans are not synthetic graphs"
        )
    keep = {candidates[i] for i in np.unique(np.linspace(0, len(candidates) - 1, scans).round().astype(int))}
    return [k for k in train_keys if k[:2] in keep]


def class_counts(images: LabelledImages) -> dict:
    ids, first = np.unique(images.groups.numpy(), return_index=True)
    counts = np.bincount(images.labels.numpy()[first], minlength=len(MAIN_ACTIONS))
    return {name: int(n) for name, n in zip(MAIN_ACTIONS, counts, strict=True)}


def pipeline_hash(pipeline: str) -> str | None:
    shipped = Path(pipeline) if Path(pipeline).is_dir() else REPO / "pretrained" / pipeline
    manifest = shipped / "shipped.json"
    return json.loads(manifest.read_text()).get("pipeline_hash") if manifest.is_file() else None


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args) -> dict:
    """Prepare the four image sets (rendering / sampling what is missing) and run the study."""
    torch.set_num_threads(args.threads)
    timings, start, cpu_start, child_start = {}, time.perf_counter(), time.process_time(), child_cpu_seconds()
    dataset_root = Path(args.dataset_root)
    timed(timings, "render_dataset", ensure_dataset, dataset_root, QUALITY_RENDER)
    manifest = (
        Path(args.manifest)
        if args.manifest
        else timed(timings, "generate", sample_synthetic, args, args.threads)
    )
    with tempfile.TemporaryDirectory() as tmp:
        processed = Path(tmp) / "processed"
        synthetic, synthetic_keys = timed(timings, "load_synthetic", synthetic_views, manifest, args.size)
        synthetic_scans = {k[:2] for k in synthetic_keys}
        extra_root = Path(args.extra_root) if args.extra_root else Path(tmp) / "extra_real"
        timed(
            timings,
            "render_extra_real",
            render_extra_real,
            dataset_root,
            sorted(synthetic_scans),
            extra_root,
            args.extra_seed,
        )
        begin = time.perf_counter()
        train_all, train_keys = real_views(dataset_root, ("train",), args.cameras, args.size, processed)
        real_train = by_keys(
            train_all, train_keys, real_pool_keys(train_keys, synthetic_scans, args.real_scans)
        )
        real_test, _ = real_views(dataset_root, HELD_OUT, args.cameras, args.size, processed)
        extra_all, extra_keys = real_views(
            extra_root, ("train",), args.cameras, args.size, processed / "extra"
        )
        extra_real = by_keys(extra_all, extra_keys, synthetic_keys)
        timings["load_real"] = round(time.perf_counter() - begin, 1)
    if not torch.equal(extra_real.labels, synthetic.labels):
        raise ValueError("the extra real renders do not show the synthetic images' graphs (labels differ)")

    def log(line: str) -> None:
        print(line, flush=True)

    study = timed(
        timings,
        "study",
        downstream_study,
        real_train,
        synthetic,
        real_test,
        extra_real,
        seeds=args.seeds,
        ratios=args.ratios,
        fractions=args.fractions,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        log=log if args.verbose else None,
    )
    timings["total"] = round(time.perf_counter() - start, 1)
    timings["cpu_seconds"] = {
        "this_process": round(time.process_time() - cpu_start, 1),
        "sampling_subprocess": round(child_cpu_seconds() - child_start, 1),
    }
    if args.generation_note:
        timings["generation_earlier"] = args.generation_note
    run_seconds = [s for row in study["rows"] for s in row["seconds"]]
    setup = {
        "dataset_root": str(dataset_root),
        "dataset_render": QUALITY_RENDER,
        "size": args.size,
        "cameras": list(args.cameras),
        "pipeline": args.pipeline,
        "pipeline_hash": pipeline_hash(args.pipeline),
        "sampling": f"or_synth.sample graphs=train limit={args.synthetic_graphs} layout=masks "
        f"guidance_scale={args.guidance_scale} (dpmsolver++ 20 steps, sample.yaml defaults)",
        "manifest": str(manifest),
        "synthetic": f"{len(synthetic)} images of {len(synthetic_scans)} training graphs (takes "
        f"{sorted(set(synthetic.takes.tolist()))}) x cameras {list(args.cameras)}",
        "real_train_pool": f"{int(real_train.groups.unique().numel())} scans (takes "
        f"{sorted(set(real_train.takes.tolist()))}, evenly spaced, disjoint from the synthetic graphs) x "
        f"{len(args.cameras)} cameras = {len(real_train)} images",
        "extra_real": f"{len(extra_real)} fresh renders (seed {args.extra_seed}) of the synthetic images' graphs "
        "and cameras, in the synthetic images' order",
        "test": f"takes {sorted(set(real_test.takes.tolist()))} (validation + test): "
        f"{int(real_test.groups.unique().numel())} scans x {len(args.cameras)} cameras = {len(real_test)} images",
        "class_counts_scans": {
            "real_train_pool": class_counts(real_train),
            "synthetic": class_counts(synthetic),
            "test": class_counts(real_test),
        },
        "model": f"torchvision {study['settings']['architecture']}, random init",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seeds": list(args.seeds),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
    }
    timings["runs"] = len(run_seconds)
    timings["seconds_per_run"] = {
        "mean": round(float(np.mean(run_seconds)), 1),
        "min": round(float(np.min(run_seconds)), 1),
        "max": round(float(np.max(run_seconds)), 1),
    }
    return {
        "setup": setup,
        "summary": summary_table(study),
        "per_class_at_full_data": per_class_comparison(study),
        "chance_macro_f1": chance_levels(study),
        "study": study,
        "timings": timings,
    }


def chance_levels(study: dict) -> dict:
    """Per-scan macro-F1 of label-blind guessers on the test set: at random with the test prevalence (each
    action's F1 is its prevalence) and "always the most frequent action" (F1 2p / (1 + p) for it, 0 else)."""
    support = np.array([c["support"] for c in study["rows"][0]["per_class"].values()], dtype=float)
    prevalence = support[support > 0] / support.sum()
    top = prevalence.max()
    return {
        "random_at_test_prevalence": round(float(prevalence.mean()), 4),
        "always_most_frequent": round(float(2 * top / (1 + top) / len(prevalence)), 4),
    }


def per_class_comparison(study: dict, fraction: float = 1.0) -> dict:
    """Per-action F1 (mean over seeds) side by side at one real fraction: real only, the best synthetic ratio,
    the oracle at that ratio and matched compute, with the test support, so rare actions are visible."""
    rows = [r for r in study["rows"] if r["fraction"] == fraction]
    best = study["best_synthetic_ratio"].get(str(fraction))
    if not rows or best is None:
        return {}
    pick = {
        "real_only": next(r for r in rows if r["arm"] == "real_only"),
        f"synthetic_r{best['ratio']}": next(
            r for r in rows if r["arm"] == "synthetic" and r["ratio"] == best["ratio"]
        ),
        f"oracle_r{best['ratio']}": next(
            (r for r in rows if r["arm"] == "oracle" and r["ratio"] == best["ratio"]), None
        ),
        "matched_compute": next((r for r in rows if r["arm"] == "matched_compute"), None),
    }
    pick = {name: row for name, row in pick.items() if row is not None}
    first = next(iter(pick.values()))
    return {
        "fraction": fraction,
        "columns": list(pick),
        "actions": {
            action: {
                "test_scans": first["per_class"][action]["support"],
                **{name: row["per_class"][action]["f1"] for name, row in pick.items()},
            }
            for action in first["per_class"]
        },
    }


def summary_table(study: dict) -> list[dict]:
    """One line per row: fraction, arm, ratio, steps, mean macro-F1 [CI], gain [CI]."""
    out = []
    for row in study["rows"]:
        gain = row.get("gain_over_real_only")
        out.append(
            {
                "fraction": row["fraction"],
                "arm": row["arm"],
                "ratio": row["ratio"],
                "steps": row["steps"],
                "real_images": row["real_images"],
                "added_images": row["added_images"],
                "macro_f1": row["mean"],
                "ci95": row["ci95"],
                "gain": None if gain is None else gain["mean"],
                "gain_ci95": None if gain is None else gain["ci95"],
            }
        )
    return out


def print_table(result: dict) -> None:
    print(
        f"{'fraction':>8} {'arm':<16} {'r':>4} {'steps':>5} {'real':>5} {'added':>5} {'macro-F1 [95% CI]':>22} gain"
    )
    for row in result["summary"]:
        ci = f"{row['macro_f1']:.3f} [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]"
        gain = (
            ""
            if row["gain"] is None
            else f"{row['gain']:+.3f} [{row['gain_ci95'][0]:+.3f}, {row['gain_ci95'][1]:+.3f}]"
        )
        print(
            f"{row['fraction']:>8} {row['arm']:<16} {row['ratio']:>4} {row['steps']:>5} {row['real_images']:>5} "
            f"{row['added_images']:>5} {ci:>22} {gain}"
        )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset-root", default="datasets/synthetic_or_quality")
    parser.add_argument("--pipeline", default="cpu_quality")
    parser.add_argument(
        "--samples",
        default="runs/benchmarks/action_recognition/samples",
        help="sampling output folder (resumed)",
    )
    parser.add_argument("--manifest", default=None, help="use this manifest.jsonl instead of sampling")
    parser.add_argument("--extra-root", default=None, help="keep the oracle's fresh renders here")
    parser.add_argument("--extra-seed", type=int, default=1)
    parser.add_argument("--synthetic-graphs", type=int, default=200)
    parser.add_argument("--real-scans", type=int, default=100)
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150, help="base steps (ratio r trains steps x (1 + r))")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.25, 0.1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--resummarise", action="store_true", help="rebuild the summary tables of an existing --out result"
    )
    parser.add_argument(
        "--generation-note",
        default=None,
        help="when the synthetic images were drawn by an earlier (resumed) sampling call: its measured cost, "
        "recorded as given",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.resummarise:  # derived views only: the study's numbers are read back unchanged
        result = json.loads(args.out.read_text())
        result["summary"] = summary_table(result["study"])
        result["per_class_at_full_data"] = per_class_comparison(result["study"])
        result["chance_macro_f1"] = chance_levels(result["study"])
    else:
        result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"chance macro-F1: {result['chance_macro_f1']}")
    print(f"timings: {result['timings']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
