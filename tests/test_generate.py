"""python -m or_synth.generate: a synthetic training set in 4D-OR's layout that the data layer reads unchanged,
rebalanced towards rare actions, resumable to the same bytes, refusing evaluation graphs and foreign folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from or_synth.data import FourDORDataset
from or_synth.data.summary import summarize
from or_synth.data.vocabulary import main_action
from or_synth.generate import ExportRefused, copies_per_graph, export, load_config
from tests.helpers import saved_tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    return saved_tiny_pipeline(tmp_path_factory, layout_channels=4)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run(pipeline_dir: Path, tiny_render: Path, out: Path, *extra: str) -> dict:
    overrides = [f"pipeline={pipeline_dir}", f"dataset_root={tiny_render}", f"out={out}", "steps=2",
                 "guidance_scale=1", "cameras=[1,4]", "progress=false", *extra]  # fmt: skip
    return export(load_config(overrides))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_is_a_4dor_dataset_rebalanced_and_resumable(pipeline_dir, tiny_render, tmp_path):
    out = tmp_path / "export"
    result = run(pipeline_dir, tiny_render, out, "rebalance=uniform")
    assert result["scans"] == 16 and result["images"] == 32 and result["generated"] == 16

    dataset = FourDORDataset(
        out, "train", cameras=[1, 4], load_images=True, processed_root=tmp_path / "processed"
    )
    assert len(dataset) == 16 and tuple(dataset[0].images.shape[-3:]) == (3, 16, 16)
    counts = summarize(out)
    assert counts["scans"] == 16 and set(counts["takes"]) == {"1", "3"}
    source_counts = summarize(tiny_render / "relationships_train.json")
    card = (out / "dataset_card.md").read_text()
    assert "| main action | before | after |" in card and "rebalance: uniform" in card
    before = {row.split("|")[1].strip(): int(row.split("|")[2]) for row in card.splitlines() if row.startswith("| ") and row.split("|")[2].strip().isdigit()}  # fmt: skip
    assert sum(before.values()) == source_counts["scans"] == 16
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 32 and {m["camera"] for m in manifest} == {1, 4}
    assert all((out / m["image"]).is_file() and m["source"]["take"] in (1, 3) for m in manifest)
    phases = json.loads((out / "phases" / "phase_to_frames_1.json").read_text())
    assert sorted(start for start, _ in phases.values())[0] == 0  # contiguous phase ranges from scan 0

    written = files(out)
    again = run(pipeline_dir, tiny_render, out, "rebalance=uniform")
    assert again["generated"] == 0 and files(out) == written  # a complete export: nothing rewritten
    annotation = next((out / "export_holistic_take3_processed" / "or_synth_annotations").glob("*.json"))
    image = next((out / "export_holistic_take3_processed" / "colorimage").glob(f"*{json.loads(annotation.read_text())['cameras']['1']['frame_id']}.jpg"))  # fmt: skip
    annotation.unlink()
    image.unlink()  # as if the run died in this scan
    resumed = run(pipeline_dir, tiny_render, out, "rebalance=uniform")
    assert resumed["generated"] == 1 and files(out) == written  # the same bytes

    # The evaluation suite finds the boxes of the masks each exported image was drawn from (pair-level scores).
    from or_synth.evaluate import generated_pairs
    from or_synth.evaluation import RelationClassifier, load_generated

    exported = load_generated(out / "manifest.jsonl")
    pairs, why = generated_pairs(tiny_render, exported, RelationClassifier([], 16, ["Patient"]))
    assert why is None and len(pairs) > 0 and "annotations" in pairs.source
    assert set(pairs.image_index.tolist()) <= set(range(len(exported)))


def test_rebalancing_moves_scans_towards_rare_actions():
    from or_synth.data.scene_graph import parse_scan
    from or_synth.data.vocabulary import Vocabulary
    from tests.helpers import scan_entry, small_scene

    common = [parse_scan(scan_entry(1, f"{i:06d}", ["Patient", "operating_table"], [(1, 2, "LyingOn")], {}),
                         Vocabulary()) for i in range(6)]  # fmt: skip
    rare = parse_scan(small_scene(1, "000099"), Vocabulary())  # Drilling
    records = [*common, rare]
    assert main_action(rare.predicates) == "Drilling"
    uniform = copies_per_graph(records, 2, "uniform", seed=0)
    assert sum(uniform) == 14 and uniform[-1] == 7 and sum(uniform[:-1]) == 7
    weighted = copies_per_graph(records, 1, {"Drilling": 3.0}, seed=0)
    assert sum(weighted) == 7 and weighted[-1] == round(7 * 3 / 4)
    assert copies_per_graph(records, 3, None, seed=0) == [3] * 7
    with pytest.raises(ValueError, match="unknown main action"):
        copies_per_graph(records, 1, {"Juggling": 1.0}, seed=0)


def test_refusals(pipeline_dir, tiny_render, tmp_path):
    with pytest.raises(ExportRefused, match="validation/test takes"):
        run(pipeline_dir, tiny_render, tmp_path / "a", "graphs=validation")
    with pytest.raises(ExportRefused, match="source dataset's root"):
        run(pipeline_dir, tiny_render, tiny_render)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ExportRefused, match="did not write"):
        run(pipeline_dir, tiny_render, tmp_path / "foreign")
    run(pipeline_dir, tiny_render, tmp_path / "b", "limit=2")
    with pytest.raises(ExportRefused, match="other settings"):
        run(pipeline_dir, tiny_render, tmp_path / "b", "limit=3")
    replaced = run(pipeline_dir, tiny_render, tmp_path / "b", "limit=3", "overwrite=true")
    assert replaced["scans"] == 3


def test_two_processes_shard_the_scans_and_write_the_same_bytes_as_one(pipeline_dir, tiny_render, tmp_path):
    """torch.distributed.run with 2 CPU processes (gloo): every scan drawn once, the folder byte-identical to a
    one-process export with the same seed."""
    one = tmp_path / "one"
    run(pipeline_dir, tiny_render, one, "limit=6")
    two = tmp_path / "two"
    settings = [f"pipeline={pipeline_dir}", f"dataset_root={tiny_render}", f"out={two}", "steps=2", "guidance_scale=1",
                "cameras=[1,4]", "progress=false", "limit=6"]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
               "-m", "or_synth.generate", *settings]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (
        "6 scans x 2 cameras" in done.stdout and done.stdout.count("generate:") == 1
    )  # the main process reports
    assert files(two) == files(one)


def official_4dor_images(root: Path, scan_id: str) -> tuple[list[Path], list[Image.Image]]:
    """The six colour images of ``TAKE_SCAN`` found the way the official 4D-OR scene-graph code finds them
    (egeozsoy/4D-OR, ``scene_graph_prediction/scene_graph_helpers/dataset/data_preparation_utils.py``,
    ``load_full_image_data``; ../shared/docs/4dor_format.md §1.1): the scan number is a POSITION in the take's
    ``timestamp_to_pcd_and_frames_list.json``, whose ``color_{c}`` frame id names
    ``colorimage/camera0{c}_colorimage-{id}.jpg`` for cameras 1..6. Written from that description, not copied."""
    take, scan = scan_id.split("_")
    take_root = root / f"export_holistic_take{take}_processed"
    frames = json.loads((take_root / "timestamp_to_pcd_and_frames_list.json").read_text())
    channels = frames[int(scan)][1]
    paths = [
        take_root / "colorimage" / f"camera0{c}_colorimage-{channels[f'color_{c}']}.jpg" for c in range(1, 7)
    ]
    return paths, [Image.open(path).convert("RGB") for path in paths]


def test_the_official_4dor_image_loader_reads_an_export(pipeline_dir, tiny_render, tmp_path):
    out = tmp_path / "export"
    run(pipeline_dir, tiny_render, out, "limit=3", "cameras=[1,2,3,4,5,6]")
    scans = json.loads((out / "relationships_train.json").read_text())["scans"]
    assert len(scans) == 3
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    for entry in scans:
        scan_id = f"{entry['take_idx']}_{entry['scan']}"
        paths, images = official_4dor_images(out, scan_id)
        assert [image.size for image in images] == [(16, 16)] * 6
        drawn = {
            out / m["image"] for m in manifest if (m["take"], m["scan"]) == (entry["take_idx"], entry["scan"])
        }
        assert set(paths) == drawn  # it opens exactly the six images the manifest lists for this scan
