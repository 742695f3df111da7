"""Every kind of bad input gets a clear error naming file, take, scan and field; strict=false skips and counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from or_synth.data import DatasetFormatError, FourDORDataset, load_scene_graphs
from or_synth.data.summary import main as summary_main
from tests.helpers import small_scene, write_layout_dataset


def write(tmp_path, scans, name="relationships_train.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"scans": scans}))
    return path


def broken(mutate):
    entry = small_scene(1, "000003")
    mutate(entry)
    return entry


BAD_SCANS = {
    "unknown class": (
        lambda e: e["objects"].__setitem__("2", "robot"),
        'objects["2"]',
        "unknown object class",
    ),
    "unknown predicate": (
        lambda e: e["relationships"][2].__setitem__(3, "Juggling"),
        "relationships[2][3]",
        "unknown predicate",
    ),
    "missing object id": (
        lambda e: e["relationships"][1].__setitem__(1, 42),
        "relationships[1][1]",
        "not in objects",
    ),
    "pred_idx disagrees": (
        lambda e: e["relationships"][0].__setitem__(2, 5),
        "relationships[0][2]",
        "disagrees",
    ),
    "unknown role": (
        lambda e: e["human_idx_to_name"].__setitem__("human_0", "magician"),
        'human_idx_to_name["human_0"]',
        "unknown role",
    ),
    "take not int": (lambda e: e.__setitem__("take_idx", "1"), "take_idx", "integer"),
    # Every 4D-OR take has a split: a take outside 1..10 is refused here, not later by a split lookup.
    "take outside 4D-OR": (lambda e: e.__setitem__("take_idx", 99), "take_idx", "not a 4D-OR take (1..10)"),
    "objects missing": (lambda e: e.pop("objects"), "objects", "non-empty"),
    "self loop": (lambda e: e["relationships"][0].__setitem__(1, 1), "relationships[0]", "itself"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCANS))
def test_bad_scan_is_named(tmp_path, case):
    mutate, field, words = BAD_SCANS[case]
    path = write(tmp_path, [small_scene(1, "000001"), broken(mutate)])
    with pytest.raises(DatasetFormatError) as info:
        load_scene_graphs(path)
    error = info.value
    assert error.file == str(path) and error.field == field and words in str(error)
    if case != "take not int":
        assert error.take == (99 if case == "take outside 4D-OR" else 1) and error.scan == "000003"
    assert f"file {path}" in str(error) and f"field {field}" in str(error)


def test_strict_false_skips_and_reports_each_bad_scan(tmp_path, caplog):
    scans = [small_scene(1, "000000")] + [broken(m) for m, _, _ in BAD_SCANS.values()]
    for i, s in enumerate(scans[1:], start=1):
        if isinstance(s.get("take_idx"), int):
            s["scan"] = f"{i:06d}"
    result = load_scene_graphs(write(tmp_path, scans), strict=False)
    assert len(result.records) == 1
    assert len(result.skipped) == len(BAD_SCANS)
    assert f"skipped {len(BAD_SCANS)} bad scan(s)" in caplog.text


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "relationships_train.json"
    path.write_text('{"scans": [\n  {"take_idx": 1,, }\n]}')
    with pytest.raises(DatasetFormatError, match=r"malformed JSON at line 2 column"):
        load_scene_graphs(path)


def test_wrong_top_level_is_named(tmp_path):
    path = tmp_path / "relationships_train.json"
    path.write_text("[1, 2]")
    with pytest.raises(DatasetFormatError, match=r"field scans: expected a top-level object"):
        load_scene_graphs(path)


def test_duplicate_scan_is_an_error_and_skipped_when_lenient(tmp_path):
    path = write(tmp_path, [small_scene(1, "000001"), small_scene(1, "000001")])
    with pytest.raises(DatasetFormatError, match=r"take 1, scan 000001, field scans\[1\]: duplicate scan"):
        load_scene_graphs(path)
    lenient = load_scene_graphs(path, strict=False)
    assert len(lenient.records) == 1 and len(lenient.skipped) == 1


def test_cli_exits_non_zero_with_the_location(tmp_path, capsys):
    path = write(tmp_path, [broken(BAD_SCANS["unknown predicate"][0])])
    assert summary_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "take 1, scan 000003, field relationships[2][3]: unknown predicate 'Juggling'" in err
    assert summary_main(["--no-strict", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"][0]["field"] == "relationships[2][3]"


def test_cli_as_a_module_process(tmp_path):
    path = write(tmp_path, [broken(BAD_SCANS["missing object id"][0])])
    run = subprocess.run(
        [sys.executable, "-m", "or_synth.data.summary", str(path)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "names object id 42" in run.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "or_synth.data.summary", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_missing_image_is_named_and_skippable(tmp_path):
    root = write_layout_dataset(
        tmp_path / "ds", {"train": [small_scene(1, "000000"), small_scene(1, "000001")]}
    )
    victim = next((root / "export_holistic_take1_processed" / "colorimage").glob("camera03_*-001007.jpg"))
    victim.unlink()
    with pytest.raises(DatasetFormatError) as info:
        FourDORDataset(root, "train", load_images=True)
    assert info.value.scan == "000001" and info.value.field == "color_3" and "missing" in str(info.value)
    lenient = FourDORDataset(root, "train", load_images=True, strict=False)
    assert len(lenient) == 1 and lenient.skipped[0]["scan"] == "000001"


def test_unreadable_image_is_named(tmp_path):
    root = write_layout_dataset(tmp_path / "ds", {"train": [small_scene(1, "000000")]})
    victim = next((root / "export_holistic_take1_processed" / "colorimage").glob("camera01_*.jpg"))
    victim.write_bytes(b"not a jpeg")
    dataset = FourDORDataset(root, "train", load_images=True)
    with pytest.raises(
        DatasetFormatError, match=r"take 1, scan 000000, field color_1: image cannot be decoded"
    ):
        dataset[0]


@pytest.mark.parametrize("frame", ["../../../etc/passwd", "a/b", ".."])
def test_frame_id_escaping_the_root_is_refused(tmp_path, frame):
    root = write_layout_dataset(tmp_path / "ds", {"train": [small_scene(1, "000000")]})
    frames_file = root / "export_holistic_take1_processed" / "timestamp_to_pcd_and_frames_list.json"
    frames = json.loads(frames_file.read_text())
    frames[0][1]["color_2"] = frame
    frames_file.write_text(json.dumps(frames))
    with pytest.raises(DatasetFormatError, match=r"field \[0\]\[1\]\.color_2: frame id .* would escape"):
        FourDORDataset(root, "train", load_images=True)


def test_scan_beyond_the_frame_list(tmp_path):
    root = write_layout_dataset(tmp_path / "ds", {"train": [small_scene(1, "000000")]})
    (root / "relationships_train.json").write_text(json.dumps({"scans": [small_scene(1, "000009")]}))
    with pytest.raises(DatasetFormatError, match="scan index 9 is beyond the frame list"):
        FourDORDataset(root, "train", load_images=True)


def test_take_outside_the_split(tmp_path):
    root = write_layout_dataset(tmp_path / "ds", {"train": [small_scene(4, "000000")]})
    with pytest.raises(DatasetFormatError, match=r"take 4 is not in the train split"):
        FourDORDataset(root, "train")
    assert len(FourDORDataset(root, "train", takes=[4])) == 1


def test_bad_phase_file_is_named(tmp_path):
    root = write_layout_dataset(tmp_path / "ds", {"train": [small_scene(1, "000005")]})
    (root / "phases").mkdir()
    (root / "phases" / "phase_to_frames_1.json").write_text(json.dumps({"sterile": [0, 3]}))
    with pytest.raises(DatasetFormatError, match=r"take 1, scan 000005, field phase: no phase range"):
        FourDORDataset(root, "train")
    (root / "phases" / "phase_to_frames_1.json").write_text(json.dumps({"sterile": [0, 3], "coffee": [4, 9]}))
    with pytest.raises(DatasetFormatError, match=r"field coffee: unknown phase"):
        FourDORDataset(root, "train")


def test_truncated_image_is_named_with_take_scan_and_camera(tmp_path):
    """A JPEG cut short (a partial copy or download) decodes half-way: the error names the file, take, scan and
    camera; so does one that cannot be opened at all (a folder where the file should be)."""
    from or_synth.data.errors import UserError

    root = write_layout_dataset(tmp_path / "ds", {"train": [small_scene(1, "000000")]})
    folder = root / "export_holistic_take1_processed" / "colorimage"
    victim = next(folder.glob("camera02_*.jpg"))
    victim.write_bytes(victim.read_bytes()[:300])
    dataset = FourDORDataset(root, "train", load_images=True)
    with pytest.raises(
        DatasetFormatError, match=r"take 1, scan 000000, field color_2: image cannot be decoded"
    ):
        dataset[0]
    assert issubclass(DatasetFormatError, UserError)  # one line and exit 2 through or_synth.cli
    victim.unlink()
    victim.mkdir()
    with pytest.raises(DatasetFormatError, match=r"field color_2: image file cannot be read") as info:
        dataset[0]
    assert info.value.file == str(victim)
