"""The sample job's layouts (``layout=masks`` / ``render``): masks read from a rendered dataset, the renderer's
label maps for any graph (saved with ``save_layouts``), what each refuses before sampling, real 4D-OR graphs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from or_synth.data import DatasetFormatError, load_scene_graphs
from or_synth.render import layout_masks
from or_synth.render.pipeline import RENDERER_VERSION
from or_synth.sampling import SampleRefused, sample
from tests.helpers import (
    SAMPLE_SCANS,
    manifest_lines,
    run_sample,
    sample_images,
    sampling_config,
    scan_entry,
    small_scene,
    write_layout_dataset,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def images_of(result: dict) -> dict[str, bytes]:
    return sample_images(Path(result["out"]))


def test_layout_masks_from_a_rendered_dataset(pipeline_dir, tmp_path):
    root = write_layout_dataset(tmp_path / "ds", {"validation": SAMPLE_SCANS[:2]}, image_hw=(24, 32))
    for take, scan in ((4, 1), (4, 2)):
        folder = root / f"export_holistic_take{take}_processed" / "instance_masks"
        folder.mkdir(parents=True, exist_ok=True)
        mask = np.zeros((24, 32), dtype=np.uint8)
        mask[4:20, 6:26] = 1  # the patient
        mask[0:8, 0:10] = 6  # the operating table
        Image.fromarray(mask).save(folder / f"camera01_colorimage-{1000 + 7 * scan:06d}.png")
    base = [
        f"pipeline={pipeline_dir}",
        "graphs=validation",
        f"dataset_root={root}",
        "steps=2",
        "progress=false",
    ]
    out = tmp_path / "out"
    result = sample(
        sampling_config(
            "sample", *base, f"out={out}", "cameras=[1]", "layout=masks", "layout_guidance_scale=2.0"
        )
    )
    assert result["generated"] == 2 and {line["layout"] for line in manifest_lines(out)} == {"given"}
    plain = sample(
        sampling_config("sample", *base, f"out={tmp_path / 'plain'}", "cameras=[1]", "layout=none")
    )
    assert images_of(plain).keys() == sample_images(out).keys() and images_of(plain) != sample_images(out)
    with pytest.raises(DatasetFormatError, match=r"instance mask is missing.*layout=none"):
        sample(sampling_config("sample", *base, f"out={tmp_path / 'cam2'}", "cameras=[2]", "layout=masks"))
    assert not (tmp_path / "cam2").exists()


def test_layout_render_draws_masks_for_any_graph(pipeline_dir, three_graphs, tmp_path):
    out = tmp_path / "out"
    args = ("cameras=[1,4]", "layout=render", "layout_guidance_scale=2.0")
    result = run_sample(pipeline_dir, three_graphs, out, *args, "save_layouts=true", "batch_size=3")
    assert result["generated"] == 6
    lines = manifest_lines(out)
    assert {line["layout"] for line in lines} == {"rendered"}
    assert {line["layout_renderer"] for line in lines} == {RENDERER_VERSION}
    # One label map per (graph, camera), exactly the renderer's for the sample seed, named in the manifest.
    records = load_scene_graphs(three_graphs).records
    for line in lines:
        record = next(r for r in records if r.key == (line["take"], line["scan"]))
        saved = np.asarray(Image.open(out / line["layout_image"]))
        assert np.array_equal(saved, layout_masks(record, [line["camera"]], (16, 16), seed=0)[0])
    assert len(list((out / "layouts").glob("*.png"))) == 6
    # The same seed gives the same images whatever the batch; the layout changes them.
    again = run_sample(pipeline_dir, three_graphs, tmp_path / "again", *args, "batch_size=1")
    plain = run_sample(pipeline_dir, three_graphs, tmp_path / "plain", "cameras=[1,4]", "layout=none")
    assert images_of(again) == sample_images(out) and images_of(plain).keys() == sample_images(out).keys()
    assert images_of(plain) != sample_images(out)
    with pytest.raises(SampleRefused, match="layout"):  # a folder sampled with other layouts is not mixed in
        run_sample(pipeline_dir, three_graphs, tmp_path / "plain", "cameras=[1,4]", "layout=render")


def test_layout_render_refusals(pipeline_dir, plain_pipeline_dir, three_graphs, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="layout=render, but this pipeline's denoiser has no layout input"):
        run_sample(plain_pipeline_dir, three_graphs, out, "layout=render")
    held = scan_entry(
        8, "000042", ["human_0", "operating_table"], [(1, 2, "Holding")], {"human_0": "head-surgeon"}
    )
    graphs = tmp_path / "bad" / "relationships_validation.json"
    graphs.parent.mkdir()
    graphs.write_text(json.dumps({"scans": [small_scene(4, "000001"), held]}))
    for layout in ("layout=render", "layout=auto"):  # auto is render for this pipeline
        with pytest.raises(
            DatasetFormatError, match=r"take 8, scan 000042.*Holding 'operating_table'.*layout=none"
        ):
            run_sample(pipeline_dir, graphs, out, layout)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        run_sample(pipeline_dir, three_graphs, out, "layout=render", "seed=-1")
    with pytest.raises(ValueError, match="save_layouts=true needs a layout"):
        run_sample(pipeline_dir, three_graphs, out, "save_layouts=true", "layout=none")
    with pytest.raises(ValueError, match="save_layouts=true needs a layout"):  # auto is none without an input
        run_sample(plain_pipeline_dir, three_graphs, out, "save_layouts=true")
    assert not out.exists()
    # layout=none needs nothing drawable.
    assert run_sample(pipeline_dir, graphs, out, "cameras=[1]", "layout=none")["generated"] == 2


@pytest.mark.real_data
def test_layout_render_on_real_graphs(pipeline_dir, real_validation_file, tmp_path):
    """Real 4D-OR graphs have no images, hence no masks: layout=render draws them."""
    out = tmp_path / "real"
    result = run_sample(pipeline_dir, real_validation_file, out, "limit=2", "cameras=[2,5]", "layout=render")
    assert result["generated"] == 4 and len(sample_images(out)) == 4
    lines = manifest_lines(out)
    assert {line["layout"] for line in lines} == {"rendered"}
    assert {line["graphs"] for line in lines} == {str(real_validation_file)}
