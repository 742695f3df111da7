"""``or_synth.evaluate`` end to end on a tiny render: the relation classifier stage, graph consistency beside its
ceiling and floor, the classifier-feature FD / KID with the reference cache, memorisation, metric cards, and the
bad inputs that must fail clearly. "Generated" sets made of copies of real images give known answers (FD 0,
model = ceiling, every copy of a training image flagged); one test scores a real tiny pipeline's samples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from or_synth.evaluation import EvaluationError
from or_synth.evaluation.image_sets import ImageSetError, load_generated
from or_synth.evaluation.relation_classifier import RelationClassifier, classifier_hash
from tests.helpers import (
    COPY_CAMERAS,
    copy_as_samples,
    run_evaluate,
    saved_tiny_pipeline,
    train_classifier,
)

ROOT = Path(__file__).resolve().parents[2]
CAMERAS = COPY_CAMERAS  # the views copy_as_samples lists


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def classifier_dir(tiny_render, tmp_path_factory) -> Path:
    return train_classifier(tiny_render, tmp_path_factory.mktemp("classifier"))


def test_classifier_stage_saves_weights_quality_and_a_stable_hash(classifier_dir):
    config = json.loads((classifier_dir / "config.json").read_text())
    assert config["training"]["real_images_only"] and config["image_size"] == 32 and config["triples"]
    quality = json.loads((classifier_dir / "quality.json").read_text())
    assert set(quality) == {"validation", "test"}
    assert 0 <= quality["validation"]["predicate_macro_f1_per_scan"] <= 1
    digest = classifier_hash(classifier_dir)
    assert RelationClassifier.from_pretrained(classifier_dir, digest).triples == tuple(config["triples"])
    # The rendered dataset has boxes, so the pair-level head was trained and measured on real boxed pairs too.
    assert "Patient" in config["node_labels"] and config["training"]["pairs"] > 0
    assert quality["validation"]["pairs"]["n_pairs"] > 0
    assert 0 <= quality["validation"]["pairs"]["predicate_macro_f1_per_scan"] <= 1
    with pytest.raises(ValueError, match="pinned"):
        RelationClassifier.from_pretrained(classifier_dir, "0" * 16)


def test_copies_of_real_images_score_the_ceiling_fd_zero_and_cards(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies")
    document = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval")
    consistency = document["details"]["graph_consistency"]
    for unit in ("scan", "image"):
        key = f"predicate_macro_f1_per_{unit}"
        assert consistency["model"][key] == consistency["ceiling"][key]  # the same pixels, the same answers
    assert set(consistency["per_camera"]) == set(CAMERAS) and "view_agreement" in consistency
    assert abs(document["metrics"]["classifier_fd"]) < 1e-6  # identical feature sets
    card = document["cards"]["classifier_fd"]
    assert card["n_generated"] == card["n_real"] == 16 * len(CAMERAS)
    assert card["weights_hash"] == classifier_hash(classifier_dir) and card["split"] == "validation"
    assert "never called FID" not in card["metric"] and card["feature_space"].startswith(
        "relation-classifier"
    )
    assert any("biased upward" in w for w in card["warnings"])  # N = 32, far under 2048
    assert card["reference_cached"] is False
    for name in ("classifier_fd", "classifier_kid", "graph_consistency", "memorisation"):
        assert (tmp_path / "eval/cards" / f"{name}.md").is_file()
        assert json.loads((tmp_path / "eval/cards" / f"{name}.json").read_text())["preprocessing"]
    on_disk = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert on_disk["metrics"]["classifier_fd"] == document["metrics"]["classifier_fd"]
    # Held-out copies are not memorised: no generated image copies a TRAINING image.
    assert document["details"]["memorisation"]["summary"]["n_flagged"] == 0
    assert document["details"]["memorisation"]["heldout_baseline"]["n_heldout"] == 32

    again = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval2")
    assert again["cards"]["classifier_fd"]["reference_cached"] is True
    assert again["metrics"]["classifier_fd"] == document["metrics"]["classifier_fd"]
    # The ceiling's classifier outputs come from the cache too, and give the same ceiling.
    assert "ceiling_predictions_cached" in again["timings_seconds"]
    assert again["details"]["graph_consistency"]["ceiling"] == consistency["ceiling"]


@pytest.mark.parametrize("layout", ["given", "saved"])
def test_pair_consistency_where_boxes_exist(tiny_render, classifier_dir, tmp_path, layout):
    """Copies drawn "from the dataset's masks" or saved with their label maps have boxes: every (subject, object)
    pair is scored, and copies score exactly the ceiling (same pixels, same boxes)."""
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies", layout=layout)
    document = run_evaluate(
        samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[graph_consistency]"
    )
    pairs = document["details"]["pair_consistency"]
    assert {"model", "ceiling", "floor", "labels_only", "chance"} <= set(pairs)
    assert pairs["n_pairs"] == pairs["n_real_pairs"] > 0 and pairs["n_pairs_with_a_relation"] > 0
    assert ("label maps" in pairs["box_source"]) == (layout == "saved")
    for unit in ("scan", "view"):
        key = f"predicate_macro_f1_per_{unit}"
        assert pairs["model"][key] == pairs["ceiling"][key]
    card = document["cards"]["pair_consistency"]
    assert card["value"]["scan"]["model"] == pairs["model"]["predicate_macro_f1_per_scan"]
    assert card["weights_hash"] == classifier_hash(classifier_dir) and card["n_pairs"] == pairs["n_pairs"]
    assert (tmp_path / "eval/cards/pair_consistency.md").is_file()


def test_pair_consistency_without_boxes_is_said_or_refused(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies")  # no layout: no boxes
    document = run_evaluate(
        samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[graph_consistency]"
    )
    assert "pair_consistency" not in document["cards"]
    assert "no boxes" in document["details"]["graph_consistency"]["pairs"]["why"]
    with pytest.raises(EvaluationError, match="pair_consistency cannot be measured.*layout=masks"):
        run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval2", "metrics=[pair_consistency]")


def test_copies_of_training_images_are_flagged_as_memorised(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "train", tmp_path / "train_copies")
    document = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[memorisation]")
    summary = document["details"]["memorisation"]["summary"]
    assert summary["n_flagged"] == summary["n_generated"] == 16 * len(CAMERAS)
    assert summary["ssim_median"] == pytest.approx(1.0)
    pairs = document["details"]["memorisation"]["pairs"]
    assert pairs and all((tmp_path / "eval/memorisation_pairs" / p["file"]).is_file() for p in pairs)


def test_graph_consistency_on_training_graphs_is_refused_unless_said(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "train", tmp_path / "train_copies")
    with pytest.raises(EvaluationError, match="TRAINING-split graphs"):
        run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval", "metrics=[graph_consistency]")
    said = run_evaluate(
        samples,
        classifier_dir,
        tiny_render,
        tmp_path / "eval",
        "metrics=[graph_consistency]",
        "allow_training_graphs=true",
    )
    assert said["cards"]["graph_consistency"]["training_graphs"] is True
    assert "TRAINING-split" in said["cards"]["graph_consistency"]["warnings"][0]


def test_bad_manifests_fail_clearly(tiny_render, tmp_path):
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "s")
    lines = samples.read_text().splitlines()
    (tmp_path / "s/images" / json.loads(lines[3])["image"].split("/")[-1]).unlink()
    with pytest.raises(ImageSetError, match="missing"):
        load_generated(samples)
    samples.write_text("")
    with pytest.raises(ImageSetError, match="no images"):
        load_generated(samples)
    samples.write_text(json.dumps({"image": "x.png", "take": 4, "scan": "000001"}) + "\n")
    with pytest.raises(ImageSetError, match="line 1: field 'camera'"):
        load_generated(samples)
    mixed = copy_as_samples(tiny_render, "validation", tmp_path / "m")
    first = tmp_path / "m" / json.loads(mixed.read_text().splitlines()[0])["image"]
    Image.new("RGB", (20, 20)).save(first)
    with pytest.raises(ImageSetError, match="mixed sizes"):
        load_generated(mixed)
    with pytest.raises(ImageSetError, match="no manifest"):
        load_generated(tmp_path / "nowhere")


def test_wrong_requests_fail_before_any_work(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "s")
    with pytest.raises(EvaluationError, match="unknown metric 'fidd'"):
        run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "e", "metrics=[fidd]")
    with pytest.raises(FileNotFoundError, match="Inception weights not found"):
        run_evaluate(
            samples,
            classifier_dir,
            tiny_render,
            tmp_path / "e",
            "metrics=[fid]",
            f"inception_weights={tmp_path}/no.pth",
        )
    with pytest.raises(ValueError, match="pinned"):
        run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "e", "classifier_hash=deadbeefdeadbeef")
    with pytest.raises(EvaluationError, match="need a relation classifier"):
        run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "e", "classifier=null")
    assert not (tmp_path / "e").exists()  # nothing written for a refused request


def test_scores_a_real_pipelines_samples_through_python_m(tiny_render, tmp_path_factory, tmp_path):
    """The chain a user runs: sample with a (tiny, random) pipeline at 16 px, train a 16 px classifier, evaluate."""
    from or_synth.sample import load_config as sample_config
    from or_synth.sample import sample

    pipeline = saved_tiny_pipeline(tmp_path_factory, layout_channels=0, name="plain")
    out = tmp_path / "samples"
    sample(
        sample_config(
            [
                f"pipeline={pipeline}",
                "graphs=validation",
                f"dataset_root={tiny_render}",
                f"out={out}",
                "steps=2",
                "cameras=[1,2]",
                "limit=6",
                "progress=false",
            ]  # fmt: skip
        )
    )
    classifier = train_classifier(tiny_render, tmp_path / "work", "classifier.image_size=16")
    command = [
        sys.executable, "-m", "or_synth.evaluate", f"samples={out}", f"classifier={classifier}",
        f"dataset_root={tiny_render}", f"out={tmp_path / 'eval'}", f"cache_dir={tmp_path / 'cache'}",
        "kid_subset_size=4", "kid_subsets=3", "progress=false",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((tmp_path / "eval/metrics.json").read_text())
    consistency = document["details"]["graph_consistency"]
    assert {"model", "ceiling", "floor", "chance"} <= set(consistency)
    assert (
        document["cards"]["graph_consistency"]["pipeline_hash"]
        == json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["pipeline_hash"]
    )
    assert "graph_consistency" in done.stdout and "metrics:" in done.stdout
    bad = subprocess.run(
        [*command[:3], "samples=/nonexistent"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "no manifest" in bad.stderr
    shutil.rmtree(tmp_path / "cache")


def test_action_recognition_through_evaluate(tiny_render, classifier_dir, tmp_path):
    """The downstream study on copies of training images: rows with CIs, a card, and the refusals."""
    samples = copy_as_samples(tiny_render, "train", tmp_path / "train_copies")
    settings = [
        "metrics=[action_recognition]",
        "action_recognition.seeds=[0,1]",
        "action_recognition.ratios=[0.0,1.0]",
        "action_recognition.fractions=[1.0]",
        "action_recognition.steps=2",
        "action_recognition.batch_size=8",
    ]
    document = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval", *settings)
    rows = document["metrics"]["action_recognition"]
    assert {(r["arm"], r["ratio"]) for r in rows} >= {("real_only", 0.0), ("synthetic", 1.0)}
    assert all(len(r["ci95"]) == 2 for r in rows)
    card = document["cards"]["action_recognition"]
    assert any("oracle" in w for w in card["warnings"]) and card["seeds"] == [0, 1]
    held_out = copy_as_samples(tiny_render, "validation", tmp_path / "val_copies")
    with pytest.raises(EvaluationError, match="TRAINING-split graphs"):
        run_evaluate(held_out, classifier_dir, tiny_render, tmp_path / "eval2", *settings)
