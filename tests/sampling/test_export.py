"""The training-set export (``python -m or_synth.export``, old name ``or_synth.generate``): a synthetic training
set in 4D-OR's layout that the data layer reads unchanged, rebalanced towards rare actions, resumable to the same
bytes, refusing evaluation graphs and foreign folders, and a manifest in the one line shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from or_synth.data import FourDORDataset
from or_synth.data.manifest import MANIFEST
from or_synth.data.summary import summarize
from or_synth.data.vocabulary import main_action
from or_synth.sampling import ExportRefused, copies_per_graph
from tests.helpers import all_files, manifest_lines, official_4dor_images, run_export

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_export_is_a_4dor_dataset_rebalanced_and_resumable(pipeline_dir, tiny_render, tmp_path):
    out = tmp_path / "export"
    result = run_export(pipeline_dir, tiny_render, out, "rebalance=uniform")
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
    manifest = manifest_lines(out)
    assert len(manifest) == 32 and {m["camera"] for m in manifest} == {1, 4}
    assert all((out / m["image"]).is_file() and m["source_scan"]["take"] in (1, 3) for m in manifest)
    # The one line shape: the graph in the export's own relationships file, the layout as the manifest says it.
    assert {(m["graphs"], m["layout"], m["sampler"], m["steps"]) for m in manifest} == {
        ("relationships_train.json", "rendered", "dpmsolver++", 2)
    }
    record = json.loads((out / "or_synth_export.json").read_text())
    assert record["settings"]["layout"] == "render"  # layout=auto records the source it became
    phases = json.loads((out / "phases" / "phase_to_frames_1.json").read_text())
    assert sorted(start for start, _ in phases.values())[0] == 0  # contiguous phase ranges from scan 0

    written = all_files(out)
    again = run_export(pipeline_dir, tiny_render, out, "rebalance=uniform")
    assert again["generated"] == 0 and all_files(out) == written  # a complete export: nothing rewritten
    annotation = next((out / "export_holistic_take3_processed" / "or_synth_annotations").glob("*.json"))
    image = next((out / "export_holistic_take3_processed" / "colorimage").glob(f"*{json.loads(annotation.read_text())['cameras']['1']['frame_id']}.jpg"))  # fmt: skip
    annotation.unlink()
    image.unlink()  # as if the run died in this scan
    resumed = run_export(pipeline_dir, tiny_render, out, "rebalance=uniform")
    assert resumed["generated"] == 1 and all_files(out) == written  # the same bytes

    # The evaluation suite finds the boxes of the masks each exported image was drawn from (pair-level scores).
    from or_synth.evaluation import RelationClassifier, load_generated
    from or_synth.evaluation.pairs import generated_pairs

    exported = load_generated(out / MANIFEST)
    pairs, why = generated_pairs(tiny_render, exported, RelationClassifier([], 16, ["Patient"]))
    assert why is None and len(pairs) > 0 and "annotations" in pairs.source
    assert set(pairs.image_index.tolist()) <= set(range(len(exported)))


def older_shape(line: dict) -> dict:
    """A line as or_synth.generate wrote it before the one manifest shape."""
    source = {**line["source_scan"]}
    layout = {"rendered": "render", "given": "masks", "absent": "none"}[line["layout"]]
    kept = ("image", "take", "scan", "camera", "seed", "pipeline_hash")
    return {**{k: line[k] for k in kept}, "source": source, "layout": layout}


def test_an_export_manifest_of_the_older_shape_still_scores(pipeline_dir, tiny_render, tmp_path):
    from or_synth.evaluation import load_generated

    out = tmp_path / "export"
    run_export(pipeline_dir, tiny_render, out, "limit=2", "cameras=[1]")
    current = load_generated(out / MANIFEST)
    lines = manifest_lines(out)
    (out / MANIFEST).write_text("".join(json.dumps(older_shape(x)) + "\n" for x in lines))
    older = load_generated(out / MANIFEST)
    assert older.ids == current.ids and [r.key for r in older.records] == [r.key for r in current.records]
    assert older.settings["layout"] == current.settings["layout"] == "rendered"


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
        run_export(pipeline_dir, tiny_render, tmp_path / "a", "graphs=validation")
    with pytest.raises(ExportRefused, match="source dataset's root"):
        run_export(pipeline_dir, tiny_render, tiny_render)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ExportRefused, match="did not write"):
        run_export(pipeline_dir, tiny_render, tmp_path / "foreign")
    run_export(pipeline_dir, tiny_render, tmp_path / "b", "limit=2")
    with pytest.raises(ExportRefused, match="other settings"):
        run_export(pipeline_dir, tiny_render, tmp_path / "b", "limit=3")
    replaced = run_export(pipeline_dir, tiny_render, tmp_path / "b", "limit=3", "overwrite=true")
    assert replaced["scans"] == 3


def test_layout_auto_and_a_layout_the_pipeline_cannot_take(plain_pipeline_dir, tiny_render, tmp_path):
    with pytest.raises(ValueError, match="layout=render, but this pipeline's denoiser has no layout input"):
        run_export(plain_pipeline_dir, tiny_render, tmp_path / "refused", "layout=render")
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "plain"
    run_export(plain_pipeline_dir, tiny_render, out, "limit=1")  # auto: the graph alone
    assert {m["layout"] for m in manifest_lines(out)} == {"absent"}
    assert not list(out.glob("*/instance_masks/*.png"))
    assert json.loads((out / "or_synth_export.json").read_text())["settings"]["layout"] == "none"


def test_two_processes_shard_the_scans_and_write_the_same_bytes_as_one(pipeline_dir, tiny_render, tmp_path):
    """torch.distributed.run with 2 CPU processes (gloo): every scan drawn once, the folder byte-identical to a
    one-process export with the same seed."""
    one = tmp_path / "one"
    run_export(pipeline_dir, tiny_render, one, "limit=6")
    two = tmp_path / "two"
    settings = [f"pipeline={pipeline_dir}", f"dataset_root={tiny_render}", f"out={two}", "steps=2", "guidance_scale=1",
                "cameras=[1,4]", "progress=false", "limit=6"]  # fmt: skip
    # The old command name, sharded: the same export.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
               "-m", "or_synth.generate", *settings]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (
        "6 scans x 2 cameras" in done.stdout and done.stdout.count("export:") == 1
    )  # the main process reports
    assert all_files(two) == all_files(one)


def test_the_official_4dor_image_loader_reads_an_export(pipeline_dir, tiny_render, tmp_path):
    out = tmp_path / "export"
    run_export(pipeline_dir, tiny_render, out, "limit=3", "cameras=[1,2,3,4,5,6]")
    scans = json.loads((out / "relationships_train.json").read_text())["scans"]
    assert len(scans) == 3
    manifest = manifest_lines(out)
    for entry in scans:
        scan_id = f"{entry['take_idx']}_{entry['scan']}"
        paths, images = official_4dor_images(out, scan_id)
        assert [image.size for image in images] == [(16, 16)] * 6
        drawn = {
            out / m["image"] for m in manifest if (m["take"], m["scan"]) == (entry["take_idx"], entry["scan"])
        }
        assert set(paths) == drawn  # it opens exactly the six images the manifest lists for this scan
