"""The downstream study, second protocol: does synthetic data help main-action recognition on real test takes?

    python -m benchmarks.downstream [--work runs/benchmarks/downstream] [--scene-scans 100] [--seeds 0 1 2 3 4]

:func:`or_synth.evaluation.downstream.equal_steps_study` on the quality dataset (``datasets/synthetic_or_quality``,
rendered first if absent), 64 px, cameras 1, 3, 5:

- **real pool**: every training scan (takes 1, 3): the generator's whole training pool is the 100 % regime; the
  low-data regimes (``--fractions``) are subsets of it, and the result says that the generator saw the whole pool;
- **synthetic**: new graphs no real image shows, from the renderer's phase-driven scene process on 4D-OR training
  takes the dataset does not hold (``--scene-takes``), drawn by the shipped generator with the renderer's layout of
  each graph (``python -m or_synth.export graphs=scene_process layout=render``: a graph-derived layout, never a
  real image's masks);
- **oracle**: real renders of exactly those graphs and cameras at the dataset's render settings
  (:func:`or_synth.render.pipeline.render_again`), listed in the synthetic images' order;
- **steps**: one count for every arm, where the real-only arm's validation macro-F1 (takes 4, 8) plateaus
  (``--step-grid``, :func:`~or_synth.evaluation.downstream.plateau_steps`); the curve is recorded;
- **test**: takes 2, 6 only, every scan x the cameras; per scan, paired bootstrap over seeds and test scans.

Writes ``benchmarks/results/downstream.json``; every stage resumes (the export, the renders; the study itself is
re-run, minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.action_recognition import QUALITY_RENDER, by_keys, class_counts, ensure_dataset, real_views  # noqa: E402
from or_synth.data.io import atomic_write_json, repo_relative  # noqa: E402
from or_synth.evaluation.downstream import equal_steps_study, learning_curve, plateau_steps  # noqa: E402
from or_synth.render.pipeline import render_again  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "downstream.json"


def export_synthetic(args) -> Path:
    """The shipped generator's images of new scene-process graphs (a subprocess; it resumes)."""
    out = args.work / "synthetic"
    takes = ",".join(map(str, args.scene_takes))
    command = [
        sys.executable, "-m", "or_synth.export", f"pipeline={args.pipeline}", "graphs=scene_process",
        f"dataset_root={args.dataset_root}", f"scene_process.takes=[{takes}]",
        f"scene_process.scans_per_take={args.scene_scans}", f"scene_process.seed={args.scene_seed}",
        f"cameras=[{','.join(map(str, args.cameras))}]", "layout=render", f"guidance_scale={args.guidance_scale}",
        f"out={out}", "progress=false",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT)
    return out


def link_tree(source: Path, target: Path) -> None:
    """``source`` (a file or a folder) at ``target`` by hard links (copies across file systems): the loader refuses
    symbolic links that lead out of the dataset root."""
    import os
    import shutil

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)
    else:
        link(str(source), str(target))


def merged_dataset(real_root: Path, synthetic_root: Path, out: Path) -> Path:
    """One dataset root holding the real training takes and the synthetic export's takes (new take numbers), the
    real validation and test takes as they are: what ``stage=classifier`` trains the real + synthetic arm of the
    pair task on. Images are hard-linked; the synthetic annotations' boxes are rescaled from the export's pixels to
    the real render size the root declares (boxes are read normalised by it)."""
    from PIL import Image

    from or_synth.evaluation.pairs import rendered_size

    if (out / "relationships_train.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for entry in real_root.resolve().iterdir():
        if (
            entry.name not in ("relationships_train.json", "phases", "processed")
            and not (out / entry.name).exists()
        ):
            link_tree(entry, out / entry.name)
    (out / "phases").mkdir(exist_ok=True)
    for root in (real_root, synthetic_root):
        for phase_file in (root / "phases").glob("*.json"):
            (out / "phases" / phase_file.name).write_bytes(phase_file.read_bytes())
    height, width = rendered_size(real_root)
    for take in sorted(synthetic_root.glob("export_holistic_take*_processed")):
        target = out / take.name
        target.mkdir(exist_ok=True)
        for entry in take.iterdir():
            if entry.name != "or_synth_annotations" and not (target / entry.name).exists():
                link_tree(entry, target / entry.name)
        (target / "or_synth_annotations").mkdir(exist_ok=True)
        with Image.open(next((take / "colorimage").glob("*.jpg"))) as image:  # the export's own pixels
            scale_x, scale_y = width / image.width, height / image.height
        for file in (take / "or_synth_annotations").glob("*.json"):
            document = json.loads(file.read_text())
            for view in document["cameras"].values():
                view["boxes"] = {k: [b[0] * scale_x, b[1] * scale_y, b[2] * scale_x, b[3] * scale_y]
                                 for k, b in view["boxes"].items()}  # fmt: skip
            (target / "or_synth_annotations" / file.name).write_text(json.dumps(document))
    scans = [
        *json.loads((real_root / "relationships_train.json").read_text())["scans"],
        *json.loads((synthetic_root / "relationships_train.json").read_text())["scans"],
    ]
    (out / "relationships_train.json").write_text(json.dumps({"scans": scans}))
    return out


def pair_task(args, synthetic_root: Path) -> dict:
    """The 4D-OR community's own task beside main actions: the relation classifier (image and pair heads, the
    scorer of record's recipe) trained on the real training takes alone and on real + synthetic, scored on the
    real test takes (its quality.json), one run per seed."""
    merged = merged_dataset(Path(args.dataset_root), synthetic_root, args.work / "pair_task" / "merged")
    arms = {}
    for arm, root in (("real_only", Path(args.dataset_root)), ("real_plus_synthetic", merged)):
        scores = []
        for seed in args.pair_seeds:
            name = f"downstream_pairs_{arm}_seed{seed}"
            command = [sys.executable, "-m", "or_synth.train", "experiment=cpu_quality", "stage=classifier",
                       f"dataset.root={root}", f"seed={seed}", f"name={name}", *args.pair_overrides]  # fmt: skip
            subprocess.run(command, check=True, cwd=ROOT)
            quality = json.loads(
                (Path(args.pair_runs_root) / "classifier" / name / "classifier/quality.json").read_text()
            )
            test = quality["test"]
            scores.append({"seed": seed, "pair_predicate_macro_f1_per_scan": test.get("pairs", {}).get("predicate_macro_f1_per_scan"),
                           "image_predicate_macro_f1_per_scan": test["predicate_macro_f1_per_scan"]})  # fmt: skip
        arms[arm] = scores
    gains = [b["pair_predicate_macro_f1_per_scan"] - a["pair_predicate_macro_f1_per_scan"]
             for a, b in zip(arms["real_only"], arms["real_plus_synthetic"], strict=True)
             if a["pair_predicate_macro_f1_per_scan"] is not None and b["pair_predicate_macro_f1_per_scan"] is not None]  # fmt: skip
    return {"arms": arms, "pair_gain_per_seed": [round(g, 4) for g in gains],
            "pair_gain_mean": round(float(np.mean(gains)), 4) if gains else None,
            "note": "scored by each run's own quality.json on the real test takes (no per-scan bootstrap here: "
            "the spread is over seeds)"}  # fmt: skip


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    timings, started = {}, time.perf_counter()
    dataset_root = Path(args.dataset_root)
    ensure_dataset(dataset_root, QUALITY_RENDER)
    synthetic_root = export_synthetic(args)
    timings["export"] = round(time.perf_counter() - started, 1)
    processed = args.work / "processed"
    synthetic, synthetic_keys = real_views(
        synthetic_root, ("train",), args.cameras, args.size, processed / "synthetic"
    )
    scans = sorted({k[:2] for k in synthetic_keys})
    oracle_root = render_again(
        dataset_root, scans, args.work / "oracle", args.oracle_seed, graphs_root=synthetic_root
    )
    oracle_all, oracle_keys = real_views(
        oracle_root, ("train",), args.cameras, args.size, processed / "oracle"
    )
    oracle = by_keys(oracle_all, oracle_keys, synthetic_keys)
    if not torch.equal(oracle.labels, synthetic.labels):
        raise ValueError("the oracle renders do not show the synthetic images' graphs (labels differ)")
    real_train, _ = real_views(dataset_root, ("train",), args.cameras, args.size, processed / "real")
    real_validation, _ = real_views(
        dataset_root, ("validation",), args.cameras, args.size, processed / "real"
    )
    real_test, _ = real_views(dataset_root, ("test",), args.cameras, args.size, processed / "real")
    timings["load"] = round(time.perf_counter() - started - timings["export"], 1)

    def log(line: str) -> None:
        print(line, flush=True)

    begin = time.perf_counter()
    curve = learning_curve(real_train, real_validation, step_grid=args.step_grid, seeds=args.curve_seeds,
                           batch_size=args.batch_size, lr=args.lr, log=log)  # fmt: skip
    steps = plateau_steps(curve, args.plateau_tolerance)
    timings["learning_curve"] = round(time.perf_counter() - begin, 1)
    begin = time.perf_counter()
    study = equal_steps_study(real_train, synthetic, real_test, oracle, steps=steps, batch_size=args.batch_size,
                              seeds=args.seeds, ratios=args.ratios, fractions=args.fractions, lr=args.lr, log=log)  # fmt: skip
    timings["study"] = round(time.perf_counter() - begin, 1)
    pairs = pair_task(args, synthetic_root) if args.pair_task else None
    support = np.array([c["support"] for c in study["rows"][0]["per_class"].values()], dtype=float)
    prevalence = support[support > 0] / support.sum()
    return {
        "setup": {
            "command": "python -m benchmarks.downstream " + " ".join(sys.argv[1:]),
            "dataset_root": str(dataset_root),
            "pipeline": args.pipeline,
            "synthetic": f"{len(synthetic)} images of {len(scans)} scene-process graphs (takes {args.scene_takes}, "
            f"seed {args.scene_seed}) x cameras {args.cameras}, layout=render, guidance {args.guidance_scale}",
            "oracle": f"real renders (seed {args.oracle_seed}) of the same graphs and cameras",
            "real_pool": f"every training scan: {int(real_train.groups.unique().numel())} scans, {len(real_train)} images",
            "generator_saw": "the whole real pool (the generator was trained on every training scan): the "
            "low-data regimes' arms saw less real data than the generator did",
            "validation": f"takes 4, 8: {len(real_validation)} images (the learning curve only)",
            "test": f"takes 2, 6: {int(real_test.groups.unique().numel())} scans, {len(real_test)} images",
            "class_counts_scans": {
                "real_pool": class_counts(real_train),
                "synthetic": class_counts(synthetic),
                "test": class_counts(real_test),
            },  # fmt: skip
        },
        "learning_curve": {"validation": curve, "chosen_steps": steps, "tolerance": args.plateau_tolerance},
        "chance_macro_f1": {"random_at_test_prevalence": round(float(prevalence.mean()), 4)},
        "study": study,
        "pair_task": pairs,
        "timings": timings,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "downstream")
    parser.add_argument("--dataset-root", default="datasets/synthetic_or_quality")
    parser.add_argument("--pipeline", default="cpu_quality")
    parser.add_argument("--scene-takes", type=int, nargs="+", default=[5, 7, 9, 10],
                        help="4D-OR training takes the dataset does not hold: new graphs, no scan id shared")  # fmt: skip
    parser.add_argument("--scene-scans", type=int, default=100, help="scene-process scans per take")
    parser.add_argument("--scene-seed", type=int, default=0)
    parser.add_argument("--oracle-seed", type=int, default=1)
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--step-grid", type=int, nargs="+", default=[100, 200, 400, 800])
    parser.add_argument("--curve-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--plateau-tolerance", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.25, 0.1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--pair-task", action="store_true", help="also the pair head: real vs real + synthetic"
    )
    parser.add_argument("--pair-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pair-runs-root", default="runs", help="runs_root of the pair task's training runs")
    parser.add_argument("--pair-overrides", nargs="*", default=[], help="extra overrides of its training")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    result = run(args)
    atomic_write_json(
        args.out, json.loads(repo_relative(json.dumps(result))), indent=2
    )  # repository-relative paths
    for row in result["study"]["rows"]:
        gain = row.get("gain_over_real_only")
        shown = (
            ""
            if gain is None
            else f"  gain {gain['value']:+.3f} {gain['ci95']}{'' if gain['shown'] else ' (not shown)'}"
        )
        print(
            f"{row['fraction']:>5} {row['arm']:<15} r={row['ratio']:<4} {row['mean']:.3f} {row['macro_f1_interval']['ci95']}{shown}"
        )
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
