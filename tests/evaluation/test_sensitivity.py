"""Relation sensitivity on graph edits: known answers with a scorer that reads which graph an image shows, and the
real chain (or_synth.edit with a tiny pipeline, then or_synth.evaluate metrics=[relation_sensitivity])."""

from __future__ import annotations

import json

import pytest
import torch

from or_synth.cli import load_config
from or_synth.data.edits import apply_edit, parse_edit
from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import Vocabulary
from or_synth.edit import edit
from or_synth.edit import load_config as edit_config
from or_synth.evaluation import EvaluationError, evaluate
from or_synth.evaluation.image_sets import ImageSetError
from or_synth.evaluation.relation_classifier import (
    RelationClassifier,
    RelationLabels,
    classifier_hash,
    triple_vocabulary,
)
from or_synth.evaluation.sensitivity import relation_sensitivity
from tests.helpers import saved_tiny_pipeline, small_scene, write_edit_folder

EDIT = "predicate head-surgeon Patient Sawing"


class GraphReader:
    """Answers exactly the graph an image shows: pixel (0, 0) red 0 = the before graph, 255 = the after graph."""

    def __init__(self, before, after) -> None:
        self.graphs = (before, after)
        self.triples = tuple(triple_vocabulary(self.graphs, 1))
        self.image_size = 8
        self.labels = RelationLabels(self.triples)

    def predict(self, images, cameras, batch_size=128):
        shown = [self.graphs[int(x[0, 0, 0]) // 255] for x in images]
        return {"predicates": self.labels.predicates(shown), "triples": self.labels.triple_targets(shown)}


@pytest.fixture
def edited():
    before = parse_scan(small_scene(4, "000001"), Vocabulary())
    return before, apply_edit(before, parse_edit(EDIT)).after


def test_known_answers(edited, tmp_path):
    before, after = edited
    write_edit_folder(tmp_path / "edits/a", before, after, full_follows_edit=False)
    report = relation_sensitivity(GraphReader(before, after), tmp_path / "edits")
    assert report["after"]["direction_accuracy"] == 1.0 and report["after"]["flip_rate"] == 1.0
    assert report["after"]["unchanged_stability"] == 1.0
    assert report["full"]["direction_accuracy"] == 0.0  # an image that ignores the edit moves nothing
    # The null edit (the region re-inpainted under the unchanged graph) moves nothing here: the whole effect is
    # the edit's, and with one edit every resample is that edit.
    assert report["null"]["direction_accuracy"] == 0.0 and report["null"]["mean_probability_change"] == 0.0
    beyond = report["after_minus_null"]["direction_accuracy"]
    assert beyond == {"value": 1.0, "ci95": [1.0, 1.0], "excludes_0": True}
    assert report["by_edit_kind"]["predicate"]["n_edits"] == 1
    assert "predicate Sawing" in report["edits"][0]["changed_labels"]
    assert "predicate Drilling" in report["edits"][0]["changed_labels"]  # removed by the edit
    (tmp_path / "edits/a/after_cam5.png").unlink()
    with pytest.raises(ImageSetError, match="after_cam5.png is missing"):
        relation_sensitivity(GraphReader(before, after), tmp_path / "edits")
    with pytest.raises(ImageSetError, match="no edit.json"):
        relation_sensitivity(GraphReader(before, after), tmp_path / "nothing")


def test_edit_then_evaluate_through_the_real_commands(tmp_path_factory, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipeline = saved_tiny_pipeline(tmp_path_factory, layout_channels=4)
        graphs = tmp_path / "relationships_validation.json"
        graphs.write_text(json.dumps({"scans": [small_scene(4, "000001")]}))
        edit(
            edit_config(
                [
                    f"pipeline={pipeline}",
                    f"graphs={graphs}",
                    "scan=4/000001",
                    f"edit={EDIT}",
                    "cameras=[1,5]",
                    "steps=2",
                    "guidance_scale=1",
                    f"out={tmp_path / 'edits'}",
                ]  # fmt: skip
            )
        )
        before = parse_scan(small_scene(4, "000001"), Vocabulary())
        classifier = RelationClassifier(triple_vocabulary([before], 1), image_size=16)
        classifier.save_pretrained(tmp_path / "classifier")
        base = [f"classifier={tmp_path / 'classifier'}", f"out={tmp_path / 'eval'}", "progress=false"]
        with pytest.raises(EvaluationError, match="edits=DIR"):
            evaluate(load_config("evaluate", [*base, "metrics=[relation_sensitivity]"]))
        document = evaluate(
            load_config("evaluate", [*base, "metrics=[relation_sensitivity]", f"edits={tmp_path / 'edits'}"])
        )
    finally:
        torch.set_num_threads(threads)
    value = document["metrics"]["relation_sensitivity"]
    (edited_folder,) = document["details"]["relation_sensitivity"]["edits"]
    changed = (
        len(edited_folder["changed_labels"]) * 2
    )  # every label the edit changes, seen by cameras 1 and 5
    assert changed > 0 and value["after"]["changed_labels"] == value["full"]["changed_labels"] == changed
    assert (
        value["null"]["changed_labels"] == changed
    )  # the null edit, drawn by or_synth.edit beside each camera
    assert (tmp_path / "edits" / edited_folder["folder"] / "null_cam5.png").is_file()
    assert set(value["after_minus_null"]) == {
        "n_edits",
        *("direction_accuracy", "flip_rate", "mean_probability_change"),
    }
    for kind in ("after", "full"):  # fractions of those labels
        assert (value[kind]["direction_accuracy"] * changed) == pytest.approx(
            round(value[kind]["direction_accuracy"] * changed), abs=1e-3
        )
    card = json.loads((tmp_path / "eval/cards/relation_sensitivity.json").read_text())
    assert card["n_edits"] == 1 and card["warnings"] == ["only 1 edit(s): a rough estimate"]
    assert card["classifier_hash"] == card["weights_hash"] == classifier_hash(tmp_path / "classifier")
    assert "samples" not in card  # no samples= needed: only the edits are scored


def test_the_null_edit_and_the_edit_kinds_carry_intervals(edited, tmp_path):
    """Over several edits: an inpainting that moves labels by itself (the null edit follows the edit's labels too)
    leaves no effect beyond it, and each kind of edit is reported on its own."""
    before, after = edited
    for k in range(
        4
    ):  # the null edit shows the after graph half the time: inpainting alone "moves" the labels
        write_edit_folder(
            tmp_path / f"edits/p{k}", before, after, full_follows_edit=True, null_follows_edit=k % 2 == 0
        )
    for k in range(3):
        write_edit_folder(tmp_path / f"edits/r{k}", before, after, full_follows_edit=True, edit="role x y")
    report = relation_sensitivity(GraphReader(before, after), tmp_path / "edits", resamples=500)
    assert report["n_edits"] == 7 and report["after"]["direction_accuracy"] == 1.0
    assert report["null"]["direction_accuracy"] == pytest.approx(2 / 7, abs=1e-4)
    low, high = report["null"]["direction_accuracy_ci95"]
    assert 0.0 <= low < 2 / 7 < high <= 1.0
    predicate, role = report["by_edit_kind"]["predicate"], report["by_edit_kind"]["role"]
    assert predicate["n_edits"] == 4 and role["n_edits"] == 3
    assert predicate["null"]["direction_accuracy"] == 0.5 and role["null"]["direction_accuracy"] == 0.0
    assert predicate["after_minus_null"]["direction_accuracy"]["value"] == 0.5
    assert role["after_minus_null"]["direction_accuracy"]["excludes_0"] is True
