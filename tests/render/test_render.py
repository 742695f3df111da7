"""Rendering: determinism, the 4D-OR loader round trip, masks/boxes vs pixels, resume and refusal."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from or_synth.data import FourDORDataset, FrameIndex, PhaseTable, load_scene_graphs
from or_synth.data.annotations import read_instance_mask, read_scan_annotation
from or_synth.data.vocabulary import PHASES, PREDICATES, ROLES
from or_synth.render import RenderRefused, load_config
from or_synth.render.painter import Style, build_mesh, render_view, shade
from or_synth.render.pipeline import MANIFEST, ScanJob, plan_jobs, render_scan, scan_record
from or_synth.render.room import make_cameras
from or_synth.render.writer import node_boxes, write_take_files
from tests.helpers import all_files, render_small


def test_same_seed_same_bytes_for_any_worker_count(small_render, tmp_path):
    again = tmp_path / "again"
    render_small(again, "workers=2")
    assert all_files(again) == all_files(small_render)
    other = tmp_path / "other"
    render_small(other, "seed=1")
    assert all_files(other) != all_files(small_render)


def test_four_dor_dataset_reads_the_render_unchanged(small_render, tmp_path):
    expected = {"train": (1,), "validation": (4,), "test": (2,)}
    for split, takes in expected.items():
        dataset = FourDORDataset(
            small_render, split, load_images=True, image_size=32, processed_root=tmp_path / split
        )
        assert len(dataset) == 8 * len(takes)
        assert {take for take, _ in dataset.keys} == set(takes)
        graphs = load_scene_graphs(small_render / f"relationships_{split}.json")
        phases = PhaseTable.load(small_render)
        for index, record in enumerate(graphs.records):
            data = dataset[index]
            assert data.images.shape == (1, 6, 3, 32, 32)
            assert data.edge_index.shape[1] == len(record.triples)
            annotation = read_scan_annotation(small_render, record.take, record.scan)
            assert annotation.scene_graph == record.to_json()
            assert PHASES[phases.phase_id(record.take, record.scan)] == annotation.phase
            assert int(data.phase) >= 0
    frames = FrameIndex(small_render, 1)
    assert len(frames) == 8
    assert all(frames.frame_id(f"{i:06d}", c) != f"{i:06d}" for i in range(8) for c in range(1, 7))
    calibration = json.loads((small_render / "export_holistic_take1_processed" / "camera01.json").read_text())
    assert calibration["value0"]["color_parameters"]["width"] == 64


def test_boxes_and_masks_agree_with_the_drawn_pixels(small_render):
    # On disk: the box of every node is the bounding box of its mask pixels.
    for scan in ("000003", "000005"):
        annotation = read_scan_annotation(small_render, 1, scan)
        for camera, view in annotation.views.items():
            mask = read_instance_mask(small_render, 1, camera, view.frame_id)
            assert mask.shape == (48, 64)
            boxes, pixels = node_boxes(mask, len(annotation.scene_graph["objects"]))
            assert {int(k) - 1: tuple(v) for k, v in boxes.items()} == view.boxes
            assert {int(k) - 1: v for k, v in pixels.items()} == view.pixels
    # In the painter: recolouring one node changes exactly the pixels its mask claims.
    job = ScanJob(str(small_render), 1, 20, "knee_prep", None, 3, 1.0, (96, 128), (90, 90), 0.08, 1)
    record, layout, rng = scan_record(job)
    style = Style.sample(rng)
    scene = shade(build_mesh(layout, rng), style, layout.knee())
    camera = make_cameras(128, 96)[2]
    rgb, labels = render_view(scene, camera, style, rng, noise=False)
    seen = 0
    for node in range(record.num_nodes):
        colours, ball_colours = scene.colours.copy(), scene.ball_colours.copy()
        colours[scene.labels == node + 1] = (255.0, 0.0, 255.0)
        ball_colours[scene.ball_labels == node + 1] = (255.0, 0.0, 255.0)
        marked = dataclasses.replace(scene, colours=colours, ball_colours=ball_colours)
        recoloured, labels_again = render_view(marked, camera, style, rng, noise=False)
        changed = (recoloured != rgb).any(-1)
        assert np.array_equal(labels_again, labels)
        assert np.array_equal(changed, labels == node + 1), record.object_names[node]
        seen += changed.any()
    assert seen >= 4


def test_every_predicate_and_role_is_drawn_in_the_default_set(tmp_path):
    """For each predicate and role, the first default-set scan that has it: its nodes are visible."""
    cfg = load_config(["progress=false", f"root={tmp_path}"])
    jobs, _, scans_by_take, _ = plan_jobs(cfg, tmp_path, tuple(cfg.image_size))
    wanted = set(PREDICATES) | (set(ROLES) - {"not-a-person"})
    for job in jobs:
        if not wanted:
            break
        record = scan_record(job)[0]
        hits = [(p, (s, o)) for s, o, p in record.triples if p in wanted]
        hits += [(role, (i,)) for i, role in enumerate(record.roles) if role in wanted]
        if not hits:
            continue
        if not (tmp_path / f"export_holistic_take{job.take}_processed").is_dir():
            rng = np.random.default_rng([int(cfg.seed), job.take, 1_000_003])
            write_take_files(
                tmp_path, job.take, scans_by_take[job.take], make_cameras(128, 128, rng, 0.08), None
            )
        render_scan(job)
        views = read_scan_annotation(tmp_path, job.take, record.scan).views.values()
        for name, nodes in hits:
            assert all(any(view.pixels.get(n, 0) > 0 for view in views) for n in nodes), (name, record.scan)
            wanted.discard(name)
    assert not wanted


def test_resume_completes_an_interrupted_render(small_render, tmp_path):
    root = tmp_path / "resumed"
    render_small(root)
    take = root / "export_holistic_take4_processed"
    # Simulate a crash: some scans lost their annotation (written last), one image is gone, the split files
    # were never written and the manifest says incomplete.
    for scan in ("000002", "000006"):
        (take / "or_synth_annotations" / f"{scan}.json").unlink()
    next((take / "colorimage").iterdir()).unlink()
    for split in ("train", "validation", "test"):
        (root / f"relationships_{split}.json").unlink()
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["complete"] = False
    (root / MANIFEST).write_text(json.dumps(manifest))
    untouched = take / "or_synth_annotations" / "000001.json"
    before = untouched.stat().st_mtime_ns
    render_small(root)
    assert untouched.stat().st_mtime_ns == before  # finished scans are skipped, not redone
    files = all_files(root)
    # The deleted image belonged to a finished scan, so it stays missing: resume trusts finished scans.
    assert {k: v for k, v in all_files(small_render).items() if k in files} == files
    assert json.loads((root / MANIFEST).read_text())["complete"] is True


def test_rerunning_a_complete_render_touches_nothing(tmp_path):
    """The demo re-runs the renderer every time: that must not bump mtimes and so invalidate the
    dataset's processed cache (keyed by the relationships file's mtime)."""
    root = tmp_path / "complete"
    render_small(root)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    render_small(root)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps


def test_refuses_to_mix_renders_unless_told_to_overwrite(small_render, tmp_path):
    root = tmp_path / "r"
    render_small(root)
    with pytest.raises(RenderRefused, match="overwrite=true"):
        render_small(root, "seed=5")
    render_small(root, "seed=5", "overwrite=true")
    assert json.loads((root / MANIFEST).read_text())["config"]["seed"] == 5
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RenderRefused):
        render_small(foreign)
    with pytest.raises(RenderRefused):
        render_small(foreign, "overwrite=true")
    assert (foreign / "notes.txt").read_text() == "mine"


def test_command_line_entry_point(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "cli"
    args = ["takes=1", "scans_per_take=8", "image_size=[32,32]", "progress=false", f"root={root}"]
    # Run from an empty folder (this checkout first on the path) to see that Hydra leaves nothing behind.
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(repo)}
    work = tmp_path / "cwd"
    work.mkdir()

    def run(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "or_synth.render", *args, *extra]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=work)

    done = run()
    assert done.returncode == 0, done.stderr
    assert (root / "relationships_train.json").is_file()
    assert list(work.iterdir()) == [] and not (root / ".hydra").exists()
    refused = run("seed=3")
    assert refused.returncode == 2 and "overwrite=true" in refused.stderr
