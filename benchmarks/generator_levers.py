"""Which levers make the CPU generator learn faster? Each lever trained for the same wall-clock budget, scored.

    python -m benchmarks.generator_levers [--budget 1800] [--jobs 2] [--only base small_unet ...]

Every lever is one base (``experiment=cpu_quality`` with epsilon prediction and plain MSE, as it stood before the
table picked v-prediction: patch codec, layout channel, constant LR after warm-up) with ONE change, trained by ``python -m or_synth.train stage=ldm`` for ``--budget`` seconds of training
wall time (``ldm.time_budget_s``; the shared first stage and ``align`` encoder are made once, first) and scored by
:mod:`benchmarks.generator_quality` with one fixed classifier (``--classifier-steps``, cached) on the same held-out
validation scans: generated, ceiling (real renders), floor (graphs shuffled across scans), macro-F1 per scan.

``--jobs 2`` trains two levers side by side with ``--threads 1`` each: every lever gets the same share of the
machine (one core for ``--budget`` seconds), whatever runs beside it. Finished levers are skipped on a re-run
(their scores under ``benchmarks/results/levers/``), so the table can be filled in several sittings. Levers that
only change how a trained run is sampled (EMA off, guidance) reuse the ``base`` run.

Writes ``benchmarks/results/generator_levers.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from or_synth.generator import ORScenePipeline, pipeline_hash

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = ["experiment=cpu_quality"]
# The table's reference point, pinned here because the recipe took the table's winner afterwards (v-prediction
# with min-SNR): every lever is this base with one change.
BASE = ["scheduler.prediction_type=epsilon", "ldm.snr_gamma=null"]

# name -> (what it changes, training overrides, sampling: {"from": run, "raw": bool, "guidance": float}).
LEVERS: dict[str, tuple[str, list[str], dict]] = {
    "base": ("the base: cpu UNet (6.9 M), epsilon, lr 1e-3, EMA 0.995, layout on, graph tokens", [], {}),
    "small_unet": (
        "denoiser size vs steps: UNet (32, 64, 64), about 4x fewer FLOPs per step",
        ["denoiser.arch.block_out_channels=[32,64,64]", "denoiser.arch.attention_head_dim=16"],
        {},
    ),
    "v_minsnr": (
        "loss: v-prediction with min-SNR-5 weighting",
        ["scheduler.prediction_type=v_prediction", "ldm.snr_gamma=5.0"],
        {},
    ),
    "sample_minsnr": (
        "loss: x0 (sample) prediction with min-SNR-5 weighting",
        ["scheduler.prediction_type=sample", "ldm.snr_gamma=5.0"],
        {},
    ),
    "lr_3e-4": ("learning rate 3e-4 (recipe 1e-3)", ["ldm.lr=3.0e-4"], {}),
    "no_layout": ("layout channel off: graph tokens only", ["ldm.layout=false"], {"layout": "none"}),
    "label_tokens": (
        "plain label tokens: no message passing, no align (encoder.graph.layers=0, fresh encoder)",
        ["encoder.graph.layers=0", "ldm.encoder_dir=null"],
        {},
    ),
    # The encoder ablation of the evaluation suite (#9): base = the align-adapted encoder; label_tokens = label
    # embeddings without message passing; this = the same graph network untrained by align (fresh, learning only
    # with the denoiser). Trained for the base's step count (1466), so it is step-matched whatever the machine's load.
    "untrained_encoder": (
        "untrained encoder: the graph network without align (ldm.encoder_dir=null), step-matched to base",
        ["ldm.encoder_dir=null", "ldm.steps=1466"],
        {},
    ),
    # The encoder question's pretrained-text arm (#23): label embeddings of real all-MiniLM-L6-v2 weights (offline,
    # encoder.label_text=minilm), align retrained on them, then the base's generator, step-matched.
    "minilm_labels": (
        "pretrained MiniLM label embeddings (all-MiniLM-L6-v2, offline), align on them, step-matched to base",
        [
            "encoder.label_text=minilm",
            "align.run_dir=${runs_root}/align/cpu_quality_minilm",
            "ldm.steps=1466",
        ],
        {
            "first_stage": ["stage=align", "encoder.label_text=minilm", "name=cpu_quality_minilm"],
            "first_stage_output": "runs/align/cpu_quality_minilm/encoder",
        },  # fmt: skip
    ),
    "no_whitening": (
        "codec without whitening (latent channels keep PCA's variance spread)",
        ["autoencoder.arch.whiten=false", "vae.run_dir=${runs_root}/vae/cpu_quality_nowhiten"],
        {
            "first_stage": ["stage=vae", "autoencoder.arch.whiten=false", "name=cpu_quality_nowhiten"],
            "first_stage_output": "runs/vae/cpu_quality_nowhiten/autoencoder",
        },  # fmt: skip
    ),
    "ema_off": ("EMA off: the base run's raw weights", None, {"from": "base", "raw": True}),
    "guidance_3": (
        "sampling: classifier-free guidance 3 (others: 1)",
        None,
        {"from": "base", "guidance": 3.0},
    ),
}


def train_command(name: str, overrides: list[str], budget: float, steps: int | None = None) -> list[str]:
    shared = [  # the recipe's first stage and align encoder, unless the lever replaces them
        f"{key}.run_dir=${{runs_root}}/{key}/cpu_quality"
        for key in ("vae", "align")
        if not any(o.startswith(f"{key}.run_dir=") for o in overrides)
    ]
    return [
        sys.executable,
        "-m",
        "or_synth.train",
        *RECIPE,
        "stage=ldm",
        f"name=lever_{name}",
        *shared,
        f"ldm.time_budget_s={budget}",
        "ldm.sample_every=1000000",  # one grid, at the end
        *BASE,
        *([f"ldm.steps={steps}"] if steps else []),
        *overrides,
    ]


def run_logged(command: list[str], log: Path, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {done.returncode}); see {log}")


def raw_pipeline(run_dir: Path) -> Path:
    """The run's pipeline with its last checkpoint's training weights instead of the EMA ones."""
    from safetensors.torch import load_file

    from or_synth.training.checkpoints import latest_checkpoint

    out = run_dir / "pipeline_raw"
    if (out / "model_index.json").is_file():
        return out
    pipe = ORScenePipeline.from_pretrained(run_dir / "pipeline")
    weights = load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))
    pipe.unet.load_state_dict({k[len("unet.") :]: v for k, v in weights.items() if k.startswith("unet.")})
    pipe.graph_encoder.load_state_dict(
        {k[len("conditioner.") :]: v for k, v in weights.items() if k.startswith("conditioner.")}
    )
    tmp = run_dir / "pipeline_raw.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    tmp.replace(out)
    return out


def lever(name: str, args) -> dict:
    """Train (unless done) and score one lever; returns its table row."""
    description, overrides, sampling = LEVERS[name]
    # Each table keeps its own per-lever scores (the lever table's in levers/, another --out's beside it).
    scores_dir = (
        RESULTS / "levers" if args.out == RESULTS / "generator_levers.json" else args.out.with_suffix("")
    )
    score_path = scores_dir / f"{name}.json"
    log = ROOT / "runs" / "levers" / f"{name}.log"
    run_dir = ROOT / "runs" / "ldm" / f"lever_{sampling.get('from', name)}"
    if overrides is not None:
        if "first_stage" in sampling and not (ROOT / sampling["first_stage_output"]).is_dir():
            run_logged([sys.executable, "-m", "or_synth.train", *RECIPE, *sampling["first_stage"]], log, 1)
        run_logged(train_command(name, overrides, args.budget, args.steps), log, args.threads)
    elif not (run_dir / "pipeline" / "model_index.json").is_file():
        raise RuntimeError(f"lever {name} samples the {sampling['from']} run: train that one first")
    pipeline = raw_pipeline(run_dir) if sampling.get("raw") else run_dir / "pipeline"
    if not score_path.is_file() or json.loads(score_path.read_text())["setup"][
        "pipeline_hash"
    ] != pipeline_hash(pipeline):
        layout = sampling.get("layout", "masks")
        run_logged(
            [
                sys.executable,
                "-m",
                "benchmarks.generator_quality",
                "--pipeline",
                str(pipeline),
                "--dataset-root",
                args.dataset_root,
                "--classifier-steps",
                str(args.classifier_steps),
                "--max-graphs",
                str(args.max_graphs),
                "--cameras",
                *map(str, args.cameras),
                "--layout",
                layout,
                "--guidance-scale",
                str(sampling.get("guidance", args.guidance_scale)),
                "--threads",
                str(args.threads),
                "--out",
                str(score_path),
            ],
            log,
            args.threads,
        )
    score = json.loads(score_path.read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary = score["summary"]
    return {
        "lever": name,
        "change": description,
        "overrides": overrides if overrides is not None else f"sampled from lever {sampling['from']}",
        "steps": metrics["step"],
        "train_seconds": metrics.get("train_seconds"),
        "macro_f1_per_scan": summary["macro_f1_per_scan"],
        "macro_f1_per_image": summary["macro_f1_per_image"],
        "model_over_ceiling_per_scan": summary["model_over_ceiling_per_scan"],
        "model_above_floor_fraction_per_scan": summary["model_above_floor_fraction_per_scan"],
        "sampling": score["setup"]["sampling"],
        "pipeline_hash": score["setup"]["pipeline_hash"],
    }


def prepare(args) -> None:
    """The shared first stage (codec fit) and align encoder of the recipe, rendering its dataset if needed."""
    for stage in ("vae", "align"):
        run_logged(
            [sys.executable, "-m", "or_synth.train", *RECIPE, f"stage={stage}"],
            ROOT / "runs" / "levers" / "prepare.log",
            2 if args.jobs == 1 else args.threads * args.jobs,
        )


def markdown(table: dict) -> str:
    """The recorded levers as a markdown table (macro-F1 per scan and per image, generated vs floor)."""
    lines = [
        "| lever | change | steps | generated | floor | (g - f) / (c - f) | per image: generated / floor |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in table["levers"].values():
        scan, image = row["macro_f1_per_scan"], row["macro_f1_per_image"]
        lines.append(
            f"| `{row['lever']}` | {row['change']} | {row['steps']} | **{scan['model']:.3f}** | {scan['floor']:.3f} | "
            f"{row['model_above_floor_fraction_per_scan']:.2f} | {image['model']:.3f} / {image['floor']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=1800.0, help="training seconds per lever")
    parser.add_argument("--jobs", type=int, default=2, help="levers trained side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per lever")
    parser.add_argument("--only", nargs="+", choices=list(LEVERS), default=None)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train every lever for this many steps (step-matched, not timed)",
    )
    parser.add_argument("--dataset-root", default="datasets/synthetic_or_quality")
    parser.add_argument("--classifier-steps", type=int, default=1000)
    parser.add_argument("--max-graphs", type=int, default=40)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "generator_levers.json")
    parser.add_argument("--markdown", action="store_true", help="only print the recorded table as markdown")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return
    prepare(args)
    names = args.only or list(LEVERS)
    trained = [n for n in names if LEVERS[n][1] is not None]
    sampled = [n for n in names if LEVERS[n][1] is None]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda n: lever(n, args), trained))
    rows += [lever(n, args) for n in sampled]
    table = json.loads(args.out.read_text()) if args.out.is_file() else {"levers": {}}
    table["levers"].update({row["lever"]: row for row in rows})
    table["setup"] = {
        "command": "python -m benchmarks.generator_levers " + " ".join(sys.argv[1:]),
        "budget": f"{args.budget:.0f} s of training wall time per lever, {args.threads} torch thread(s), "
        f"{args.jobs} levers side by side on this machine ({os.cpu_count()} cores)",
        "recipe": " ".join(RECIPE),
        "scoring": f"benchmarks.generator_quality: {args.max_graphs} validation scans x cameras {args.cameras} of "
        f"{args.dataset_root}, TinyCNN {args.classifier_steps} steps on the real train renders",
        "wall_seconds_this_call": round(time.perf_counter() - start),
    }
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(
        f"{'lever':<14} {'steps':>6} {'generated':>9} {'ceiling':>8} {'floor':>6} {'(g-f)/(c-f)':>11}  change"
    )
    for row in table["levers"].values():
        f1 = row["macro_f1_per_scan"]
        print(
            f"{row['lever']:<14} {row['steps']:>6} {f1['model']:>9} {f1['ceiling']:>8} {f1['floor']:>6} "
            f"{row['model_above_floor_fraction_per_scan']!s:>11}  {row['change']}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
