"""What the sampling commands do with a folder they wrote before, through their real ``main()``: an overwrite
deletes only the command's own files (a user's notes and an evaluation folder inside survive), a changed edit is
refused unless ``overwrite=true``, and a resume checks content, not existence (a cut-off or deleted image, a
damaged annotation is drawn again to the same bytes; a damaged record is one error naming it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from or_synth import edit as edit_command
from or_synth import export as export_command
from or_synth import sample as sample_command
from or_synth.data.manifest import MANIFEST
from tests.helpers import assert_refused, file_hashes, manifest_lines, mtimes, run_command

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def ran(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0 and "Traceback" not in err, err[-3000:]
    return out


def user_files(folder: Path) -> dict[str, str]:
    """A user's notes and an evaluation folder inside a command's output folder."""
    (folder / "evaluation").mkdir(parents=True, exist_ok=True)
    files = {"notes.txt": "mine", "evaluation/scores.json": '{"fid": 1.0}'}
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def kept(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / name).read_text() == text for name, text in files.items())


def strict_json(path: Path) -> None:
    """Every JSON document (or JSON line) of ``path`` parses without NaN or infinity."""

    def refuse(constant: str):
        raise AssertionError(f"{path}: {constant}")

    texts = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
    for text in texts:
        json.loads(text, parse_constant=refuse)


# --- sample --------------------------------------------------------------------------------------------------
def test_sample_overwrite_deletes_only_the_images_it_listed(plain_pipeline_dir, three_graphs, tmp_path):
    out = tmp_path / "out"
    args = [f"pipeline={plain_pipeline_dir}", f"graphs={three_graphs}", f"out={out}", "steps=2", "cameras=[1]",
            "limit=2", "progress=false"]  # fmt: skip
    ran(run_command(sample_command.main, *args))
    mine = user_files(out)
    before = file_hashes(out)
    assert_refused(run_command(sample_command.main, *args, "steps=3"), str(out), "overwrite=true")
    assert file_hashes(out) == before
    ran(run_command(sample_command.main, *args, "steps=3", "limit=1", "overwrite=true"))
    assert kept(out, mine) and [line["steps"] for line in manifest_lines(out)] == [3]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["take4_scan000001_cam1_s0.png"]


def test_sample_resume_redraws_a_cut_off_or_foreign_image(plain_pipeline_dir, three_graphs, tmp_path):
    out = tmp_path / "out"
    args = [f"pipeline={plain_pipeline_dir}", f"graphs={three_graphs}", f"out={out}", "steps=2",
            "cameras=[1,2]", "limit=2", "progress=false"]  # fmt: skip
    ran(run_command(sample_command.main, *args))
    whole, lines = file_hashes(out / "images"), sorted((out / MANIFEST).read_text().splitlines())
    first, second, *rest = sorted((out / "images").iterdir())
    first.write_bytes(first.read_bytes()[:60])  # cut off by a crash
    Image.new("RGB", (8, 8)).save(second)  # a whole PNG, but not of this job's size
    untouched = {p: t for p, t in mtimes(out).items() if p in map(str, rest)}
    assert "2 new image(s), 2 already done" in ran(run_command(sample_command.main, *args))
    # The same bytes, and the same lines (the redrawn ones appended last).
    assert file_hashes(out / "images") == whole and sorted((out / MANIFEST).read_text().splitlines()) == lines
    assert all(mtimes(out)[p] == t for p, t in untouched.items())  # the whole ones were not drawn again

    # A manifest of which no line is readable says nothing of the images' settings: refused, not guessed.
    (out / MANIFEST).write_text("{oops\n")
    damaged = file_hashes(out)
    assert_refused(run_command(sample_command.main, *args), str(out / MANIFEST), "overwrite=true")
    assert file_hashes(out) == damaged
    ran(run_command(sample_command.main, *args, "overwrite=true"))
    assert file_hashes(out / "images") == whole and sorted((out / MANIFEST).read_text().splitlines()) == lines


# --- export --------------------------------------------------------------------------------------------------
def export_args(pipeline: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return [f"pipeline={pipeline}", f"dataset_root={root}", f"out={out}", "steps=2", "guidance_scale=1",
            "cameras=[1,4]", "limit=2", "progress=false", *extra]  # fmt: skip


def test_export_overwrite_deletes_only_the_files_the_export_wrote(pipeline_dir, tiny_render, tmp_path):
    out, fresh = tmp_path / "export", tmp_path / "fresh"
    ran(run_command(export_command.main, *export_args(pipeline_dir, tiny_render, out)))
    colour = next(out.glob("export_holistic_take*_processed/colorimage"))
    (colour / "my_photo.jpg").write_bytes(b"not drawn by the export")
    mine = {**user_files(out), str((colour / "my_photo.jpg").relative_to(out)): "not drawn by the export"}
    before = file_hashes(out)
    # sample's overwrite deletes what a manifest lists: never an export's images.
    into_export = [f"pipeline={pipeline_dir}", f"dataset_root={tiny_render}", "graphs=train", f"out={out}",
                   "steps=2", "overwrite=true", "progress=false"]  # fmt: skip
    assert_refused(run_command(sample_command.main, *into_export), "holds an export")
    refused = run_command(export_command.main, *export_args(pipeline_dir, tiny_render, out, "limit=1"))
    assert_refused(refused, "other settings", "limit", "overwrite=true")
    assert file_hashes(out) == before
    ran(
        run_command(
            export_command.main, *export_args(pipeline_dir, tiny_render, out, "limit=1", "overwrite=true")
        )
    )
    ran(run_command(export_command.main, *export_args(pipeline_dir, tiny_render, fresh, "limit=1")))
    assert kept(out, mine)
    # What is left besides the user's files is exactly a fresh export of the new settings, byte for byte.
    ours = {Path(p).relative_to(out): h for p, h in file_hashes(out).items()}
    assert {p: h for p, h in ours.items() if str(p) not in mine} == {
        Path(p).relative_to(fresh): h for p, h in file_hashes(fresh).items()
    }
    for path in [*out.glob("*.json"), out / MANIFEST, *out.glob("*/or_synth_annotations/*.json")]:
        strict_json(path)


def test_export_resume_checks_content_not_existence(pipeline_dir, tiny_render, tmp_path):
    out = tmp_path / "export"
    args = export_args(pipeline_dir, tiny_render, out)
    ran(run_command(export_command.main, *args))
    whole = file_hashes(out)
    jpegs = sorted(out.glob("export_holistic_take*_processed/colorimage/*.jpg"))
    annotations = sorted(out.glob("export_holistic_take*_processed/or_synth_annotations/*.json"))
    assert len(jpegs) == 4 and len(annotations) == 2
    jpegs[0].unlink()  # deleted from a finished export
    jpegs[-1].write_bytes(jpegs[-1].read_bytes()[:100])  # cut off, in the other scan
    assert "(2 scans drawn now)" in ran(run_command(export_command.main, *args))
    assert file_hashes(out) == whole
    annotations[0].write_text("{oops")
    (out / MANIFEST).write_text("{oops\n")  # rebuilt from the scans at the end, as every run does
    assert "(1 scans drawn now)" in ran(run_command(export_command.main, *args))
    assert file_hashes(out) == whole

    (out / "or_synth_export.json").write_text("{oops")
    damaged = file_hashes(out)
    assert_refused(
        run_command(export_command.main, *args), "or_synth_export.json", "damaged", "overwrite=true"
    )
    assert file_hashes(out) == damaged
    ran(run_command(export_command.main, *args, "overwrite=true"))
    assert file_hashes(out) == whole


# --- edit ----------------------------------------------------------------------------------------------------
def test_edit_rerun_with_other_settings_is_refused_unless_overwrite(
    plain_pipeline_dir, three_graphs, tmp_path
):
    args = [f"pipeline={plain_pipeline_dir}", f"graphs={three_graphs}", f"out={tmp_path}", "steps=2",
            "cameras=[1,2]", "scan=4/000001", "edit=predicate head-surgeon Patient Sawing"]  # fmt: skip
    ran(run_command(edit_command.main, *args))
    folder = tmp_path / "4_000001_predicate_head-surgeon_Patient_Sawing"
    mine = user_files(folder)
    stamps, before = mtimes(folder), file_hashes(folder)
    ran(run_command(edit_command.main, *args))  # the same edit, whole: nothing drawn again
    assert mtimes(folder) == stamps
    assert_refused(run_command(edit_command.main, *args, "steps=3"), str(folder), "steps", "overwrite=true")
    assert file_hashes(folder) == before
    ran(run_command(edit_command.main, *args, "steps=3", "cameras=[2]", "overwrite=true"))
    record = json.loads((folder / "edit.json").read_text())
    assert record["job"]["steps"] == 3 and sorted(record["cameras"]) == ["2"] and kept(folder, mine)
    assert not list(folder.glob("*_cam1.png"))  # the earlier edit's camera does not linger
    strict_json(folder / "edit.json")

    in_the_way = tmp_path / "4_000001_remove_assistant-surgeon"
    in_the_way.write_text("a file where the edit's folder goes")
    other = [*args[:-1], "edit=remove assistant-surgeon"]
    assert_refused(run_command(edit_command.main, *other), str(in_the_way), "is a file")
    assert in_the_way.read_text() == "a file where the edit's folder goes"

    (folder / "edit.json").write_text("[oops")
    damaged = file_hashes(folder)
    assert_refused(run_command(edit_command.main, *args), "edit.json", "damaged", "overwrite=true")
    assert file_hashes(folder) == damaged
