"""The headline table by layout source, with the controls that say what the graph contributes (issue 22).

    python -m benchmarks.evidence [--work runs/benchmarks/evidence] [--stage all|select|rows|table]

Protocol (``docs/evaluation.md``, the shared evidence rules): one scorer of record, the evaluation suite's pinned
relation classifier trained on the real training takes (``runs/classifier/cpu_quality/classifier``, image and
pair heads; its hash is pinned in every evaluation); choices on the validation takes (4, 8), every reported number
on the test takes (2, 6); per scan (views and samples averaged) the unit, paired-bootstrap intervals over scans.

1. **select** (validation takes only): the sampler's step count and guidance scale, each candidate sampled with
   ``layout=render`` on ``--select-scans`` validation scans x the cameras and scored by the scorer of record; the
   best per-scan image-level macro-F1 wins (fewer steps on a tie within 0.005).
2. **rows** (test takes): ``--scans`` test scans (every ``stride``-th: a spread over every phase) x cameras 1, 3,
   5 x ``--seeds`` samples per (scan, camera), one ``python -m or_synth.sample`` + ``python -m or_synth.evaluate``
   per row, all with the same image seeds:

   - ``layout=none`` (the graph alone) and its null graph (the unconditional model);
   - ``layout=predicted`` (the layout predictor, learned from the graph), ``layout=render`` (the renderer's
     placement drawn afresh from the graph, seed 1: not the one that made the dataset's images) and ``layout=masks``
     (the dataset's own masks: an oracle-layout upper bound, never the headline), each with the null graph under
     the same layout, and the conflict control (scan i's layout under deranged scan j's graph, scored against i
     and against j);
   - the no-model mask painter on the rendered layouts and on the given masks.

3. **table**: per layout source, the model with its ceiling, the floor that counts (the higher of the derangement
   floor and "always present") and every control, each with its interval; the **graph-attributable
   consistency** (model minus null graph under the same layout) from a paired bootstrap over the same scans of
   the two evaluations; a flag where the painter reaches the model (the layout, not the generator, carries the
   metric). Image level and per (subject, object) pair. Writes ``benchmarks/results/evidence.json`` and
   ``evidence.md``.

Every command it runs is recorded beside its row; a re-run resumes (sampling and evaluation both do).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from or_synth.data.io import atomic_write_json, json_text, repo_relative  # noqa: E402
from or_synth.evaluation.intervals import ScanCounts, excludes, paired_bootstrap  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "evidence.json"
DATASET = "datasets/synthetic_or_quality"
SCORER = "runs/classifier/cpu_quality/classifier"
PREDICTOR = "runs/layout/cpu_quality/predictor"
LAYOUT_SEED = 1  # the dataset was rendered with seed 0: layout=render places each graph afresh
SOURCES = ("none", "predicted", "render", "masks")
LEVELS = (("graph_consistency", "image"), ("pair_consistency", "pair"))


def rows_of(sources=SOURCES) -> list[dict]:
    """Every row: its name, layout, control and pipeline, and whether its label maps are saved (for pairs)."""
    rows = []
    for source in sources:
        saved = source in ("render", "predicted")
        rows.append({"name": source, "layout": source, "control": "none", "save": saved})
        rows.append({"name": f"{source}_null", "layout": source, "control": "null_graph", "save": saved})
        if source != "none":
            rows.append(
                {"name": f"{source}_conflict", "layout": source, "control": "conflict", "save": saved}
            )
    for source in [s for s in ("render", "masks") if s in sources]:
        rows.append({"name": f"painter_{source}", "layout": source, "control": "none", "save": source == "render",
                     "pipeline": "painter"})  # fmt: skip
    return rows


def probe_rows(sources=SOURCES) -> list[dict]:
    """The mask-only probe's test images: each layout's label map in the distinct palette, scored by the probe."""
    return [{"name": f"probe_{source}", "layout": source, "control": "none", "save": source == "render",
             "pipeline": "painter", "palette": "distinct"} for source in ("render", "masks") if source in sources]  # fmt: skip


def run(command: list[str], log: Path) -> float:
    """One command of the protocol, its output in ``log``; a failure stops the benchmark with its tail. Returns
    its wall seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", *command], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        raise SystemExit(
            f"failed ({done.returncode}): python -m {' '.join(command)}\n{log.read_text()[-3000:]}"
        )
    seconds = time.perf_counter() - started
    print(f"  {seconds:7.1f} s  python -m {' '.join(command)}", flush=True)
    return seconds


def sample_command(
    args, row: dict, out: Path, graphs: str, stride: int, steps: int, guidance: float
) -> list[str]:
    pipeline = row.get("pipeline", args.pipeline)
    command = [
        "or_synth.sample", f"pipeline={pipeline}", f"graphs={graphs}", f"dataset_root={args.dataset_root}",
        f"stride={stride}", f"limit={args.scans if graphs == 'test' else args.select_scans}",
        f"cameras=[{','.join(map(str, args.cameras))}]", f"layout={row['layout']}", f"control={row['control']}",
        f"seed={LAYOUT_SEED}", f"steps={steps}", f"guidance_scale={guidance}", f"batch_size={args.batch_size}",
        f"out={out}", "progress=false",
    ]  # fmt: skip
    if pipeline == "painter":
        size = args.painter_size
        command += [f"painter.size=[{size},{size}]", f"painter.dir={args.work / 'painter'}",
                    f"painter.palette={row.get('palette', 'fitted')}"]  # fmt: skip
    else:
        command.append(f"samples_per_graph={args.seeds if graphs == 'test' else 1}")
    if row["layout"] == "predicted":
        command.append(f"layout_predictor={args.predictor}")
    if row["save"]:
        command.append("save_layouts=true")
    return command


def evaluate_command(args, samples: Path, out: Path, scorer: str, against: str = "image") -> list[str]:
    return [
        "or_synth.evaluate", f"samples={samples}", f"classifier={scorer}", f"dataset_root={args.dataset_root}",
        "metrics=[graph_consistency]", f"score_against={against}", f"out={out}", f"cache_dir={args.work / 'cache'}",
        "progress=false",
    ]  # fmt: skip


def split_stride(args, split: str, scans: int) -> int:
    document = json.loads((ROOT / args.dataset_root / f"relationships_{split}.json").read_text())
    return max(len(document["scans"]) // scans, 1)


# --- 1. selection on the validation takes ------------------------------------------------------------------------
def select(args) -> dict:
    """The step count and guidance scale, chosen on validation scans by the scorer of record."""
    stride = split_stride(args, "validation", args.select_scans)
    row = {"layout": "render", "control": "none", "save": False}
    table = []
    for steps in args.select_steps:
        for guidance in args.select_guidance:
            name = f"steps{steps}_g{guidance}"
            samples, out = args.work / "select" / name, args.work / "select_eval" / name
            run(
                sample_command(args, row, samples, "validation", stride, steps, guidance),
                args.work / "logs" / f"select_{name}.log",
            )
            run(
                evaluate_command(args, samples, out, args.scorer),
                args.work / "logs" / f"select_{name}_eval.log",
            )
            report = json.loads((out / "metrics.json").read_text())["details"]["graph_consistency"]
            table.append({"steps": steps, "guidance_scale": guidance,
                          "per_scan": report["model"]["predicate_macro_f1_per_scan"],
                          "pairs_per_scan": (json.loads((out / "metrics.json").read_text())["details"]
                                             .get("pair_consistency", {}).get("model", {}).get("predicate_macro_f1_per_scan"))})  # fmt: skip
    best = max(table, key=lambda r: (round(r["per_scan"] / 0.005), -r["steps"]))
    return {"split": "validation", "scans": args.select_scans, "stride": stride, "layout": "render",
            "criterion": "image-level predicate macro-F1 per scan (scorer of record); fewer steps on a tie within 0.005",
            "candidates": table, "chosen": {"steps": best["steps"], "guidance_scale": best["guidance_scale"]}}  # fmt: skip


# --- 2. the rows on the test takes ---------------------------------------------------------------------------------
def sample_and_score(args, steps: int, guidance: float) -> dict:
    stride = split_stride(args, "test", args.scans)
    commands = {}
    for row in rows_of(args.sources):
        samples = args.work / "rows" / row["name"]
        sample = sample_command(args, row, samples, "test", stride, steps, guidance)
        run(sample, args.work / "logs" / f"{row['name']}.log")
        evaluations = {
            "image": evaluate_command(args, samples, args.work / "eval" / row["name"], args.scorer)
        }
        if row["control"] == "conflict":
            evaluations["graph"] = evaluate_command(
                args, samples, args.work / "eval" / f"{row['name']}_vs_graph", args.scorer, "graph"
            )
        if row["control"] == "none" and row.get("pipeline") is None:
            for k, scorer in enumerate(args.scorer_seeds, start=1):
                evaluations[f"scorer_seed{k}"] = evaluate_command(
                    args, samples, args.work / "eval" / f"{row['name']}_scorer{k}", scorer
                )
        for key, command in evaluations.items():
            run(command, args.work / "logs" / f"{row['name']}_eval_{key}.log")
        commands[row["name"]] = {"sample": "python -m " + " ".join(sample),
                                 **{f"evaluate_{k}": "python -m " + " ".join(c) for k, c in evaluations.items()}}  # fmt: skip
    return {"stride": stride, "commands": commands}


# --- 2b. the mask-only probe --------------------------------------------------------------------------------------
def probe(args, steps: int, guidance: float) -> dict:
    """A relation classifier of the scorer's recipe trained on the training takes' label maps alone (a copy of the
    dataset whose images are its instance masks in one distinct colour per label), then scoring the rows' test
    scans' label maps: what the layout says about the graph without a single generated pixel."""
    from or_synth.sampling.painter import write_painted_dataset

    painted = write_painted_dataset(ROOT / args.dataset_root, args.work / "painted", progress=True)
    train = ["or_synth.train", "experiment=cpu_quality", "stage=classifier", f"dataset.root={painted}",
             f"name={args.probe_name}", *args.probe_overrides]  # fmt: skip
    run(train, args.work / "logs" / "probe_train.log")
    classifier = Path(args.probe_runs_root) / "classifier" / args.probe_name / "classifier"
    stride = split_stride(args, "test", args.scans)
    commands = {"train": "python -m " + " ".join(train)}
    for row in probe_rows(args.sources):
        samples = args.work / "rows" / row["name"]
        sample = sample_command(args, row, samples, "test", stride, steps, guidance)
        run(sample, args.work / "logs" / f"{row['name']}.log")
        evaluate = evaluate_command(args, samples, args.work / "eval" / row["name"], str(classifier))
        run(evaluate, args.work / "logs" / f"{row['name']}_eval.log")
        commands[row["name"]] = {"sample": "python -m " + " ".join(sample), "evaluate": "python -m " + " ".join(evaluate)}  # fmt: skip
    quality = json.loads((classifier / "quality.json").read_text())
    return {"classifier": str(classifier), "quality_on_painted_held_out": quality, "commands": commands}


# --- 3. the table --------------------------------------------------------------------------------------------------
def per_scan(folder: Path, metric: str) -> dict | None:
    path = folder / f"per_scan_{metric}.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def counts(arrays: dict, row: str) -> ScanCounts:
    return ScanCounts.from_rows(
        list(arrays["keys"]), arrays[f"{row}/tp"], arrays[f"{row}/fp"], arrays[f"{row}/fn"]
    )


def floors(arrays: dict) -> list[ScanCounts]:
    k = 0
    out = []
    while f"floor_{k}/tp" in arrays:
        out.append(counts(arrays, f"floor_{k}"))
        k += 1
    return out


def level_table(args, source: str, metric: str) -> dict | None:
    """One layout source at one level: every row's per-scan macro-F1 with its interval, from one paired bootstrap
    over the scans all its evaluations share, and the differences a claim rests on."""
    names = [r["name"] for r in rows_of([source]) + probe_rows([source])]
    loaded = {name: per_scan(args.work / "eval" / name, metric) for name in names}
    model = loaded.get(source)
    if model is None:
        return None
    keys = list(model["keys"])
    if "present" in model:  # the predicates of the scored graphs (image level)
        present = np.asarray(model["present"]).astype(bool)
    else:  # pair level: the predicates some pair of the model or the ceiling holds
        present = counts(model, "model").support.sum(0) > 0
        if "ceiling/tp" in model:
            present |= counts(model, "ceiling").support.sum(0) > 0
    rows = {
        "model": counts(model, "model"),
        "floor": floors(model),
        "always_present": counts(model, "always_present"),
    }
    if "ceiling/tp" in model:
        rows["ceiling"] = counts(model, "ceiling")
    if "labels_only/tp" in model:
        rows["labels_only"] = counts(model, "labels_only")
    for name, arrays in loaded.items():
        if name == source or arrays is None or list(arrays["keys"]) != keys:
            continue
        rows[name.removeprefix(f"{source}_")] = counts(arrays, "model")
    differences = [("model", "floor_that_counts")]
    if "ceiling" in rows:
        differences.append(("ceiling", "model"))
    for control in ("null", "conflict", f"painter_{source}", f"probe_{source}"):
        if control in rows:
            differences.append(("model", control))
    bootstrap = paired_bootstrap(rows, present, differences=differences,
                                 best_of={"floor_that_counts": ("floor", "always_present")}, seed=0)  # fmt: skip
    against_graph = per_scan(args.work / "eval" / f"{source}_conflict_vs_graph", metric)
    if against_graph is not None:
        scored = paired_bootstrap({"conflict_vs_graph": counts(against_graph, "model")}, present, seed=0)
        bootstrap["rows"]["conflict_vs_graph"] = scored["rows"]["conflict_vs_graph"]
    table = {
        "rows": bootstrap["rows"],
        "differences": bootstrap["differences"],
        "n_scans": bootstrap["n_scans"],
    }
    if "model - null" in table["differences"]:
        attributable = table["differences"]["model - null"]
        table["graph_attributable"] = {**attributable, "shown": excludes(attributable["ci95"])}
    painter = table["differences"].get(f"model - painter_{source}")
    if painter is not None:
        table["painter_reaches_model"] = not (painter["ci95"][0] > 0)
    probed = table["differences"].get(f"model - probe_{source}")
    if (
        probed is not None
    ):  # the probe scores label maps with its own classifier: the layout's information alone
        table["probe_reaches_model"] = not (probed["ci95"][0] > 0)
    return table


def scorer_variance(args, source: str) -> dict:
    """The model row's per-scan image-level macro-F1 by each scorer seed (the scorer's own variance)."""
    values = {}
    for name in [source, *(f"{source}_scorer{k}" for k in range(1, len(args.scorer_seeds) + 1))]:
        path = args.work / "eval" / name / "metrics.json"
        if path.is_file():
            report = json.loads(path.read_text())["details"]["graph_consistency"]
            values[name] = {"model": report["model"]["predicate_macro_f1_per_scan"],
                            "ceiling": report["ceiling"]["predicate_macro_f1_per_scan"]}  # fmt: skip
    models = [v["model"] for v in values.values()]
    return {"by_scorer": values, "model_mean": round(float(np.mean(models)), 4) if models else None,
            "model_spread": [round(min(models), 4), round(max(models), 4)] if models else None}  # fmt: skip


def table(args) -> dict:
    out = {}
    for source in args.sources:
        out[source] = {level: level_table(args, source, metric) for metric, level in LEVELS}
        out[source]["scorer_seeds"] = scorer_variance(args, source)
    return out


def markdown(document: dict) -> str:
    lines = ["# Graph consistency by layout source, with controls (test takes 2, 6)", "",
             f"Scorer of record `{document['setup']['scorer']}` (hash {document['setup']['scorer_hash']}); "
             f"{document['setup']['scans']} test scans x cameras {document['setup']['cameras']} x "
             f"{document['setup']['seeds']} samples; per-scan predicate macro-F1 with 95 % paired-bootstrap intervals.", ""]  # fmt: skip
    for level in ("image", "pair"):
        lines += [f"## {level} level", "", "| layout | model | null graph | conflict (vs layout / vs graph) | painter | "
                  "mask-only probe | ceiling | floor that counts | graph-attributable (model - null) |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for source, by_level in document["table"].items():
            t = by_level.get(level)
            if not t:
                continue
            r = t["rows"]

            def cell(name, r=r):
                return (
                    f"{r[name]['value']:.3f} [{r[name]['ci95'][0]:.3f}, {r[name]['ci95'][1]:.3f}]"
                    if name in r
                    else "-"
                )

            conflict = f"{cell('conflict')} / {cell('conflict_vs_graph')}" if "conflict" in r else "-"
            painter, probed = cell(f"painter_{source}"), cell(f"probe_{source}")
            attributable = t.get("graph_attributable")
            shown = "-" if not attributable else (
                f"{attributable['value']:+.3f} [{attributable['ci95'][0]:+.3f}, {attributable['ci95'][1]:+.3f}]"
                + ("" if attributable["shown"] else " (not shown)"))  # fmt: skip
            lines.append(f"| {source} | {cell('model')} | {cell('null')} | {conflict} | {painter} | {probed} | {cell('ceiling')} | "
                         f"{cell('floor_that_counts')} | {shown} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "evidence")
    parser.add_argument("--stage", choices=("all", "select", "rows", "probe", "table"), default="all")
    parser.add_argument("--pipeline", default="cpu_quality")
    parser.add_argument("--dataset-root", default=DATASET)
    parser.add_argument("--scorer", default=SCORER)
    parser.add_argument("--scorer-seeds", nargs="*", default=["runs/classifier/cpu_quality_seed1/classifier",
                                                            "runs/classifier/cpu_quality_seed2/classifier"])  # fmt: skip
    parser.add_argument("--predictor", default=PREDICTOR)
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES))
    parser.add_argument("--select-scans", type=int, default=40)
    parser.add_argument("--select-steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--select-guidance", type=float, nargs="+", default=[1.5, 3.0, 5.0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--painter-size", type=int, default=64, help="the generator's image size")
    parser.add_argument(
        "--probe-name", default="cpu_quality_mask_probe", help="the probe's training run name"
    )
    parser.add_argument("--probe-runs-root", default="runs", help="where training writes runs (runs_root)")
    parser.add_argument(
        "--probe-overrides", nargs="*", default=[], help="extra overrides of the probe's training"
    )
    parser.add_argument(
        "--no-probe", action="store_true", help="leave the mask-only probe out of --stage all"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    state_path = args.work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    started = time.perf_counter()
    if args.stage in ("all", "select") and "selection" not in state:
        print("select (validation takes)", flush=True)
        state["selection"] = select(args)
        atomic_write_json(state_path, state, indent=2)
    chosen = state.get("selection", {}).get("chosen", {"steps": 20, "guidance_scale": 3.0})
    if args.stage in ("all", "rows"):
        print(f"rows (test takes): steps {chosen['steps']}, guidance {chosen['guidance_scale']}", flush=True)
        state["rows"] = sample_and_score(args, chosen["steps"], chosen["guidance_scale"])
        atomic_write_json(state_path, state, indent=2)
    if args.stage == "probe" or (args.stage == "all" and not args.no_probe):
        print("mask-only probe (trained on training-take label maps)", flush=True)
        state["probe"] = probe(args, chosen["steps"], chosen["guidance_scale"])
        atomic_write_json(state_path, state, indent=2)
    if args.stage in ("all", "table"):
        from or_synth.evaluation.relation_classifier import classifier_hash

        document = {
            "setup": {
                "pipeline": args.pipeline,
                "dataset_root": args.dataset_root,
                "scorer": args.scorer,
                "scorer_hash": classifier_hash(ROOT / args.scorer),
                "scorer_seeds": args.scorer_seeds,
                "predictor": args.predictor,
                "scans": args.scans,
                "seeds": args.seeds,
                "cameras": args.cameras,
                "split": "test (takes 2, 6)",
                "sampling": chosen,
                "layout_seed": LAYOUT_SEED,
                "command": "python -m benchmarks.evidence",
            },  # fmt: skip
            "selection": state.get("selection"),
            "commands": state.get("rows", {}).get("commands"),
            "probe": state.get("probe"),
            "table": table(args),
            "seconds_this_run": round(time.perf_counter() - started, 1),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            repo_relative(json_text(document, indent=2)) + "\n"
        )  # paths as the repository names them
        args.out.with_suffix(".md").write_text(repo_relative(markdown(document)))
        print(markdown(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
