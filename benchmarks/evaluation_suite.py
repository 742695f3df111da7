"""The evaluation suite on the shipped generator, and the suite's own speed.

    python -m benchmarks.evaluation_suite --classifier runs/classifier/cpu_quality/classifier

1. Samples the shipped ``cpu_quality`` pipeline (``or_synth.sample``, its instance masks, DPM-Solver++ 20 steps,
   guidance 3) on ``--scans`` validation scans spread evenly over the split x ``--cameras``.
2. Scores them with :func:`or_synth.evaluation.evaluate` (``python -m or_synth.evaluate``): the relation
   classifier's FD / KID, graph consistency (ceiling, floor, chance, per predicate, per camera; and per (subject,
   object) pair, in the boxes of the masks the samples were drawn from) and memorisation, on a fresh reference
   cache (the first run extracts the real validation and training features), then runs the same evaluation
   again, served from the cached reference features: the speed-up is the ratio of the two wall times.
3. Multi-view consistency: ``--six-view-scans`` other validation scans, each generated for all six cameras, scored
   per camera, with how often the six views agree on the predicate set.
4. Relation sensitivity: ``or_synth.edit`` on ``--edit-scans`` validation scans (the first edits of
   :data:`EDITS` that apply to each graph), scored by ``metrics=[relation_sensitivity]``.

Feature extraction speed (images/s of the classifier pass) comes from the evaluation's own timings. Writes
``benchmarks/results/evaluation_suite.json``; the work folder (``--work``) keeps samples and edits, so a re-run
resumes instead of regenerating.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from or_synth.data import load_scene_graphs, relationships_file
from or_synth.data.edits import GraphEditError, parse_edit
from or_synth.data.io import atomic_write_json
from or_synth.evaluation import evaluate

RESULTS = Path(__file__).resolve().parent / "results" / "evaluation_suite.json"
# Tried in order per scan; the first two that apply to its graph are drawn.
EDITS = (
    "predicate head-surgeon Patient Sawing",
    "predicate head-surgeon Patient Hammering",
    "predicate head-surgeon Patient Drilling",
    "swap head-surgeon Patient",
    "remove assistant-surgeon",
    "remove circulating-nurse",
    "remove anaesthetist",
)


def stride(root: Path, scans: int) -> int:
    """The ``stride=`` of or_synth.sample that spreads ``scans`` graphs over the validation split (every phase)."""
    return max(len(load_scene_graphs(relationships_file(root, "validation"))) // scans, 1)


def draw_samples(args, out: Path, scans: int | None = None, cameras: list[int] | None = None) -> float:
    from or_synth.cli import load_config
    from or_synth.sampling import sample

    started = time.perf_counter()
    sample(
        load_config(
            "sample",
            [
                f"pipeline={args.pipeline}",
                "graphs=validation",
                f"dataset_root={args.dataset_root}",
                f"stride={stride(args.dataset_root, scans or args.scans)}",
                f"limit={scans or args.scans}",
                f"cameras=[{','.join(map(str, cameras or args.cameras))}]",
                "layout=masks",
                "guidance_scale=3",
                f"out={out}",
                "progress=false",
            ],
        )
    )
    return time.perf_counter() - started


def draw_edits(args, out: Path) -> list[str]:
    from or_synth.cli import load_config
    from or_synth.sampling import apply_drawable_edit, edit

    done = []
    graphs = relationships_file(args.dataset_root, "validation")
    every = stride(args.dataset_root, args.edit_scans)
    for record in load_scene_graphs(graphs).records[::every][: args.edit_scans]:
        applied = 0
        for text in EDITS:
            if applied == 2:
                break
            try:
                apply_drawable_edit(record, parse_edit(text))
            except GraphEditError:
                continue
            folder = out / f"{record.take}_{record.scan}_{text.replace(' ', '_')}"
            if not (folder / "edit.json").is_file():
                edit(
                    load_config(
                        "edit",
                        [
                            f"pipeline={args.pipeline}",
                            "graphs=validation",
                            f"dataset_root={args.dataset_root}",
                            f"scan={record.take}/{record.scan}",
                            f"edit={text}",
                            "layout=masks",
                            f"cameras=[{','.join(map(str, args.cameras[:2]))}]",
                            f"out={out}",
                        ],
                    )
                )
            done.append(text)
            applied += 1
    return done


def run_evaluation(
    args, samples: Path, out: Path, cache: Path, metrics: str, *extra: str
) -> tuple[dict, float]:
    from or_synth.cli import load_config

    started = time.perf_counter()
    document = evaluate(
        load_config(
            "evaluate",
            [
                f"samples={samples}",
                f"classifier={args.classifier}",
                f"dataset_root={args.dataset_root}",
                f"out={out}",
                f"cache_dir={cache}",
                f"metrics={metrics}",
                "progress=false",
                *extra,
            ],
        )
    )
    return document, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classifier", type=Path, required=True)
    parser.add_argument("--pipeline", default="cpu_quality")
    parser.add_argument("--dataset-root", type=Path, default=Path("datasets/synthetic_or_quality"))
    parser.add_argument("--scans", type=int, default=40)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--edit-scans", type=int, default=5)
    parser.add_argument("--six-view-scans", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks/evaluation_suite"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sample_seconds = draw_samples(args, args.work / "samples")
    cache = args.work / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first run must compute the reference features
    metrics = "[classifier_fd,graph_consistency,memorisation]"
    first, first_seconds = run_evaluation(args, args.work / "samples", args.work / "eval", cache, metrics)
    second, second_seconds = run_evaluation(
        args, args.work / "samples", args.work / "eval_cached", cache, metrics
    )
    assert second["metrics"] == first["metrics"], "the cached reference changed a number"

    six_views = args.work / "samples_six_views"
    draw_samples(args, six_views, args.six_view_scans, [1, 2, 3, 4, 5, 6])
    multi_view, _ = run_evaluation(
        args, six_views, args.work / "eval_six_views", cache, "[graph_consistency]"
    )
    multi = multi_view["details"]["graph_consistency"]

    edits = draw_edits(args, args.work / "edits")
    sensitivity, _ = run_evaluation(
        args, args.work / "samples", args.work / "eval_edits", cache, "[relation_sensitivity]",
        f"edits={args.work / 'edits'}",
    )  # fmt: skip

    quality = json.loads((args.classifier / "quality.json").read_text())
    consistency = first["details"]["graph_consistency"]
    pairs = first["details"].get("pair_consistency")
    if pairs is None:
        raise SystemExit(f"no pair-level consistency: {consistency['pairs']['why']}")
    result = {
        "classifier_quality_on_real_held_out": {
            split: {
                **{k: v for k, v in scores.items() if k not in ("predicates", "pairs")},
                "pairs": {k: v for k, v in scores["pairs"].items() if k != "predicates"},
            }
            for split, scores in quality.items()
        },
        "classifier_quality_per_predicate_validation": quality["validation"]["predicates"],
        "classifier_pair_quality_per_predicate_validation": quality["validation"]["pairs"]["predicates"],
        "graph_consistency": {k: consistency[k] for k in ("model", "ceiling", "floor", "chance")},
        "graph_consistency_ratios": {k: v for k, v in consistency.items() if k.startswith("model_")},
        "graph_consistency_per_predicate": consistency["predicates"],
        "graph_consistency_per_camera": consistency["per_camera"],
        "view_agreement": consistency["view_agreement"],
        "pair_consistency": {k: pairs[k] for k in ("model", "ceiling", "floor", "labels_only", "chance")},
        "pair_consistency_ratios": {k: v for k, v in pairs.items() if k.startswith("model_")},
        "pair_consistency_per_predicate": pairs["predicates"],
        "pair_consistency_counts": {
            k: pairs[k]
            for k in (
                "n_pairs",
                "n_real_pairs",
                "n_pairs_with_a_relation",
                "n_images_with_pairs",
                "box_source",
            )
        },
        "classifier_fd": first["cards"]["classifier_fd"],
        "classifier_kid": first["cards"]["classifier_kid"]["value"],
        "memorisation": {
            "summary": first["details"]["memorisation"]["summary"],
            "heldout_baseline": first["details"]["memorisation"]["heldout_baseline"],
        },
        "multi_view": {
            "scans": args.six_view_scans,
            "per_camera_predicate_macro_f1_per_image": multi["per_camera"],
            "view_agreement": multi["view_agreement"],
            **{k: multi[k]["predicate_macro_f1_per_scan"] for k in ("model", "ceiling", "floor")},
        },
        "relation_sensitivity": {
            k: sensitivity["details"]["relation_sensitivity"][k] for k in ("after", "full")
        },
        "edits": edits,
        "speed": {
            "sample_seconds": round(sample_seconds, 1),
            "evaluation_seconds_first": round(first_seconds, 2),
            "evaluation_seconds_cached_reference": round(second_seconds, 2),
            "cached_speedup": round(first_seconds / second_seconds, 2),
            "timings_first": first["timings_seconds"],
            "timings_cached": second["timings_seconds"],
        },
        "setup": {
            "pipeline": args.pipeline,
            "dataset_root": str(args.dataset_root),
            "samples": f"{args.scans} validation scans (spread over the split) x cameras {args.cameras}, layout "
            "masks, dpmsolver++ 20 steps, guidance 3",
            "classifier": str(args.classifier),
            "threads": args.threads,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result, indent=2)
    print(json.dumps({k: result[k] for k in ("graph_consistency", "pair_consistency", "speed")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
