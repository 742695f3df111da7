"""Rendering speed in images per second per core, at 128 and 256 px; writes benchmarks/results/render.json.

    python -m benchmarks.render_speed [--scans 60] [--sizes 128 256]   (from the repository root)

Times the whole per-scan work (scene graph, layout, six views, JPEG + mask PNG + annotation written to disk)
on one core, then the same with every core (``workers=0``) to show that rendering scales.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from or_synth.render import load_config, render

RESULTS = Path(__file__).resolve().parent / "results" / "render.json"


def images_per_second(size: int, scans: int, workers: int) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second summed over this process and its workers)."""
    takes = 3
    per_take = max(8, scans // takes)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            [
                f"root={tmp}/out",
                f"takes={takes}",
                f"scans_per_take={per_take}",
                f"image_size=[{size},{size}]",
                f"workers={workers}",
                "progress=false",
            ]
        )
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        render(cfg)
        elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    images = takes * per_take * 6
    return images / elapsed, images / cpu


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans", type=int, default=60)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    results = {"machine": f"{platform.processor() or platform.machine()}, {cores} cores", "sizes": {}}
    for size in args.sizes:
        one, one_cpu = images_per_second(size, args.scans, workers=1)
        every, every_cpu = images_per_second(size, args.scans * cores, workers=0)
        results["sizes"][str(size)] = {
            "images_per_second_one_worker": round(one, 1),
            "images_per_cpu_second_one_worker": round(one_cpu, 1),
            f"images_per_second_{cores}_workers": round(every, 1),
            f"images_per_cpu_second_{cores}_workers": round(every_cpu, 1),
        }
        print(
            f"{size} px: one worker {one:.1f} images/s ({one_cpu:.1f} per CPU-second); "
            f"{cores} workers {every:.1f} images/s ({every_cpu:.1f} per CPU-second)"
        )
    results["target"] = ">= 100 images/s per core at 128 px"
    results["note"] = (
        "images per CPU-second is the per-core rate; wall-clock speed-up with all workers needs idle cores "
        "(check the load average of the machine when comparing)"
    )
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
