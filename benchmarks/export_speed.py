"""Export throughput of ``python -m or_synth.export``: one process against two.

    python -m benchmarks.export_speed --pipeline cpu_quality [--limit 8]

The same export (the embedded dataset's first ``--limit`` training graphs x six cameras, 20 DPM-Solver++ steps,
the renderer's layouts) is written three ways, each into a fresh folder, in one run so the numbers compare as
ratios on a shared machine:

- one process, one torch thread;
- one process, ``--threads`` torch threads (the default way to use the cores);
- ``--threads`` processes of one thread each (``torch.distributed.run``, gloo; scans sharded by rank).

Images/s is images written / wall seconds of the whole command (start-up, model load and rendered layouts
included: what a user waits for). The sharded export is checked byte-identical to the one-thread one.
Writes ``benchmarks/results/export_speed.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from or_synth.generator import pipeline_hash
from or_synth.generator.shipped import resolve_pipeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "export_speed.json"


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def timed_export(command: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True, help="a pipeline folder or a shipped name")
    parser.add_argument("--dataset-root", default="datasets/synthetic_or")
    parser.add_argument("--limit", type=int, default=8, help="training graphs exported (x 6 cameras)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=2, help="cores to use: threads of one process or processes"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    folder = resolve_pipeline(args.pipeline)
    settings = [f"pipeline={folder}", f"dataset_root={args.dataset_root}", f"limit={args.limit}",
                f"steps={args.steps}", "layout=render", "progress=false"]  # fmt: skip
    single = [sys.executable, "-m", "or_synth.export"]
    sharded = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.threads}",
               "--master_port=29547", "-m", "or_synth.export"]  # fmt: skip
    images = args.limit * 6
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            "1 process x 1 thread": (single, 1),
            f"1 process x {args.threads} threads": (single, args.threads),
            f"{args.threads} processes x 1 thread": (sharded, 1),
        }
        for name, (launcher, threads) in variants.items():
            out = Path(tmp) / name.replace(" ", "_")
            seconds = timed_export([*launcher, *settings, f"out={out}"], threads)
            runs[name] = {"seconds": round(seconds, 1), "images_per_s": round(images / seconds, 3)}
            print(f"{name:<26} {seconds:7.1f} s  {images / seconds:6.2f} images/s")
        # Sharding must not change a byte; more threads in one process may (float reduction order), so that
        # variant is left out of the check.
        one, _, shards = (files(Path(tmp) / name.replace(" ", "_")) for name in variants)
        identical = one == shards
    base = runs["1 process x 1 thread"]["seconds"]
    for row in runs.values():
        row["speed-up vs 1 process x 1 thread"] = round(base / row["seconds"], 2)
    results = {
        "command": "python -m benchmarks.export_speed " + " ".join(argv or sys.argv[1:]),
        "pipeline": str(args.pipeline),
        "pipeline_hash": pipeline_hash(folder),
        "images": images,
        "sampling": {
            "sampler": "dpmsolver++",
            "steps": args.steps,
            "layout": "render",
            "guidance_scale": 3.0,
        },
        "runs": runs,
        "sharded_export_byte_identical_to_one_process": identical,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"sharded export byte-identical to one process: {identical}; written to {args.out}")
    return results


if __name__ == "__main__":
    main()
