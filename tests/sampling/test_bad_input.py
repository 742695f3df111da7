"""The sampling commands (``or_synth.sample``, ``or_synth.export``, ``or_synth.edit``) as a careless user runs
them, in-process through their real ``main()``: a bad option, a graph of a take 4D-OR does not have and a
tampered shipped pipeline are each one ``error:`` line naming what is wrong, exit 2, no traceback, nothing drawn
and nothing already written changed. Overwrites and resumes: test_overwrite_resume.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from or_synth import edit as edit_command
from or_synth import export as export_command
from or_synth import sample as sample_command
from or_synth.data.io import file_sha256
from or_synth.sampling.files import image_complete, non_finite, write_json
from tests.helpers import assert_refused, file_hashes, run_command, small_scene

MAINS = {"sample": sample_command.main, "export": export_command.main, "edit": edit_command.main}
READ_ONLY = "/proc/or_synth_cannot_write_here"  # a read-only file system, for root too

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A graphs file of two validation scans and one of training scans (export refuses validation graphs)."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "relationships_validation.json").write_text(
        json.dumps({"scans": [small_scene(4, "000001"), small_scene(8, "000001")]})
    )
    (folder / "relationships_train.json").write_text(
        json.dumps({"scans": [small_scene(1, "000001"), small_scene(3, "000002")]})
    )
    (folder / "a_file").write_text("not a folder")
    return folder


def command_line(command: str, pipeline: Path, inputs: Path, out: Path) -> list[str]:
    """A command line of ``command`` that works (at 2 steps, one camera) until one option is changed."""
    split = "train" if command == "export" else "validation"
    args = [f"pipeline={pipeline}", f"graphs={inputs / f'relationships_{split}.json'}", f"out={out}",
            "steps=2", "cameras=[1]"]  # fmt: skip
    if command == "edit":
        return [*args, "scan=4/000001", "edit=predicate head-surgeon Patient Sawing"]
    return [*args, "progress=false", "limit=1"]


def refused_before_any_work(command: str, args: list[str], inputs: Path, out: Path, *names: str) -> str:
    before = file_hashes(inputs)
    line = assert_refused(run_command(MAINS[command], *args), *names)
    assert file_hashes(inputs) == before and not out.exists()  # nothing drawn, nothing written
    return line


BAD_OPTIONS = {
    # option=value -> what the error line must name
    "steps=0": "steps must be >= 1",
    "steps=2.5": "steps must be a whole number",
    "steps=true": "steps must be a whole number",
    "guidance_scale=nan": "guidance_scale must be a finite number",
    "layout_guidance_scale=inf": "layout_guidance_scale must be a finite number",
    "cameras=[7]": "cameras must be in 1..6",
    "seed=-1": "seed must be >= 0",
    "device=abc": "device=abc",
    "out=" + READ_ONLY: "out=",
}
PER_COMMAND = {
    "sample": {
        "samples_per_graph=0": "samples_per_graph must be >= 1",
        "limit=-1": "limit must be >= 1 or null",
        "stride=0": "stride must be >= 1",
        "batch_size=0": "batch_size must be >= 1",
        "overwrite=no": "overwrite must be true or false",
    },
    "export": {
        "samples_per_graph=0": "samples_per_graph must be >= 1",
        "limit=-1": "limit must be >= 1 or null",
        "jpeg_quality=0": "jpeg_quality must be in 1..100",
        "jpeg_quality=101": "jpeg_quality must be in 1..100",
        "rebalance={Drilling:nan}": "the weight of Drilling must be a finite number >= 0",
        "rebalance={Drilling:-1}": "the weight of Drilling must be a finite number >= 0",
        "rebalance=sideways": "rebalance=sideways",
        "rebalance={Juggling:1}": "unknown main action 'Juggling'",
        "graphs=scene_process scene_process.scans_per_take=2": "scene_process.scans_per_take must be >= 8",
    },
    "edit": {
        "dilation=-1": "dilation must be >= 0",
        "scan=four/one": "scan=four/one",
        "overwrite=maybe": "overwrite must be true or false",
    },
}
CASES = [(c, o, m) for c in MAINS for o, m in {**BAD_OPTIONS, **PER_COMMAND[c]}.items()]


@pytest.mark.parametrize(("command", "option", "message"), CASES, ids=[f"{c}:{o}" for c, o, _ in CASES])
def test_a_bad_option_is_refused_before_any_work(command, option, message, pipeline_dir, inputs, tmp_path):
    out = tmp_path / "out"
    args = [*command_line(command, pipeline_dir, inputs, out), *option.split()]
    refused_before_any_work(command, args, inputs, out, message)


@pytest.mark.parametrize("command", sorted(MAINS))
def test_out_that_is_a_file_is_refused(command, pipeline_dir, inputs, tmp_path):
    args = [*command_line(command, pipeline_dir, inputs, tmp_path / "out"), f"out={inputs / 'a_file'}"]
    refused_before_any_work(command, args, inputs, tmp_path / "out", "out=", "is a file")
    assert (inputs / "a_file").read_text() == "not a folder"


@pytest.mark.parametrize("command", ["sample", "export"])
def test_a_take_outside_4dor_is_refused_naming_the_file_take_scan_and_field(command, pipeline_dir, tmp_path):
    graphs = tmp_path / "graphs" / "relationships_train.json"
    graphs.parent.mkdir()
    bad = {**small_scene(1, "000002"), "take_idx": 99}
    graphs.write_text(json.dumps({"scans": [small_scene(1, "000001"), bad]}))
    out = tmp_path / "out"
    args = [*command_line(command, pipeline_dir, graphs.parent, out), f"graphs={graphs}", "limit=null"]
    line = refused_before_any_work(
        command, args, graphs.parent, out, str(graphs), "take 99", "field take_idx"
    )
    assert "scan 000002" in line and "1..10" in line


def tampered_copy(pipeline: Path, where: Path) -> tuple[Path, Path]:
    """A copy of ``pipeline`` shipped (``shipped.json`` with every file's hash), then one weights file altered."""
    folder = where / "shipped"
    shutil.copytree(pipeline, folder)
    files = {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / "shipped.json").write_text(json.dumps({"name": "shipped", "files": files}))
    weights = sorted((folder / "unet").glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return folder, weights


def test_a_tampered_shipped_pipeline_is_one_line_naming_the_file_in_every_command(
    pipeline_dir, inputs, tmp_path
):
    folder, weights = tampered_copy(pipeline_dir, tmp_path)
    shipped = file_hashes(folder)
    for command in MAINS:
        out = tmp_path / f"out_{command}"
        args = [*command_line(command, folder, inputs, out), f"pipeline={folder}"]
        refused_before_any_work(command, args, inputs, out, str(weights), "does not match shipped.json")
    assert file_hashes(folder) == shipped


@pytest.mark.parametrize(
    ("damage", "named", "reason"),
    [
        ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.safetensors", "header"),
        ("unet/config.json", "unet/config.json", "Expecting property name"),
        ("graph_encoder/config.json", "graph_encoder/config.json", "not a JSON object"),
        ("shipped.json", "shipped.json", "{path: sha256}"),
    ],
)
def test_a_damaged_pipeline_folder_is_one_line_naming_the_file(
    damage, named, reason, pipeline_dir, inputs, tmp_path
):
    folder = tmp_path / "pipe"
    shutil.copytree(pipeline_dir, folder)
    path = folder / damage
    text = {
        "unet/config.json": "{oops",
        "graph_encoder/config.json": "[1]",
        "shipped.json": '{"files": ["x"]}',
    }
    path.write_bytes(path.read_bytes()[:100] if path.suffix == ".safetensors" else text[damage].encode())
    for command in MAINS:
        out = tmp_path / f"out_{command}"
        args = [*command_line(command, folder, inputs, out), f"pipeline={folder}"]
        refused_before_any_work(command, args, inputs, out, named, reason)


def test_json_is_written_without_nan_and_an_image_is_whole_only_with_its_ends(tmp_path):
    path = tmp_path / "record.json"
    write_json(path, {"a": 1})
    with pytest.raises(ValueError, match=r"cameras\.1\.kept_mse must be finite"):
        write_json(path, {"cameras": {"1": {"kept_mse": float("nan")}}})
    assert path.read_text() == '{"a": 1}\n' and non_finite([1.0, float("inf")]) == ["[1]"]

    from PIL import Image

    Image.new("RGB", (16, 8), (9, 9, 9)).save(tmp_path / "a.png")
    Image.new("RGB", (16, 8), (9, 9, 9)).save(tmp_path / "a.jpg", quality=90)
    assert image_complete(tmp_path / "a.png", (8, 16)) and image_complete(tmp_path / "a.jpg")
    assert not image_complete(tmp_path / "a.png", (16, 16))  # another size: not this job's image
    for name in ("a.png", "a.jpg"):
        whole = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(whole[: len(whole) // 2])
        assert not image_complete(tmp_path / name)
        # A trailing byte: the cheap check cannot clear it, decoding does.
        (tmp_path / name).write_bytes(whole + b"\0")
        assert image_complete(tmp_path / name)
    assert not image_complete(tmp_path / "missing.png") and not image_complete(tmp_path)
