"""The image manifest's one owner: a line's round trip, the older shapes read by conversion, NaN refused,
damaged files read tolerantly (resume) or refused with the file and line (scoring)."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from or_synth.data.manifest import (
    LAYOUT_SOURCES,
    SETTINGS,
    ManifestError,
    ManifestLine,
    append_lines,
    first_line,
    path_in_folder,
    read_manifest,
    write_manifest,
)

LINE = ManifestLine(
    image="images/take4_scan000001_cam1_s0.png", take=4, scan="000001", camera=1, graphs="graphs.json",
    seed=7, layout="rendered", sampler="ddim", steps=2, guidance_scale=3.0, layout_guidance_scale=1.0,
    base_seed=0, pipeline="p", pipeline_hash="abc", graphs_hash="def", height=16, width=16, layout_renderer=3,
)  # fmt: skip
# Lines as the commands wrote them before the one shape (from a real run of each, shortened).
OLD_SAMPLE = {
    "image": "images/take4_scan000000_cam3_s0.png", "source": "datasets/synthetic_or/relationships_validation.json",
    "take": 4, "scan": "000000", "camera": 3, "sample": 0, "seed": 685, "source_hash": "c0b0", "sampler": "ddim",
    "steps": 5, "guidance_scale": 3.0, "layout_guidance_scale": 1.0, "layout": "rendered", "base_seed": 0,
    "pipeline": "pretrained/cpu_quality", "pipeline_hash": "8827", "height": 64, "width": 64, "layout_renderer": 3,
    "layout_image": "layouts/take4_scan000000_cam3.png",
}  # fmt: skip
OLD_EXPORT = {
    "image": "export_holistic_take1_processed/colorimage/camera01_colorimage-001031.jpg", "take": 1,
    "scan": "000000", "camera": 1, "seed": 689, "layout": "render", "pipeline_hash": "8827",
    "source": {"take": 1, "scan": "000002", "copy": 1, "graphs": "relationships_train.json (sha256 d799)"},
}  # fmt: skip


def test_a_line_round_trips_with_every_field():
    text = LINE.to_text()
    assert text.endswith("\n") and list(json.loads(text)) == [f.name for f in fields(ManifestLine)]
    assert ManifestLine.from_json(json.loads(text)) == LINE
    assert set(LINE.settings()) == set(SETTINGS) and LINE.settings()["layout"] == "rendered"


def test_older_sample_and_export_lines_are_converted():
    sample = ManifestLine.from_json(OLD_SAMPLE)
    assert (
        sample.graphs == OLD_SAMPLE["source"] and sample.graphs_hash == "c0b0" and sample.source_scan is None
    )
    assert (sample.layout, sample.layout_image, sample.steps) == ("rendered", OLD_SAMPLE["layout_image"], 5)
    export = ManifestLine.from_json(OLD_EXPORT)
    # The export's graph is in its own relationships file of the take's split; its source scan keeps its field.
    assert export.graphs == "relationships_train.json" and export.source_scan == OLD_EXPORT["source"]
    assert export.layout == "rendered" and export.sample == 0 and export.sampler is None
    assert {ManifestLine.from_json({**OLD_EXPORT, "layout": old}).layout for old in LAYOUT_SOURCES} == set(
        LAYOUT_SOURCES.values()
    )


def test_nan_is_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, [LINE])
    before = path.read_bytes()
    bad = ManifestLine(**{**LINE.to_json(), "guidance_scale": float("nan")})
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        append_lines(path, [LINE, bad])
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        write_manifest(path, [bad])
    assert path.read_bytes() == before


def test_reading_strict_names_the_line_and_tolerant_says_what_it_dropped(tmp_path):
    path = tmp_path / "manifest.jsonl"
    append_lines(path, [LINE])
    with path.open("a") as handle:
        handle.write(json.dumps(OLD_SAMPLE) + "\n\n" + json.dumps({"image": "x.png", "take": 4}) + "\n")
    with pytest.raises(ManifestError, match=r"manifest.jsonl, line 4: field 'scan' is missing"):
        read_manifest(path)
    tolerant = read_manifest(path, tolerant=True)
    assert [line.image for line in tolerant.lines] == [LINE.image, OLD_SAMPLE["image"]]
    assert tolerant.damaged and tolerant.older
    path.write_text(LINE.to_text() + LINE.to_text()[:30])  # a last line cut off by a crash
    cut = read_manifest(path, tolerant=True)
    assert cut.lines == [LINE] and cut.damaged and not cut.older
    path.write_text(LINE.to_text().replace('"take": 4', '"take": "four"'))
    with pytest.raises(ManifestError, match="line 1: field 'take' is not a number"):
        read_manifest(path)
    assert first_line(tmp_path / "nowhere.jsonl") is None and first_line(None) is None


def test_paths_inside_the_manifests_folder_are_relative_to_it(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    (folder / "relationships_train.json").write_text("{}")
    assert path_in_folder(folder / "sub" / "a.png", folder) == "sub/a.png"
    assert path_in_folder(tmp_path / "elsewhere.json", folder) == str(tmp_path / "elsewhere.json")
    line = ManifestLine(image="a.png", take=1, scan="000000", camera=1, graphs="relationships_train.json")
    assert line.graphs_file(folder) == folder / "relationships_train.json"
    monkeypatch.chdir(tmp_path)  # a path outside the folder, as the command was given it
    outside = ManifestLine(image="a.png", take=1, scan="000000", camera=1, graphs="elsewhere.json")
    assert outside.graphs_file(folder).resolve() == tmp_path / "elsewhere.json"
