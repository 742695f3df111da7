"""``or_synth.evaluate`` end to end on a tiny render: the suite's default metrics on "generated" sets made of
copies of real images (known answers: FD 0, model = ceiling), the reference cache, the cards and
``metrics.json``; the registry (what runs with what, a metric added without touching the others); the requests
refused before any work; and the command a user runs, with a real tiny pipeline's samples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from or_synth.evaluation import METRICS, EvaluationError, ImageSetError, Metric, Need, make_card
from or_synth.evaluation.context import select_metrics
from or_synth.evaluation.metrics.fidelity import FID
from or_synth.evaluation.registry import registry
from or_synth.evaluation.relation_classifier import classifier_hash
from tests.helpers import COPY_CAMERAS, copy_as_samples, run_evaluate, run_sample, saved_tiny_pipeline

ROOT = Path(__file__).resolve().parents[2]
CAMERAS = COPY_CAMERAS  # the views copy_as_samples lists

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_copies_of_real_images_score_the_ceiling_fd_zero_and_cards(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies")
    document = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval")
    consistency = document["details"]["graph_consistency"]
    for unit in ("scan", "image"):
        key = f"predicate_macro_f1_per_{unit}"
        assert consistency["model"][key] == consistency["ceiling"][key]  # the same pixels, the same answers
    assert set(consistency["per_camera"]) == set(CAMERAS) and "view_agreement" in consistency
    # Per scan, one paired bootstrap: identical pixels give ceiling - model exactly 0, interval included.
    evidence = consistency["per_scan_evidence"]
    assert evidence["bootstrap"]["differences"]["ceiling - model"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    rows = evidence["bootstrap"]["rows"]
    assert rows["model"]["value"] == consistency["model"]["predicate_macro_f1_per_scan"]
    assert rows["floor_that_counts"]["value"] == max(rows["floor"]["value"], rows["always_present"]["value"])
    assert consistency["floor_derangements"] == 10 and evidence["bootstrap"]["n_scans"] == 16
    assert evidence["average_precision"]["model"] == evidence["average_precision"]["ceiling"]
    saved = np.load(tmp_path / "eval/per_scan_graph_consistency.npz")
    assert list(saved["keys"]) == [
        f"{r['take_idx']}/{r['scan']}" for r in scans_of(tiny_render, "validation")
    ]
    assert (saved["model/tp"] == saved["ceiling/tp"]).all() and "floor_9/fn" in saved.files
    assert abs(document["metrics"]["classifier_fd"]) < 1e-6  # identical feature sets
    # The default metrics' cards, in registry order (no boxes: pair consistency says why instead of a card).
    assert list(document["cards"]) == [
        "classifier_fd",
        "classifier_kid",
        "classifier_prdc",
        "graph_consistency",
        "memorisation",
    ]
    assert list(document["metrics"]) == list(document["cards"])
    prdc = document["cards"]["classifier_prdc"]["value"]  # the real images themselves: on the real manifold
    assert prdc["precision"] == prdc["recall"] == 1.0 and prdc["coverage"] == 1.0
    assert (
        document["cards"]["classifier_prdc"]["matched_real_reference"]["measured"] is False
    )  # N = reference
    assert "no boxes" in consistency["pairs"]["why"]
    card = document["cards"]["classifier_fd"]
    assert card["n_generated"] == card["n_real"] == 16 * len(CAMERAS)
    assert card["weights_hash"] == classifier_hash(classifier_dir) and card["split"] == "validation"
    # The offline second opinion is never called FID: not its name, its feature space or its warnings.
    assert card["metric"] == "classifier_fd" and card["feature_space"].startswith("relation-classifier")
    biased = [w for w in card["warnings"] if "biased upward" in w]  # N = 32, far under 2048
    assert len(biased) == 1 and biased[0].startswith("classifier FD with N=32 generated / 32 real")
    assert document["warnings"] == sorted({w for c in document["cards"].values() for w in c["warnings"]})
    assert card["reference_cached"] is False
    for name in document["cards"]:
        assert (tmp_path / "eval/cards" / f"{name}.md").is_file()
        assert json.loads((tmp_path / "eval/cards" / f"{name}.json").read_text())["preprocessing"]
    on_disk = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert on_disk["metrics"]["classifier_fd"] == document["metrics"]["classifier_fd"]
    # Held-out copies are not memorised: no generated image copies a TRAINING image.
    assert document["details"]["memorisation"]["summary"]["n_flagged"] == 0
    assert document["details"]["memorisation"]["heldout_baseline"]["n_heldout"] == 32

    again = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "eval2")
    assert again["cards"]["classifier_fd"]["reference_cached"] is True
    assert again["metrics"] == document["metrics"]
    # The ceiling's classifier outputs come from the cache too, and give the same ceiling.
    assert "ceiling_predictions_cached" in again["timings_seconds"]
    assert again["details"]["graph_consistency"]["ceiling"] == consistency["ceiling"]


def test_metrics_bring_what_they_require_and_what_is_scored_beside_them():
    def names(asked):
        return [m.name for m in select_metrics(METRICS, asked)[0]]

    assert names(["pair_consistency"]) == ["graph_consistency", "pair_consistency"]
    assert select_metrics(METRICS, ["pair_consistency"])[1] == frozenset()  # asked for: boxes are required
    metrics, optional = select_metrics(METRICS, ["memorisation", "graph_consistency"])
    assert [m.name for m in metrics] == ["graph_consistency", "pair_consistency", "memorisation"]
    assert optional == {"pair_consistency"}  # beside graph consistency, only where boxes exist
    assert names(["kid", "fid", "kid"]) == ["fid", "kid"] and names(["kid"]) == ["kid"]
    with pytest.raises(EvaluationError, match="unknown metric 'fidd'; available: fid, kid, classifier_fd"):
        select_metrics(METRICS, ["fidd"])
    with pytest.raises(EvaluationError, match=r"metrics=\[\] asks for nothing"):
        select_metrics(METRICS, [])


def test_every_metric_record_names_its_score_function_cards_and_needs():
    for name, metric in METRICS.items():
        assert metric.name == name and metric.score.__name__ == f"score_{name}"
        assert metric.cards and metric.summary and metric.needs
    toy = Metric("toy", lambda run: None, cards=("toy",), needs=frozenset(), summary="nothing")
    with pytest.raises(ValueError, match="two metrics are called 'toy'"):
        registry(toy, toy)
    with pytest.raises(ValueError, match="unknown metric 'nothing'"):
        registry(replace(toy, requires=("nothing",)))
    with pytest.raises(ValueError, match="requires 'fid', which is listed after it"):
        registry(replace(toy, requires=("fid",)), FID)


def test_a_new_metric_joins_through_the_registry_alone(tiny_render, classifier_dir, tmp_path):
    """What the evidence issue's controls will do: one record with its needs, its check and its card, in an
    extended registry. The suite provides its inputs, runs its check before any work, and the other metrics'
    cards come out as without it."""
    checked = []

    def score_views_per_scan(run):
        views = len(run.generated) / len(set(run.generated.scan_groups().tolist()))
        run.cards["views_per_scan"] = make_card(
            "views_per_scan", views, implementation="a test", **run.common
        )

    views_per_scan = Metric(
        "views_per_scan",
        score_views_per_scan,
        cards=("views_per_scan",),
        needs=frozenset({Need.GENERATED}),
        summary="generated views per scan",
        check=lambda run: checked.append((run.split, run.generated_predictions)),
    )
    extended = registry(*METRICS.values(), views_per_scan)
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "copies")
    alone = run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "alone", "metrics=[classifier_fd]")
    both = run_evaluate(
        samples, classifier_dir, tiny_render, tmp_path / "both", "metrics=[classifier_fd,views_per_scan]",
        metrics=extended,
    )  # fmt: skip
    assert both["metrics"]["views_per_scan"] == len(CAMERAS)
    assert checked == [("validation", None)]  # checked with the inputs in place, before the classifier pass
    assert list(both["cards"]) == ["classifier_fd", "classifier_kid", "classifier_prdc", "views_per_scan"]
    for name in ("classifier_fd", "classifier_kid"):
        cached = {"reference_cached"}  # the second run reads the first one's reference features
        assert {k: v for k, v in both["cards"][name].items() if k not in cached} == {
            k: v for k, v in alone["cards"][name].items() if k not in cached
        }
    with pytest.raises(EvaluationError, match="unknown metric 'views_per_scan'"):
        run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "plain", "metrics=[views_per_scan]")


def mixed_split_samples(root: Path, folder: Path) -> Path:
    """One manifest listing copies of validation and of test images."""
    validation = copy_as_samples(root, "validation", folder / "validation")
    test = copy_as_samples(root, "test", folder / "test")
    lines = [json.loads(line) for line in test.read_text().splitlines()]
    for line in lines:
        line["image"] = f"../test/{line['image']}"
    with validation.open("a") as manifest:
        manifest.writelines(json.dumps(line) + "\n" for line in lines)
    return validation


def test_wrong_requests_fail_before_any_work(tiny_render, classifier_dir, tmp_path):
    samples = copy_as_samples(tiny_render, "validation", tmp_path / "s")
    bad = [
        ("unknown metric 'fidd'", ["metrics=[fidd]"]),
        ("Inception weights not found", ["metrics=[fid]", f"inception_weights={tmp_path}/no.pth"]),
        ("pinned", ["classifier_hash=deadbeefdeadbeef"]),
        ("need a relation classifier", ["classifier=null"]),
        ("classifier=.* cannot be loaded", [f"classifier={tmp_path / 'not_a_classifier'}"]),
        ("relation_sensitivity needs edits=DIR", ["metrics=[relation_sensitivity,classifier_fd]"]),
        ("relation_sensitivity needs edits=DIR", ["metrics=relation_sensitivity"]),  # one name, not a list
        # Its check runs with the others now: synthetic training images of held-out takes are refused first.
        ("synthetic training images must come from TRAINING-split graphs", ["metrics=[action_recognition]"]),
    ]
    (tmp_path / "not_a_classifier").mkdir()
    (tmp_path / "not_a_classifier/config.json").write_text("{}")
    (tmp_path / "not_a_classifier/model.safetensors").write_text("not weights")
    for message, extra in bad:
        with pytest.raises((EvaluationError, FileNotFoundError, ValueError), match=message):
            run_evaluate(samples, classifier_dir, tiny_render, tmp_path / "e", *extra)
    mixed = mixed_split_samples(tiny_render, tmp_path / "mixed")
    with pytest.raises(EvaluationError, match="set reference_split=validation"):
        run_evaluate(mixed, classifier_dir, tiny_render, tmp_path / "e", "metrics=[classifier_fd]")
    # A dataset_root whose graphs are not the generated images' cannot give their ceiling: said before the
    # FD's reference features are extracted.
    other = shutil.copytree(tiny_render, tmp_path / "other_dataset")
    graphs = json.loads((other / "relationships_validation.json").read_text())
    graphs["scans"][0]["relationships"].pop()
    (other / "relationships_validation.json").write_text(json.dumps(graphs))
    with pytest.raises(ImageSetError, match="differs from the one in"):
        run_evaluate(
            samples, classifier_dir, other, tmp_path / "e", "metrics=[classifier_fd,graph_consistency]"
        )
    # Nothing written for a refused request, and no feature extracted (the reference cache is untouched).
    assert not (tmp_path / "e").exists() and not (tmp_path / "cache").exists()


def test_scores_a_real_pipelines_samples_through_python_m(tiny_render, tmp_path_factory, tmp_path):
    """The chain a user runs: sample with a (tiny, random) pipeline at 16 px, train a 16 px classifier, evaluate."""
    from tests.helpers import train_classifier

    pipeline = saved_tiny_pipeline(tmp_path_factory, layout_channels=0, name="plain")
    out = tmp_path / "samples"
    run_sample(pipeline, "validation", out, f"dataset_root={tiny_render}", "cameras=[1,2]", "limit=6")
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
    assert consistency["n_images"] == 12 and consistency["n_scans"] == 6
    assert (
        document["cards"]["graph_consistency"]["pipeline_hash"]
        == json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["pipeline_hash"]
    )
    printed = done.stdout.splitlines()  # each metric's value, the warnings, where the files are
    assert [line.split(": ", 1)[0] for line in printed[: len(document["metrics"])]] == list(
        document["metrics"]
    )
    assert printed[-1] == f"metrics: {tmp_path / 'eval/metrics.json'}  cards: {tmp_path / 'eval/cards'}"
    bad = subprocess.run(
        [*command[:3], "samples=/nonexistent"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "error: no manifest at /nonexistent: pass the manifest.jsonl written by or_synth.sample/export"
    ]


def scans_of(root, split: str) -> list[dict]:
    return json.loads((root / f"relationships_{split}.json").read_text())["scans"]


def test_the_environment_says_whether_the_tree_was_clean(tmp_path, monkeypatch):
    """A card's commit with uncommitted changes is called dirty in words, not only by git's suffix."""
    from or_synth.evaluation import cards

    monkeypatch.setattr(cards, "git_commit", lambda path=None: "0123456789ab-dirty")
    assert cards.environment()["git_tree"] == "dirty (uncommitted changes)"
    monkeypatch.setattr(cards, "git_commit", lambda path=None: "0123456789ab")
    assert cards.environment()["git_tree"] == "clean"
    monkeypatch.setattr(cards, "git_commit", lambda path=None: None)
    assert cards.environment()["git_tree"] is None  # outside a git checkout
