"""The generator benchmarks' own logic on tiny inputs: the quality benchmark end to end (ceiling, codec,
model, shuffled-graph floor, cached classifier, sample grid) and the lever table's raw-weight export."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import generator_quality
from tests.helpers import tiny_pipeline


def test_derangement_moves_every_scan():
    for n in (2, 5, 40):
        perm = generator_quality.derangement(n, seed=3)
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))


def quality_args(pipeline: Path, dataset: Path, tmp_path: Path, **changes) -> argparse.Namespace:
    args = argparse.Namespace(
        pipeline=str(pipeline),
        dataset_root=dataset,
        size=32,
        classifier_seconds=0.0,
        classifier_steps=3,
        classifier_cache=str(tmp_path / "cache"),
        max_graphs=4,
        cameras=[1, 2],
        steps=2,
        sampler="ddim",
        guidance_scale=1.0,
        layout="masks",
        layout_guidance_scale=1.0,
        samplers=False,
        sampler_images=4,
        seed=0,
        threads=1,
        grid=tmp_path / "grid.png",
        grid_graphs=2,
        layout_predictor=None,
    )
    return argparse.Namespace(**{**vars(args), **changes})


def test_quality_benchmark_scores_a_pipeline_against_ceiling_and_floor(tiny_render, tmp_path):
    pipeline = tmp_path / "pipe"
    tiny_pipeline(layout_channels=4).save_pretrained(pipeline)
    args = quality_args(pipeline, tiny_render, tmp_path)
    threads = torch.get_num_threads()
    try:
        first = generator_quality.run(args)
        cached = list((tmp_path / "cache").glob("tinycnn-*.safetensors"))
        second = generator_quality.run(argparse.Namespace(**{**vars(args), "grid": None}))
    finally:
        torch.set_num_threads(threads)
    summary = first["summary"]
    assert set(summary["macro_f1_per_scan"]) == {"ceiling", "vae", "model", "floor"}
    assert first["setup"]["validation"] == "4 scans x cameras [1, 2] = 8 images"
    assert len(cached) == 1 and first["setup"]["classifier"].endswith("3 steps")
    assert second["summary"] == summary  # the cached classifier scores the same images identically
    assert (tmp_path / "grid.png").is_file()


def test_quality_benchmark_with_predicted_layouts(tiny_render, tmp_path, monkeypatch):
    """``--layout predicted``: the layout predictor's label maps (at the pipeline's 16 px) condition the generated
    images and the floor's."""
    from tests.helpers import tiny_predictor

    pipeline, predictor = tmp_path / "pipe", tmp_path / "predictor"
    tiny_pipeline(layout_channels=4).save_pretrained(pipeline)
    tiny_predictor().save_pretrained(predictor)
    drawn = []
    original = generator_quality.predicted_masks
    monkeypatch.setattr(
        generator_quality, "predicted_masks", lambda *a: drawn.append(original(*a)) or drawn[-1]
    )
    args = quality_args(
        pipeline, tiny_render, tmp_path, layout="predicted", layout_predictor=str(predictor), grid=None
    )
    threads = torch.get_num_threads()
    try:
        result = generator_quality.run(args)
    finally:
        torch.set_num_threads(threads)
    (masks,) = drawn
    assert masks.shape == (8, 16, 16) and masks.dtype == torch.uint8 and int(masks.max()) > 0
    assert "layout predicted" in result["setup"]["sampling"]
    with pytest.raises(FileNotFoundError, match="layout_predictor="):
        generator_quality.run(
            quality_args(
                pipeline,
                tiny_render,
                tmp_path,
                layout="predicted",
                layout_predictor=str(tmp_path / "none"),
                grid=None,
            )
        )


def test_edit_locality_benchmark_runs_each_kind_of_edit(tiny_render, tmp_path):
    """benchmarks.edit_locality on a tiny pipeline: a predicate, a role and a removal edit per scan, each compared
    outside its region for the inpainted and the fully regenerated image."""
    from benchmarks import edit_locality
    from or_synth.data.scene_graph import parse_scan
    from or_synth.data.vocabulary import Vocabulary
    from or_synth.sampling import apply_drawable_edit
    from tests.helpers import small_scene

    record = parse_scan(small_scene(4, "000001"), Vocabulary.load())
    edits = edit_locality.edits_for(record)
    assert edits == {
        "predicate": "predicate 1 0 Sawing",
        "role": "role 2 circulating-nurse",
        "remove": "remove 2",
    }
    for text in edits.values():
        apply_drawable_edit(record, text)  # each one is an edit the grammar and the renderer accept

    pipeline = tmp_path / "pipe"
    tiny_pipeline(layout_channels=4).save_pretrained(pipeline)
    out = tmp_path / "edit_locality.json"
    threads = torch.get_num_threads()
    try:
        result = edit_locality.main(
            ["--pipeline", str(pipeline), "--dataset-root", str(tiny_render), "--max-scans", "2", "--cameras", "1",
             "--steps", "2", "--threads", "1", "--out", str(out)]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert out.is_file() and result["all"]["edits x cameras"] == len(result["rows"]) > 0
    for row in result["rows"]:
        assert 0.0 < row["inpainted_kept_fraction"] < 1.0 and row["inpainted_kept_mse"] >= 0.0


@pytest.mark.slow
def test_evidence_benchmark_writes_the_table_with_its_controls(tiny_render, tmp_path):
    """The evidence protocol end to end at its smallest: a selection on validation scans, the masks rows (model,
    null graph, conflict scored both ways, painter) on test scans, the mask-only probe (trained on label maps,
    scoring the test scans' label maps), and the table with paired intervals."""
    import json

    from benchmarks import evidence
    from tests.helpers import train_classifier

    pipeline = tmp_path / "pipe"
    tiny_pipeline(layout_channels=4).save_pretrained(pipeline)
    scorer = train_classifier(tiny_render, tmp_path / "scorer", "classifier.image_size=16")
    out = tmp_path / "evidence.json"
    argv = ["--work", str(tmp_path / "work"), "--pipeline", str(pipeline), "--dataset-root", str(tiny_render),
            "--scorer", str(scorer), "--scorer-seeds", "--sources", "masks", "--scans", "4", "--seeds", "1",
            "--cameras", "1", "2", "--select-scans", "2", "--select-steps", "2", "--select-guidance", "1.5",
            "--painter-size", "16", "--out", str(out), "--probe-runs-root", str(tmp_path / "probe_runs"),
            "--probe-overrides", "debug=smoke", f"runs_root={tmp_path / 'probe_runs'}", "classifier.steps=6",
            "classifier.image_size=16", f"dataset.processed_root={tmp_path / 'probe_processed'}"]  # fmt: skip
    assert evidence.main(argv) == 0
    document = json.loads(out.read_text())
    image = document["table"]["masks"]["image"]
    assert {
        "model",
        "null",
        "conflict",
        "conflict_vs_graph",
        "painter_masks",
        "probe_masks",
        "ceiling",
    } <= set(image["rows"])
    assert "probe_reaches_model" in image and "test" in document["probe"]["quality_on_painted_held_out"]
    assert image["n_scans"] == 4 and "shown" in image["graph_attributable"]
    low, high = image["rows"]["model"]["ci95"]
    assert low <= image["rows"]["model"]["value"] <= high
    assert document["selection"]["chosen"] == {"steps": 2, "guidance_scale": 1.5}
    assert "| masks |" in out.with_suffix(".md").read_text()
    # A re-run resumes: nothing is sampled again and the table is the same.
    assert evidence.main(argv) == 0
    assert json.loads(out.read_text())["table"] == document["table"]


@pytest.mark.slow
def test_downstream_benchmark_runs_the_second_protocol_end_to_end(tiny_render, tmp_path):
    """benchmarks.downstream at its smallest: a tiny pipeline exports new scene-process graphs with rendered
    layouts, the oracle renders them, the learning curve picks the steps, every arm trains them."""
    import json

    from benchmarks import downstream

    pipeline = tmp_path / "pipe"
    tiny_pipeline(layout_channels=4).save_pretrained(pipeline)
    out = tmp_path / "downstream.json"
    result = downstream.main([
        "--work", str(tmp_path / "work"), "--dataset-root", str(tiny_render), "--pipeline", str(pipeline),
        "--scene-takes", "5", "7", "--scene-scans", "8", "--cameras", "1", "2", "--size", "16",
        "--step-grid", "1", "2", "--curve-seeds", "0", "--seeds", "0", "1", "--fractions", "1.0", "0.5",
        "--batch-size", "8", "--threads", "1", "--out", str(out), "--pair-task", "--pair-seeds", "0",
        "--pair-runs-root", str(tmp_path / "runs"), "--pair-overrides", "debug=smoke", f"runs_root={tmp_path / 'runs'}",
        "classifier.steps=4", "classifier.image_size=16", f"dataset.processed_root={tmp_path / 'processed'}",
    ])  # fmt: skip
    assert json.loads(out.read_text())["study"]["settings"] == result["study"]["settings"]
    assert result["learning_curve"]["chosen_steps"] in (1, 2)
    arms = {(r["fraction"], r["arm"]) for r in result["study"]["rows"]}
    assert arms == {
        (f, a) for f in (1.0, 0.5) for a in ("real_only", "synthetic", "oracle", "synthetic_only")
    }
    assert "16 scene-process graphs" in result["setup"]["synthetic"]
    pairs = result["pair_task"]  # the relation classifier's pair head, real vs real + synthetic
    assert (
        set(pairs["arms"]) == {"real_only", "real_plus_synthetic"} and len(pairs["pair_gain_per_seed"]) == 1
    )
    merged = json.loads((tmp_path / "work/pair_task/merged/relationships_train.json").read_text())["scans"]
    assert {s["take_idx"] for s in merged} == {1, 3, 5, 7}


@pytest.mark.slow
def test_evaluation_suite_benchmark_on_test_takes_with_stratified_edits(tiny_render, tmp_path):
    """benchmarks.evaluation_suite with the evidence protocol's switches at tiny size: test-take samples, one
    edit of each kind per scan with its null edit, six views on scans the main set does not hold."""
    import json

    from benchmarks import evaluation_suite
    from tests.helpers import train_classifier

    pipeline = tmp_path / "pipe"
    tiny_pipeline(layout_channels=4).save_pretrained(pipeline)
    classifier = train_classifier(tiny_render, tmp_path / "scorer", "classifier.image_size=16")
    out = tmp_path / "suite.json"
    evaluation_suite.main([
        "--classifier", str(classifier), "--pipeline", str(pipeline), "--dataset-root", str(tiny_render),
        "--scans", "4", "--cameras", "1", "2", "--edit-scans", "2", "--six-view-scans", "2", "--split", "test",
        "--stratified-edits", "--edits-per-scan", "4", "--disjoint-six-views", "--codec-row", "--threads", "1",
        "--work", str(tmp_path / "work"), "--out", str(out),
    ])  # fmt: skip
    result = json.loads(out.read_text())
    assert result["setup"]["samples"].startswith("4 test scans")
    assert result["multi_view"]["scans_disjoint_from_main_set"] and result["multi_view"]["per_camera_ceiling"]
    main = {
        (json.loads(line)["take"], json.loads(line)["scan"])
        for line in (tmp_path / "work/samples/manifest.jsonl").open()
    }
    six = {
        (json.loads(line)["take"], json.loads(line)["scan"])
        for line in (tmp_path / "work/samples_six_views/manifest.jsonl").open()
    }
    assert main and six and not main & six
    sensitivity = result["relation_sensitivity"]
    assert sensitivity["null"] is not None and len(sensitivity["by_edit_kind"]) >= 2
    assert result["classifier_prdc"]["value"]["nearest_k"] >= 1
    codec = result["codec_reconstruction"]
    assert codec["classifier_fd"] >= 0 and "predicate_macro_f1_per_scan" in codec["graph_consistency"]
