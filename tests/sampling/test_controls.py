"""The evidence protocol's controls, sampled like any job: the null graph under the scan's layout, one scan's
layout under another scan's graph (conflict), and the no-model mask painter."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from or_synth.data.manifest import read_manifest
from or_synth.evaluation.image_sets import load_generated
from or_synth.sampling.painter import MaskPainter
from tests.helpers import run_sample, sample_images

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def lines(out):
    return read_manifest(out / "manifest.jsonl").lines


def test_null_graph_and_conflict_are_recorded_and_deterministic(pipeline_dir, tiny_render, tmp_path):
    common = ["graphs=validation", f"dataset_root={tiny_render}", "cameras=[1]", "limit=4", "layout=masks"]
    plain = run_sample(pipeline_dir, "validation", tmp_path / "plain", *common)
    null = run_sample(pipeline_dir, "validation", tmp_path / "null", *common, "control=null_graph")
    conflict = run_sample(pipeline_dir, "validation", tmp_path / "conflict", *common, "control=conflict")
    assert plain["generated"] == null["generated"] == conflict["generated"] == 4
    assert {line.control for line in lines(tmp_path / "null")} == {"null_graph"}
    drawn = [(line.take, line.scan, line.graph_scan) for line in lines(tmp_path / "conflict")]
    assert all(graph_scan and graph_scan != f"{take}/{scan}" for take, scan, graph_scan in drawn)
    assert len({g for *_, g in drawn}) == 4  # a derangement: every scan's graph drawn once, elsewhere
    images = {name: sample_images(tmp_path / name) for name in ("plain", "null", "conflict")}
    assert images["plain"].keys() == images["null"].keys() == images["conflict"].keys()
    assert all(images["plain"][k] != images["null"][k] for k in images["plain"])
    again = run_sample(pipeline_dir, "validation", tmp_path / "conflict2", *common, "control=conflict")
    assert again["generated"] == 4 and sample_images(tmp_path / "conflict2") == images["conflict"]
    # A folder of one control is not resumed as another.
    from or_synth.sampling.resume import SampleRefused

    with pytest.raises(SampleRefused, match="control"):
        run_sample(pipeline_dir, "validation", tmp_path / "null", *common)

    # Scored against its drawn graph, a conflict image reads the donor scan's graph and has no boxes of its own.
    own = load_generated(tmp_path / "conflict")
    against = load_generated(tmp_path / "conflict", against="graph")
    assert [f"{r.take}/{r.scan}" for r in against.records] == [g for *_, g in drawn]
    assert [r.key for r in own.records] == [(t, s) for t, s, _ in drawn]
    assert against.settings["score_against"] == "graph"


def test_controls_are_refused_where_they_mean_nothing(pipeline_dir, tiny_render, tmp_path):
    from or_synth.sample import main
    from tests.helpers import assert_refused, run_command

    base = [
        f"pipeline={pipeline_dir}",
        "graphs=validation",
        f"dataset_root={tiny_render}",
        f"out={tmp_path / 'o'}",
    ]
    assert_refused(run_command(main, *base, "control=sideways"), "control")
    assert_refused(run_command(main, *base, "control=conflict", "layout=none"), "conflict", "layout")
    assert_refused(run_command(main, *base, "control=conflict", "limit=1"), "two graphs")
    assert not (tmp_path / "o").exists()


def test_the_painter_paints_each_node_in_its_labels_training_colour(tiny_render, tmp_path):
    common = ["graphs=validation", f"dataset_root={tiny_render}", "cameras=[1,2]", "limit=3", "layout=masks",
              "painter.size=[32,32]", f"painter.dir={tmp_path / 'painter'}", "samples_per_graph=3"]  # fmt: skip
    result = run_sample("painter", "validation", tmp_path / "p", *common)
    assert result["generated"] == 6  # one image per (scan, camera): the painter draws no noise
    first = lines(tmp_path / "p")[0]
    assert (
        first.pipeline_hash.startswith("painter-") and first.sampler == "painter" and first.layout == "given"
    )
    painter = MaskPainter.load(tmp_path / "painter")
    assert painter.source["split"] == "train" and painter.source["size"] == [32, 32]
    assert json.loads((tmp_path / "painter/painter.json").read_text())["colours"]["background"]
    # Each pixel carries exactly its node's label colour (or the background's).
    from or_synth.data import load_scene_graphs
    from or_synth.data.annotations import read_instance_mask
    from or_synth.data.images import frame_index

    record = load_scene_graphs(tiny_render / "relationships_validation.json").records[0]
    frame = frame_index(tiny_render, record.take).frame_id(record.scan, 1)
    mask = Image.fromarray(read_instance_mask(tiny_render, record.take, 1, frame)).resize(
        (32, 32), Image.NEAREST
    )
    painted = np.asarray(Image.open(tmp_path / "p" / first.image))
    assert np.array_equal(painted, np.asarray(painter.paint(record, np.asarray(mask))))
    assert len(np.unique(painted.reshape(-1, 3), axis=0)) <= record.num_nodes + 1
    # A second run resumes (the fitted colours are reused), and a layout the painter cannot paint is refused.
    assert run_sample("painter", "validation", tmp_path / "p", *common)["generated"] == 0
    with pytest.raises(ValueError, match="paints a layout"):
        run_sample("painter", "validation", tmp_path / "q", *common[:4], "layout=none")


def test_the_painted_dataset_is_the_label_map_under_the_same_annotations(tiny_render, tmp_path):
    """The mask-only probe's dataset: every colour image replaced by its own instance mask in one distinct colour
    per label, everything else copied; a re-run keeps what it wrote."""
    from or_synth.data import load_scene_graphs
    from or_synth.data.annotations import read_instance_mask
    from or_synth.data.images import frame_index
    from or_synth.sampling.painter import distinct_painter, node_label, write_painted_dataset

    records = load_scene_graphs(tiny_render / "relationships_train.json").records
    labels = {node_label(r, k) for r in records for k in range(r.num_nodes)}
    painter = distinct_painter(labels)
    assert len({tuple(painter.colours[label]) for label in labels}) == len(labels)  # one colour per label
    out = write_painted_dataset(tiny_render, tmp_path / "painted", painter)
    assert (out / "relationships_test.json").read_bytes() == (
        tiny_render / "relationships_test.json"
    ).read_bytes()
    record = records[0]
    index = frame_index(out, record.take)
    mask = read_instance_mask(tiny_render, record.take, 2, index.frame_id(record.scan, 2))
    painted = np.asarray(Image.open(index.image_path(record.scan, 2)).convert("RGB")).astype(int)
    expected = np.asarray(painter.paint(record, mask)).astype(int)
    assert painted.shape == expected.shape and np.abs(painted - expected).mean() < 3  # JPEG at quality 95
    source = np.asarray(Image.open(frame_index(tiny_render, record.take).image_path(record.scan, 2)))
    assert not np.array_equal(np.asarray(Image.open(index.image_path(record.scan, 2))), source)
    stamp = index.image_path(record.scan, 2).stat().st_mtime_ns
    write_painted_dataset(tiny_render, out, painter)
    assert index.image_path(record.scan, 2).stat().st_mtime_ns == stamp


def test_the_distinct_palette_samples_the_probes_test_images(tiny_render, tmp_path):
    """pipeline=painter painter.palette=distinct writes each layout as the label map the probe was trained on
    (the same colour per label as write_painted_dataset), and a palette it does not know is refused."""
    from or_synth.sampling.painter import distinct_painter, training_labels

    common = ["graphs=validation", f"dataset_root={tiny_render}", "cameras=[2]", "limit=2", "layout=masks",
              "painter.size=[32,32]", f"painter.dir={tmp_path / 'painter'}"]  # fmt: skip
    run_sample("painter", "validation", tmp_path / "d", *common, "painter.palette=distinct")
    first = lines(tmp_path / "d")[0]
    painter = distinct_painter(training_labels(tiny_render))
    assert first.pipeline_hash == painter.digest
    painted = np.asarray(Image.open(tmp_path / "d" / first.image).convert("RGB"))
    assert {tuple(c) for c in painted.reshape(-1, 3)} <= {
        tuple(round(v) for v in c) for c in painter.colours.values()
    }
    with pytest.raises(ValueError, match="painter.palette"):
        run_sample("painter", "validation", tmp_path / "e", *common, "painter.palette=rainbow")


def test_the_reconstruction_control_is_the_real_image_through_the_autoencoder(
    pipeline_dir, tiny_render, tmp_path
):
    """control=reconstruction: each (scan, camera)'s real image encoded and decoded by the pipeline's own first
    stage (no denoiser): the fidelity metrics' codec row, listed like samples; it takes no layout."""
    from or_synth.data.images import frame_index, read_image
    from or_synth.generator import ORScenePipeline
    from or_synth.generator.autoencoder import reconstruct

    common = [
        "graphs=validation",
        f"dataset_root={tiny_render}",
        "cameras=[1,2]",
        "limit=2",
        "samples_per_graph=3",
    ]
    result = run_sample(pipeline_dir, "validation", tmp_path / "r", *common, "control=reconstruction")
    assert result["generated"] == 4  # one per (scan, camera): nothing random to draw again
    first = lines(tmp_path / "r")[0]
    assert (
        first.control == "reconstruction" and first.sampler == "reconstruction" and first.layout == "absent"
    )
    pipe = ORScenePipeline.from_pretrained(pipeline_dir)
    file = frame_index(tiny_render, first.take).image_path(first.scan, first.camera)
    expected = reconstruct(pipe.vae, read_image(file, tuple(pipe.image_size))[None])[0]
    written = np.asarray(Image.open(tmp_path / "r" / first.image).convert("RGB"))
    assert np.array_equal(written, expected.permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="takes no layout"):
        run_sample(
            pipeline_dir, "validation", tmp_path / "s", *common, "control=reconstruction", "layout=masks"
        )
