"""pytest-benchmark suite for the renderer: one scan (six views, files written) at 128 and 256 px, and
``layout_masks`` (six label maps of a given graph, nothing written; sampling's ``layout=render``) at 64 px.

python -m pytest benchmarks/bench_render.py --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pytest

from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import CAMERAS, Vocabulary
from or_synth.render import layout_masks
from or_synth.render.pipeline import ScanJob, render_scan
from or_synth.render.room import make_cameras
from or_synth.render.writer import write_take_files
from tests.helpers import small_scene

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


@pytest.mark.parametrize("size", [64, 128])
def test_layout_masks_one_graph(benchmark, size):
    records = [parse_scan(small_scene(4, f"{i:06d}"), Vocabulary()) for i in range(64)]
    graphs = iter(range(10**6))

    def one_graph():
        layout_masks(records[next(graphs) % 64], CAMERAS, (size, size), seed=0)

    benchmark.pedantic(one_graph, rounds=30, iterations=1)
