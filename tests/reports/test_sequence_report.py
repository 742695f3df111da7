"""The report's sequence section on a tiny sequence (real 4D-OR graphs, take 4 scans 205-209, a tiny pipeline):
the animated video of every camera embedded, the contact strip, the cost, and the stability numbers that the
sequence benchmark computes (its own ``stability`` over the real renders, the coherent and the independent
sequence) beside it; decoded by headless Chromium like the rest of the page."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks.sequence import stability
from or_synth.data import load_scene_graphs
from or_synth.data.vocabulary import Vocabulary
from or_synth.render.config import load_config as render_config
from or_synth.render.pipeline import render
from or_synth.report import load_config, report
from or_synth.sampling.sequence import sequence
from tests.helpers import REAL_VALIDATION, SHARED_4DOR, copy_as_samples, sampling_config, saved_tiny_pipeline
from tests.reports.test_report import CHROMIUM, blocked_requests, probe

pytestmark = pytest.mark.skipif(not REAL_VALIDATION.is_file(), reason="needs ../shared/datasets/4d-or")
CAMERAS = [1, 2]


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("sequence_report")
    pipeline = saved_tiny_pipeline(tmp_path_factory, layout_channels=4)
    graphs = base / "graphs" / "relationships_validation.json"
    graphs.parent.mkdir()
    scans = [s for s in json.loads(REAL_VALIDATION.read_text())["scans"] if s["take_idx"] == 4][205:210]
    graphs.write_text(json.dumps({"scans": scans}))
    for name in ("classes.txt", "relationships.txt"):
        (graphs.parent / name).write_bytes((SHARED_4DOR / name).read_bytes())
    arms = {"real": base / "real"}
    render(render_config([f"root={arms['real']}", f"from_json={graphs}", "placement=take", "image_size=[16,16]",
                          "progress=false"]))  # fmt: skip
    for temporal in ("coherent", "independent"):
        arms[temporal] = base / temporal
        sequence(sampling_config(
            "sequence", f"pipeline={pipeline}", f"graphs={graphs}", "take=4", f"out={arms[temporal]}", "steps=2",
            "cameras=[1,2]", f"temporal={temporal}", "progress=false",
        ))  # fmt: skip
    torch.set_num_threads(threads)
    records = load_scene_graphs(graphs, Vocabulary.load(graphs.parent)).records
    args = argparse.Namespace(take=4, cameras=CAMERAS, resamples=50)
    document = {"stability": stability(args, records, arms), "verdict": "(tiny test sequence)"}
    (arms["coherent"] / "stability.json").write_text(json.dumps(document))
    return base, arms, document


@pytest.fixture(scope="module")
def page(sequences):
    base, arms, _ = sequences
    folder = report(load_config([f"run={arms['coherent']}", f"out={base / 'reports'}"]))
    return folder


def test_stability_compares_the_three_sequences_on_unchanged_pixels(sequences):
    _, _, document = sequences
    rows = document["stability"]["all_pairs"]["arms"]
    assert set(rows) == {"real", "coherent", "independent"}
    # 205 -> 206 -> 207 hold still in the coherent sequence; independent sampling redraws every frame
    assert rows["coherent"]["flicker_rms_grey_levels"] < rows["independent"]["flicker_rms_grey_levels"]
    assert document["stability"]["all_pairs"]["pairs"] == 4 * len(CAMERAS)


def test_the_sequence_section_embeds_every_camera_video_the_strip_and_the_numbers(page):
    html = (page / "index.html").read_text()
    section = html[html.index('<section id="sequence">') : html.index('<section id="memorisation">')]
    assert section.count('src="data:image/webp;base64,') == len(CAMERAS)
    assert "Contact strip" in section and "Coherent / independent flicker" in section
    assert "Absent" not in section
    for camera in CAMERAS:
        assert (page / "sequence" / f"camera0{camera}.webp").is_file()


def test_a_report_without_a_sequence_says_how_to_make_one(sequences, tmp_path):
    _, arms, _ = sequences
    samples = copy_as_samples(arms["real"], "validation", tmp_path / "copies")
    page = report(load_config([f"run={samples.parent}", f"out={tmp_path / 'reports'}"]))
    section = (page / "index.html").read_text().split('<section id="sequence">')[1].split("</section>")[0]
    assert "Absent" in section and "python -m or_synth.sequence" in section


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_sequence_videos_decode_in_headless_chromium(page, tmp_path):
    html = (page / "index.html").read_text()
    attributes, done = probe(html, tmp_path)
    assert int(attributes["images"]) == html.count("<img ") and attributes["broken"] == "0"
    assert blocked_requests(done.stderr) == []
