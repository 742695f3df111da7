"""Given graphs that cannot be drawn: a clear error naming the scan, or skipped and counted."""

from __future__ import annotations

import json

import pytest

from or_synth.data import DatasetFormatError, FourDORDataset, load_scene_graphs
from or_synth.render import load_config, render
from or_synth.render.pipeline import MANIFEST
from tests.helpers import scan_entry, small_scene

OPTS = ["image_size=[32,32]", "progress=false"]


def write_json(path, scans):
    path.write_text(json.dumps({"scans": scans}))
    return path


def two_patients(take, scan):
    return scan_entry(
        take, scan, ["Patient", "Patient", "operating_table"], [(1, 3, "LyingOn"), (2, 3, "LyingOn")]
    )


def drilling_a_table(take, scan):
    return scan_entry(
        take,
        scan,
        ["human_0", "instrument", "instrument_table"],
        [(1, 3, "Drilling"), (3, 1, "CloseTo")],
        {"human_0": "head-surgeon"},
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [(two_patients, "two Patients"), (drilling_a_table, "must be the Patient")],
)
def test_impossible_graph_names_the_scan(tmp_path, bad, message):
    source = write_json(
        tmp_path / "relationships_validation.json", [small_scene(4, "000000"), bad(4, "000001")]
    )
    with pytest.raises(DatasetFormatError, match=message) as info:
        render(load_config([*OPTS, f"root={tmp_path / 'out'}", f"from_json={source}"]))
    assert info.value.scan == "000001" and info.value.take == 4


def test_strict_false_skips_and_counts(tmp_path):
    scans = [
        small_scene(4, "000000"),
        two_patients(4, "000001"),
        drilling_a_table(4, "000002"),
        small_scene(4, "000003"),
    ]
    source = write_json(tmp_path / "relationships_validation.json", scans)
    root = tmp_path / "out"
    manifest = render(load_config([*OPTS, f"root={root}", f"from_json={source}", "strict=false"]))
    assert [s["scan"] for s in manifest["skipped"]] == ["000001", "000002"]
    assert json.loads((root / MANIFEST).read_text())["skipped"] == manifest["skipped"]
    rendered = load_scene_graphs(root / "relationships_validation.json")
    assert [r.scan for r in rendered] == ["000000", "000003"]
    assert len(FourDORDataset(root, "validation", load_images=True, processed_root=tmp_path / "p")) == 2


def test_predicate_the_renderer_cannot_draw(tmp_path):
    # A custom vocabulary beside the JSON adds a predicate the renderer has no picture for.
    from or_synth.data.vocabulary import PREDICATES

    (tmp_path / "relationships.txt").write_text("\n".join([*PREDICATES, "Dancing"]) + "\n")
    scan = small_scene(4, "000007")
    scan["relationships"].append([2, 3, len(PREDICATES), "Dancing"])
    source = write_json(tmp_path / "relationships_validation.json", [scan])
    with pytest.raises(DatasetFormatError, match="cannot draw predicate 'Dancing'") as info:
        render(load_config([*OPTS, f"root={tmp_path / 'out'}", f"from_json={source}"]))
    assert info.value.scan == "000007"


@pytest.mark.parametrize("takes", ["abc", "[1,x]", "[1,11]", "0", "true"])
def test_bad_takes_are_named_before_anything_is_written(tmp_path, takes):
    with pytest.raises(ValueError, match="takes must be"):
        render(load_config([f"root={tmp_path / 'r'}", f"takes={takes}", "progress=false"]))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "option",
    ["scans_per_take=2", "image_size=[0,32]", "image_size=32", "seed=-1", "workers=-2", "jpeg_quality=[90,200]",
     "rare_action_boost=2", "camera_jitter=nan", "layout_tries=0"],
)  # fmt: skip
def test_bad_options_are_refused_before_anything_is_written(tmp_path, option):
    with pytest.raises(ValueError, match=option.split("=")[0]):
        render(load_config([f"root={tmp_path / 'r'}", option, "progress=false"]))
    assert not (tmp_path / "r").exists()
