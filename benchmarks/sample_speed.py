"""What does a renderer layout cost at sampling time? ``or_synth.sample`` with ``layout=render`` against
``layout=none`` on the same graphs, cameras and seeds, in one process (so the ratio is what to compare).

    python -m benchmarks.sample_speed --pipeline cpu_quality [--graphs ../shared/datasets/4d-or/relationships_validation.json]

Each setting samples ``--limit`` graphs x ``--cameras`` once untimed (warm-up: model load, allocator), then
timed into a fresh folder. ``layout=render`` places each graph in 3D once and projects it into every camera
(:func:`or_synth.render.layout_masks`); the rest of the time is the denoiser. Writes
``benchmarks/results/sample_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from or_synth.cli import load_config
from or_synth.sampling import sample

RESULTS = Path(__file__).resolve().parent / "results" / "sample_speed.json"
SHARED_VALIDATION = (
    Path(__file__).resolve().parents[2] / "shared/datasets/4d-or/relationships_validation.json"
)


def timed_sample(overrides: list[str], out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    result = sample(load_config("sample", [*overrides, f"out={out}", "progress=false"]))
    return time.perf_counter() - start, result


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    common = [
        f"pipeline={args.pipeline}",
        f"graphs={args.graphs}",
        f"limit={args.limit}",
        f"cameras=[{','.join(map(str, args.cameras))}]",
        f"steps={args.steps}",
        f"guidance_scale={args.guidance_scale}",
    ]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("none", "render"):
            overrides = [*common, f"layout={layout}"]
            timed_sample(overrides, Path(tmp) / f"warm_{layout}")
            seconds, result = timed_sample(overrides, Path(tmp) / layout)
            rows[layout] = {
                "images": result["generated"],
                "seconds": round(seconds, 2),
                "images_per_second": round(result["generated"] / seconds, 3),
            }
    return {
        "layouts": rows,
        "render_over_none_seconds": round(rows["render"]["seconds"] / rows["none"]["seconds"], 3),
        "setup": {
            "command": "python -m benchmarks.sample_speed " + " ".join(args.argv),
            "pipeline": str(args.pipeline),
            "pipeline_hash": result["pipeline_hash"],
            "graphs": str(args.graphs),
            "images": f"{args.limit} graphs x cameras {args.cameras}, dpmsolver++ {args.steps} steps, "
            f"guidance {args.guidance_scale}",
            "machine": f"{platform.machine()}, {args.threads} torch threads",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default="cpu_quality", help="a pipeline folder or a shipped name")
    parser.add_argument("--graphs", default=str(SHARED_VALIDATION), help="a relationships JSON or a split")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for layout, row in result["layouts"].items():
        print(
            f"layout={layout:<7} {row['images']} images in {row['seconds']} s ({row['images_per_second']} images/s)"
        )
    print(f"render / none: {result['render_over_none_seconds']}x the time; wrote {args.out}")


if __name__ == "__main__":
    main()
