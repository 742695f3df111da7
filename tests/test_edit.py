"""python -m or_synth.edit: before/after pairs of one graph edit, their graphs and mask, and clear refusals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from or_synth.edit import edit, load_config
from tests.helpers import saved_tiny_pipeline, small_scene

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    return saved_tiny_pipeline(tmp_path_factory, layout_channels=4)


@pytest.fixture(scope="module")
def graphs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("graphs") / "relationships_validation.json"
    path.write_text(json.dumps({"scans": [small_scene(4, "000001"), small_scene(8, "000001")]}))
    return path


def test_edit_writes_before_after_pairs_graphs_and_mask(pipeline_dir, graphs_file, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = edit(
            load_config(
                [
                    f"pipeline={pipeline_dir}",
                    f"graphs={graphs_file}",
                    "scan=4/000001",
                    "edit=predicate head-surgeon Patient Sawing",
                    "cameras=[1,5]",
                    "steps=2",
                    "guidance_scale=1",
                    f"out={tmp_path}",
                ]
            )
        )
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
    assert record["layout"] == "render" and record["changed_nodes"] == [0, 1]
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
        edit(load_config(overrides))
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_the_command_exits_2_with_one_line(pipeline_dir, graphs_file, tmp_path):
    command = [sys.executable, "-m", "or_synth.edit", f"pipeline={pipeline_dir}", f"graphs={graphs_file}",
               f"out={tmp_path}", "scan=4/000001", "edit=swap Patient"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "expected `swap SUBJECT OBJECT`" in done.stderr
    assert "Traceback" not in done.stderr
