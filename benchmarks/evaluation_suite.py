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

import numpy as np
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


def stride(root: Path, scans: int, split: str = "validation") -> int:
    """The ``stride=`` of or_synth.sample that spreads ``scans`` graphs over the split (every phase)."""
    return max(len(load_scene_graphs(relationships_file(root, split))) // scans, 1)


def disjoint_graphs(args, out: Path, scans: int) -> Path:
    """A relationships file of ``scans`` scans of the split spread over those the main sample does NOT hold, so
    the multi-view rows are measured on other scans than the headline's."""
    document = json.loads(relationships_file(args.dataset_root, args.split).read_text())
    every = stride(args.dataset_root, args.scans, args.split)
    main_rows = set(range(0, len(document["scans"]), every)[: args.scans])
    others = [s for i, s in enumerate(document["scans"]) if i not in main_rows]
    picked = [others[i] for i in np.unique(np.linspace(0, len(others) - 1, scans).round().astype(int))]
    path = out / f"relationships_{args.split}.json"
    out.mkdir(parents=True, exist_ok=True)
    # The rest of the dataset beside the file (linked), so layout=masks finds each scan's frames and masks there.
    for entry in Path(args.dataset_root).resolve().iterdir():
        link = out / entry.name
        if not entry.name.startswith("relationships_") and not link.exists():
            link.symlink_to(entry)
    path.write_text(json.dumps({**{k: v for k, v in document.items() if k != "scans"}, "scans": picked}))
    return path


def stratified_edits(record) -> list[str]:
    """One edit of each kind the graph allows: a surgical predicate changed, a staff role changed, a staff
    member removed (:func:`benchmarks.edit_locality.edits_for`), and a circulating nurse added beside the
    patient when the graph has none."""
    from benchmarks.edit_locality import edits_for
    from or_synth.data.vocabulary import is_human_class

    edits = list(edits_for(record).values())
    target = next((name for name in ("Patient", "operating_table") if name in record.object_names), None)
    if "circulating-nurse" not in record.roles and target is not None:
        used = {
            int(n.split("_")[1])
            for n in record.object_names
            if is_human_class(n) and n.split("_")[1].isdigit()
        }
        free = next(i for i in range(10) if i not in used)
        edits.append(f"add human_{free}:circulating-nurse CloseTo {target}")
    return edits


def draw_samples(
    args,
    out: Path,
    scans: int | None = None,
    cameras: list[int] | None = None,
    graphs: Path | None = None,
    control: str = "none",
) -> float:
    from or_synth.cli import load_config
    from or_synth.sampling import sample

    started = time.perf_counter()
    sample(
        load_config(
            "sample",
            [
                f"pipeline={args.pipeline}",
                f"graphs={graphs or args.split}",
                f"dataset_root={args.dataset_root}",
                f"stride={1 if graphs else stride(args.dataset_root, scans or args.scans, args.split)}",
                f"limit={scans or args.scans}",
                f"cameras=[{','.join(map(str, cameras or args.cameras))}]",
                f"layout={args.layout if control == 'none' else 'none'}",
                "guidance_scale=3",
                f"control={control}",
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
    graphs = relationships_file(args.dataset_root, args.split)
    every = stride(args.dataset_root, args.edit_scans, args.split)
    for record in load_scene_graphs(graphs).records[::every][: args.edit_scans]:
        applied = 0
        for text in stratified_edits(record) if args.stratified_edits else EDITS:
            if applied == args.edits_per_scan:
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
                            f"graphs={args.split}",
                            f"dataset_root={args.dataset_root}",
                            f"scan={record.take}/{record.scan}",
                            f"edit={text}",
                            f"layout={args.layout}",
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


def main(argv: list[str] | None = None) -> None:
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
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--layout", default="masks", choices=("masks", "render", "predicted", "none"))
    parser.add_argument("--edits-per-scan", type=int, default=2)
    parser.add_argument("--stratified-edits", action="store_true", help="one edit of each kind per scan")
    parser.add_argument(
        "--disjoint-six-views", action="store_true", help="six-view scans not in the main set"
    )
    parser.add_argument(
        "--codec-row", action="store_true", help="score the autoencoder's reconstructions too"
    )
    parser.add_argument(
        "--protocol", choices=("recorded", "test"), default="recorded",
        help="test: the evidence protocol's settings (test takes, 200 scans, rendered layouts, about 55 edits of "
        "the four kinds, six views on other scans) into evaluation_suite_test.json",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.protocol == "test":
        args.split, args.layout, args.scans = "test", "render", 200
        args.edit_scans, args.edits_per_scan = 25, 4  # about 55 edits of the four kinds
        args.stratified_edits = args.disjoint_six_views = args.codec_row = True
        args.work = Path("runs/benchmarks/evaluation_suite_test")
        args.out = RESULTS.with_name("evaluation_suite_test.json")
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

    codec = None
    if args.codec_row:  # the same scans' real images through the pipeline's autoencoder alone
        draw_samples(args, args.work / "reconstructions", control="reconstruction")
        codec, _ = run_evaluation(
            args, args.work / "reconstructions", args.work / "eval_reconstructions", cache,
            "[classifier_fd,graph_consistency]",
        )  # fmt: skip

    six_views = args.work / "samples_six_views"
    others = (
        disjoint_graphs(args, args.work / "six_view_graphs", args.six_view_scans)
        if args.disjoint_six_views
        else None
    )
    draw_samples(args, six_views, args.six_view_scans, [1, 2, 3, 4, 5, 6], graphs=others)
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
            "scans_disjoint_from_main_set": bool(args.disjoint_six_views),
            "per_camera_predicate_macro_f1_per_image": multi["per_camera"],
            "per_camera_ceiling": multi.get("per_camera_ceiling"),
            "view_agreement": multi["view_agreement"],
            "view_agreement_real": multi.get("view_agreement_real"),
            **{k: multi[k]["predicate_macro_f1_per_scan"] for k in ("model", "ceiling", "floor")},
        },
        "relation_sensitivity": {
            k: sensitivity["details"]["relation_sensitivity"].get(k)
            for k in ("after", "full", "null", "after_minus_null", "by_edit_kind", "n_edits")
        },
        "classifier_prdc": first["cards"].get("classifier_prdc"),
        "codec_reconstruction": None
        if codec is None
        else {
            "what": "the same scans' real images encoded and decoded by the pipeline's autoencoder (no denoiser)",
            **{
                name: codec["cards"][name]["value"]
                for name in ("classifier_fd", "classifier_kid", "classifier_prdc")
            },
            "graph_consistency": codec["details"]["graph_consistency"]["model"],
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
            "samples": f"{args.scans} {args.split} scans (spread over the split) x cameras {args.cameras}, layout "
            f"{args.layout}, dpmsolver++ 20 steps, guidance 3",
            "protocol": args.protocol,
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
