"""pytest-benchmark suite for the renderer: one scan (six views, files written) at 128 and 256 px.

python -m pytest benchmarks/bench_render.py --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pytest

from or_synth.render.pipeline import ScanJob, render_scan
from or_synth.render.room import make_cameras
from or_synth.render.writer import write_take_files

pytestmark = pytest.mark.benchmark_suite


@pytest.mark.parametrize("size", [128, 256])
def test_render_one_scan(benchmark, tmp_path, size):
    write_take_files(tmp_path, 1, 64, make_cameras(size, size, np.random.default_rng(0)), None)
    scans = iter(range(64))

    def one_scan():
        job = ScanJob(
            str(tmp_path), 1, next(scans) % 64, "knee_prep", None, 0, 0.5, (size, size), (90, 90), 0.08, 1
        )
        render_scan(job)

    benchmark.pedantic(one_scan, rounds=20, iterations=1)
