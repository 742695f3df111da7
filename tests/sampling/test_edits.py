"""Graph edits (``python -m or_synth.edit``): before/after pairs of one graph edit, their graphs and mask,
clear refusals, and the renderer's physical rules applied by the sampling layer (not the data layer)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from or_synth.data.edits import GraphEditError, apply_edit
from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import Vocabulary
from or_synth.sampling import apply_drawable_edit, edit
from tests.helpers import run_edit, sampling_config, small_scene

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graphs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("graphs") / "relationships_validation.json"
    path.write_text(json.dumps({"scans": [small_scene(4, "000001"), small_scene(8, "000001")]}))
    return path


def test_edit_writes_before_after_pairs_graphs_and_mask(pipeline_dir, graphs_file, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        edited = ("scan=4/000001", "edit=predicate head-surgeon Patient Sawing", "cameras=[1,5]")
        result = run_edit(pipeline_dir, graphs_file, tmp_path, *edited)
    finally:
        torch.set_num_threads(threads)
    folder = Path(result["folder"])
    assert folder.name == "4_000001_predicate_head-surgeon_Patient_Sawing"
    for camera in (1, 5):
        for name in ("before", "after", "full", "mask"):
            with Image.open(folder / f"{name}_cam{camera}.png") as image:
                assert image.size == (16, 16)
    with Image.open(folder / "pair.png") as pair:  # graph text + 4 columns x 2 cameras of 128 px tiles
        assert pair.size == (3 * 128 + 8 * 128, 18 + 128)
    graphs = json.loads((folder / "graphs.json").read_text())
    relation = {g: [r[3] for r in graphs[g]["relationships"] if r[:2] == [2, 1]] for g in ("before", "after")}
    assert relation == {
        "before": ["Drilling"],
        "after": ["Sawing"],
    }  # head surgeon (key 2) -> Patient (key 1)
    record = json.loads((folder / "edit.json").read_text())
    # layout=auto: the renderer's layouts of both graphs, recorded in the manifest's vocabulary.
    assert record["layout"] == "rendered" and record["changed_nodes"] == [0, 1]
    assert {"kept_mse", "kept_ssim", "kept_fraction"} <= set(record["cameras"]["1"]["inpainted"])
    assert record["cameras"]["1"]["regenerated"] == "edited region"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["scan=4/000001", "edit=predicate head-surgeon Patient Juggling"], "unknown predicate 'Juggling'"),
        (["scan=000001", "edit=remove Patient"], "scan 000001 in takes [4, 8]"),
        (["scan=4/000001", "edit=role 9 head-surgeon"], "no node 9"),
    ],
)
def test_bad_edits_are_refused_naming_them(pipeline_dir, graphs_file, tmp_path, extra, message):
    overrides = [f"pipeline={pipeline_dir}", f"graphs={graphs_file}", f"out={tmp_path}", *extra]
    with pytest.raises(ValueError, match=re.escape(message)):
        edit(sampling_config("edit", *overrides))
    assert not any(tmp_path.iterdir())  # refused before anything is written


@pytest.mark.parametrize(
    ("impossible", "message"),
    [
        ("swap human_1 instrument", "physically impossible: instrument Holding"),
        ("predicate human_1 instrument Drilling", "Patient"),  # a surgical action on an instrument
    ],
)
def test_the_renderers_rules_are_checked_by_the_sampling_layer(impossible, message):
    """The data layer applies an edit with whatever check it is given; the sampling layer gives the renderer's."""
    record = parse_scan(small_scene(4, "000001"), Vocabulary())
    assert apply_edit(record, impossible).after.triples != record.triples  # the data layer alone: no rules
    with pytest.raises(GraphEditError) as caught:
        apply_drawable_edit(record, impossible)
    assert f"edit {impossible!r} on take 4 scan 000001" in str(caught.value) and message in str(caught.value)


def test_a_layout_the_pipeline_cannot_take_is_refused(plain_pipeline_dir, graphs_file, tmp_path):
    edited = ("scan=4/000001", "edit=predicate head-surgeon Patient Sawing", "cameras=[1]")
    with pytest.raises(ValueError, match="layout=masks, but this pipeline's denoiser has no layout input"):
        run_edit(plain_pipeline_dir, graphs_file, tmp_path, *edited, "layout=masks")
    assert not any(tmp_path.iterdir())
    result = run_edit(plain_pipeline_dir, graphs_file, tmp_path, *edited)  # auto: the whole image redrawn
    assert result["layout"] == "absent" and result["cameras"]["1"]["regenerated"] == "whole image"


def test_the_command_exits_2_with_one_line(pipeline_dir, graphs_file, tmp_path):
    command = [sys.executable, "-m", "or_synth.edit", f"pipeline={pipeline_dir}", f"graphs={graphs_file}",
               f"out={tmp_path}", "scan=4/000001", "edit=swap Patient"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "expected `swap SUBJECT OBJECT`" in done.stderr
    assert "Traceback" not in done.stderr
