"""The sample job (``python -m or_synth.sample``): manifest, layout=auto, determinism, samplers, resume (older
manifests too), refusals, real graphs, the CLI. The layout sources in a job: test_plan_layouts.py.

A tiny random pipeline (16 px images, 2-3 sampler steps) keeps the file fast on 2 CPU cores; the one without a
layout input samples where the layout does not matter (``layout=auto`` is ``none`` there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from or_synth.data import DatasetFormatError, UserError
from or_synth.data.manifest import MANIFEST, ManifestLine
from or_synth.data.vocabulary import OBJECT_CLASSES
from or_synth.render.pipeline import RENDERER_VERSION
from or_synth.sampling import SampleRefused, item_seed
from tests.helpers import (
    manifest_lines,
    mtimes,
    run_sample,
    sample_images,
    scan_entry,
    small_scene,
)

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def images_of(result: dict) -> dict[str, bytes]:
    return sample_images(Path(result["out"]))


def test_manifest_and_images(pipeline_dir, three_graphs, tmp_path):
    out = tmp_path / "out"
    result = run_sample(
        pipeline_dir, three_graphs, out, "cameras=[1,3]", "samples_per_graph=2", "limit=2", "batch_size=3"
    )
    assert result["generated"] == 2 * 2 * 2 == result["images"] and result["skipped"] == 0
    lines = manifest_lines(out)
    assert len(lines) == 8 and len({line["image"] for line in lines}) == 8
    first = lines[0]
    assert all(list(line) == [f.name for f in fields(ManifestLine)] for line in lines)  # one line shape
    assert first["image"] == "images/take4_scan000001_cam1_s0.png"
    assert first["graphs"] == str(three_graphs) and (first["take"], first["scan"]) == (4, "000001")
    assert first["seed"] == item_seed(0, 4, "000001", 1, 0)
    expected = {"sampler": "dpmsolver++", "steps": 2, "guidance_scale": 3.0, "layout_guidance_scale": 1.0}
    assert {k: first[k] for k in expected} == expected
    # layout=auto: a pipeline with a layout input gets the renderer's layouts, and the manifest says so.
    assert first["layout"] == "rendered" and first["layout_renderer"] == RENDERER_VERSION
    assert first["pipeline"] == str(pipeline_dir) and first["source_scan"] is None
    assert len(first["pipeline_hash"]) == 16 and (first["height"], first["width"]) == (16, 16)
    assert {(line["camera"], line["sample"]) for line in lines} == {(c, k) for c in (1, 3) for k in (0, 1)}
    assert len({line["seed"] for line in lines}) == 8  # every image has its own seed
    pngs = sorted((out / "images").glob("*.png"))
    assert len(pngs) == 8 and {Image.open(p).size for p in pngs} == {(16, 16)}
    assert sorted(p.name for p in out.iterdir()) == ["images", MANIFEST]  # no temporaries, no Hydra files


def test_same_seed_same_bytes_across_runs_and_batch_sizes(plain_pipeline_dir, three_graphs, tmp_path):
    pipeline_dir = plain_pipeline_dir
    a = images_of(run_sample(pipeline_dir, three_graphs, tmp_path / "a", "cameras=[2,5]", "batch_size=8"))
    b = images_of(run_sample(pipeline_dir, three_graphs, tmp_path / "b", "cameras=[2,5]", "batch_size=8"))
    c = images_of(run_sample(pipeline_dir, three_graphs, tmp_path / "c", "cameras=[2,5]", "batch_size=4"))
    # limit: the first graph's images do not depend on the graphs sampled with them.
    d = images_of(run_sample(pipeline_dir, three_graphs, tmp_path / "d", "cameras=[5]", "limit=1"))
    assert len(a) == 6 and a == b == c
    assert d and all(a[name] == data for name, data in d.items())
    assert len(set(a.values())) == 6  # different items, different images
    e = images_of(
        run_sample(pipeline_dir, three_graphs, tmp_path / "e", "cameras=[2,5]", "limit=1", "seed=1")
    )
    assert len(e) == 2 and all(a[k] != e[k] for k in e)
    # stride: every k-th graph (a spread over the file), the same images as when sampled with all of them.
    f = images_of(run_sample(pipeline_dir, three_graphs, tmp_path / "f", "cameras=[2,5]", "stride=2"))
    assert sorted(f) == sorted(k for k in a if "scan000001" in k or "scan000005" in k) and len(f) == 4
    assert all(a[name] == data for name, data in f.items())


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver++"])
def test_samplers(plain_pipeline_dir, three_graphs, tmp_path, sampler):
    out = tmp_path / sampler
    result = run_sample(
        plain_pipeline_dir, three_graphs, out, f"sampler={sampler}", "cameras=[1]", "limit=2", "steps=3"
    )
    assert result["generated"] == 2
    # layout=auto: a pipeline without a layout input samples from the graph alone.
    assert {(line["sampler"], line["layout"]) for line in manifest_lines(out)} == {(sampler, "absent")}
    arrays = [np.asarray(Image.open(p)) for p in sorted((out / "images").glob("*.png"))]
    assert all(a.shape == (16, 16, 3) and a.dtype == np.uint8 for a in arrays)


def test_resume_redraws_only_missing_items_and_a_complete_rerun_writes_nothing(
    plain_pipeline_dir, three_graphs, tmp_path
):
    pipeline_dir = plain_pipeline_dir
    out = tmp_path / "out"
    args = ("cameras=[1,2]", "batch_size=4")
    run_sample(pipeline_dir, three_graphs, out, *args)
    before = sample_images(out)
    lines = (out / MANIFEST).read_text().splitlines()
    assert len(lines) == 6
    # A crash: one image lost, and the last manifest line cut off half-way.
    lost = out / json.loads(lines[1])["image"]
    cut = json.loads(lines[-1])["image"]
    lost.unlink()
    (out / MANIFEST).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    untouched = {
        p: t for p, t in mtimes(out).items() if p.endswith(".png") and not p.endswith(Path(cut).name)
    }
    result = run_sample(pipeline_dir, three_graphs, out, *args)
    assert result["generated"] == 2 and result["skipped"] == 4 and result["images"] == 6
    assert sample_images(out) == before  # the redrawn images are the same bytes
    assert all(mtimes(out)[p] == t for p, t in untouched.items())
    redone = manifest_lines(out)
    assert len(redone) == 6 and {line["image"] for line in redone} == {json.loads(x)["image"] for x in lines}

    stamps = mtimes(out)
    again = run_sample(pipeline_dir, three_graphs, out, *args)
    assert again["generated"] == 0 and again["skipped"] == 6
    assert mtimes(out) == stamps
    # Asking for more (another camera) only adds that camera's images.
    more = run_sample(pipeline_dir, three_graphs, out, "cameras=[1,2,3]", "batch_size=4")
    assert more["generated"] == 3 and more["images"] == 9 and len(manifest_lines(out)) == 9


def older_shape(line: dict) -> dict:
    """A line as or_synth.sample wrote it before the one manifest shape: ``source`` and ``source_hash``, no
    fields of other layouts or of the export."""
    line = {
        ("source" if k == "graphs" else "source_hash" if k == "graphs_hash" else k): v
        for k, v in line.items()
    }
    return {k: v for k, v in line.items() if v is not None and k != "source_scan"}


def test_resumes_a_folder_whose_manifest_has_the_older_shape(plain_pipeline_dir, three_graphs, tmp_path):
    out = tmp_path / "out"
    run_sample(plain_pipeline_dir, three_graphs, out, "cameras=[1]")
    current = (out / MANIFEST).read_text()
    (out / MANIFEST).write_text("".join(json.dumps(older_shape(x)) + "\n" for x in manifest_lines(out)))
    assert "source_hash" in (out / MANIFEST).read_text()
    images = {p: t for p, t in mtimes(out).items() if p.endswith(".png")}
    again = run_sample(plain_pipeline_dir, three_graphs, out, "cameras=[1]")
    assert again["generated"] == 0 and again["skipped"] == 3
    assert (out / MANIFEST).read_text() == current  # rewritten in the current shape, the same lines
    assert {p: t for p, t in mtimes(out).items() if p.endswith(".png")} == images


def test_refuses_an_incomplete_pipeline_folder(pipeline_dir, three_graphs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pipeline_dir, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"incomplete.*unet/\*\.safetensors"):
        run_sample(broken, three_graphs, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no such folder, and not a shipped pipeline name"):
        run_sample(tmp_path / "nowhere", three_graphs, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("cameras=[1,7]", "camera 7 .*1..6"),
        ("cameras=[0]", "camera 0"),
        ("samples_per_graph=0", "samples_per_graph must be >= 1"),
        ("sampler=euler", "unknown sampler 'euler'"),
        ("layout=boxes", "layout must be one of"),
        ("guidance_scale=nan", "guidance_scale must be a finite number"),
        ("limit=0", "limit must be >= 1"),
    ],
)
def test_refuses_bad_options(pipeline_dir, three_graphs, tmp_path, extra, match):
    with pytest.raises(ValueError, match=match):
        run_sample(pipeline_dir, three_graphs, tmp_path / "out", extra)
    assert not (tmp_path / "out").exists()


def test_refuses_unknown_labels_naming_file_take_and_scan(pipeline_dir, tmp_path):
    bad = scan_entry(8, "000042", ["Patient", "spaceship"], [(2, 1, "CloseTo")])
    graphs = tmp_path / "bad" / "relationships_validation.json"
    graphs.parent.mkdir()
    graphs.write_text(json.dumps({"scans": [small_scene(4, "000001"), bad]}))
    with pytest.raises(DatasetFormatError, match=r"take 8, scan 000042.*'spaceship'"):
        run_sample(pipeline_dir, graphs, tmp_path / "out")
    # A dataset whose own vocabulary knows the class, but the pipeline's encoder does not.
    (graphs.parent / "classes.txt").write_text("\n".join([*OBJECT_CLASSES, "spaceship"]) + "\n")
    with pytest.raises(DatasetFormatError, match=r"take 8, scan 000042.*spaceship.*graph encoder"):
        run_sample(pipeline_dir, graphs, tmp_path / "out")
    with pytest.raises(DatasetFormatError, match="neither a file nor a split"):
        run_sample(pipeline_dir, tmp_path / "missing.json", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_other_settings_in_the_same_out_unless_overwrite(plain_pipeline_dir, three_graphs, tmp_path):
    pipeline_dir = plain_pipeline_dir
    out = tmp_path / "out"
    run_sample(pipeline_dir, three_graphs, out, "cameras=[1]", "limit=2")
    stamps = mtimes(out)
    assert issubclass(SampleRefused, UserError)  # on the command line: one line, exit 2
    for extra in ("steps=3", "sampler=ddim", "seed=5", "guidance_scale=2.0"):
        with pytest.raises(SampleRefused, match="overwrite=true"):
            run_sample(pipeline_dir, three_graphs, out, "cameras=[1]", "limit=2", extra)
    assert mtimes(out) == stamps
    result = run_sample(
        pipeline_dir, three_graphs, out, "cameras=[1]", "limit=1", "steps=3", "overwrite=true"
    )
    assert result["generated"] == 1 and result["images"] == 1
    assert [line["steps"] for line in manifest_lines(out)] == [3] and len(sample_images(out)) == 1


@pytest.mark.real_data
def test_real_validation_graphs(plain_pipeline_dir, real_validation_file, tmp_path):
    out = tmp_path / "real"
    result = run_sample(plain_pipeline_dir, real_validation_file, out, "limit=3", "cameras=[2]")
    assert result["generated"] == 3
    lines = manifest_lines(out)
    assert [line["graphs"] for line in lines] == [str(real_validation_file)] * 3
    assert all(line["take"] in (4, 8) for line in lines) and len(sample_images(out)) == 3


def test_command_line(plain_pipeline_dir, three_graphs, tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    args = [f"pipeline={plain_pipeline_dir}", f"graphs={three_graphs}", f"out={out}", "steps=2", "limit=1"]

    def cli(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "or_synth.sample", *args, *extra]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=work, timeout=300)

    done = cli("cameras=[1,2]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(manifest_lines(out)) == 2 and str(out) in done.stdout and "2 new image(s)" in done.stdout
    assert "sample: 100%" in done.stderr  # the tqdm bar over images
    assert list(work.iterdir()) == []  # Hydra wrote nothing in the working directory (no outputs/)
    assert sorted(p.name for p in out.iterdir()) == ["images", MANIFEST]
    refused = cli("cameras=[7]")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: camera 7 is not a 4D-OR camera; cameras must be in 1..6"
    ]


def test_a_shipped_pipeline_samples_by_name(plain_pipeline_dir, three_graphs, tmp_path, monkeypatch):
    """pipeline=<name> finds pretrained/<name> (hashes checked), and the manifest records that folder."""
    from or_synth.generator import shipped

    monkeypatch.setattr(shipped, "SHIPPED_ROOT", tmp_path / "pretrained")
    folder = shipped.ship(plain_pipeline_dir, "tiny", command="test", notes={}, root=tmp_path / "pretrained")
    result = run_sample("tiny", three_graphs, tmp_path / "out", "cameras=[1]", "limit=1")
    assert (
        result["generated"] == 1
        and manifest_lines(tmp_path / "out")[0]["pipeline_hash"] == result["pipeline_hash"]
    )
    (folder / "graph_encoder" / "config.json").write_text("{}")
    with pytest.raises(
        shipped.ShippedPipelineError, match=r"graph_encoder/config\.json does not match"
    ) as caught:
        run_sample("tiny", three_graphs, tmp_path / "out2", "cameras=[1]", "limit=1")
    assert isinstance(caught.value, UserError)  # one line and exit 2 on the command line
