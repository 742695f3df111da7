"""``layout=predicted``: sampling, export and edits with a trained layout predictor's label maps.

A tiny random pipeline and a tiny predictor on the same (tiny CLIP) vocabulary; the predictor's visibility and
mask biases are raised so that it draws every node, which makes its label maps non-trivial.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from or_synth.data import load_scene_graphs, record_to_data
from or_synth.generator import pipeline_hash
from or_synth.generator.layout_predictor import LayoutPredictor
from or_synth.sampling import encoder_vocabulary, load_pipeline, predict_layouts
from tests.helpers import (
    manifest_lines,
    run_edit,
    run_export,
    run_sample,
    sample_images,
    small_scene,
    tiny_predictor,
    write_layout_dataset,
)

SCANS = [small_scene(4, "000001"), small_scene(8, "000005")]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def renamed_predicate_predictor() -> LayoutPredictor:
    """The same weights, but the last predicate is called something the pipeline does not know."""
    predictor = tiny_predictor()
    config = dict(predictor.config.encoder_config)
    config["predicates"] = [*config["predicates"][:-1], "Juggling"]
    other = LayoutPredictor(config, mask_size=8, hidden=16, mask_channels=8)
    other.load_state_dict(predictor.state_dict())
    return other


def max_level_difference(a: Path, b: Path) -> int:
    """The largest per-pixel difference (0..255) between the same-named images of two sample folders."""
    names = sorted(sample_images(a))
    assert names == sorted(sample_images(b))
    return max(
        int(
            np.abs(
                np.asarray(Image.open(a / "images" / n), int) - np.asarray(Image.open(b / "images" / n), int)
            ).max()
        )
        for n in names
    )


@pytest.fixture(scope="module")
def graphs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("graphs") / "relationships_validation.json"
    path.write_text(json.dumps({"scans": SCANS}))
    return path


def test_sampling_with_predicted_layouts(pipeline_dir, predictor_dir, graphs_file, tmp_path):
    out = tmp_path / "out"
    predicted = ("cameras=[1,4]", "layout=predicted", f"layout_predictor={predictor_dir}")
    result = run_sample(pipeline_dir, graphs_file, out, *predicted, "save_layouts=true", "batch_size=3")
    assert result["generated"] == 4
    lines = manifest_lines(out)
    assert {line["layout"] for line in lines} == {"predicted"}
    assert {line["layout_predictor_hash"] for line in lines} == {pipeline_hash(predictor_dir)}
    # The saved label maps are the predictor's, at the pipeline's image size, in the pipeline's layout format.
    pipe = load_pipeline(pipeline_dir, progress=False)
    predictor = LayoutPredictor.from_pretrained(predictor_dir)
    records = load_scene_graphs(graphs_file).records
    for line in lines:
        record = next(r for r in records if r.key == (line["take"], line["scan"]))
        graph = record_to_data(record, encoder_vocabulary(pipe))
        saved = np.asarray(Image.open(out / line["layout_image"]))
        expected = predict_layouts(predictor, graph, [line["camera"]], (16, 16))[0].numpy()
        assert saved.dtype == np.uint8 and np.array_equal(saved, expected)
        assert 0 < int(saved.max()) <= record.num_nodes  # nodes drawn, labelled node index + 1
    # Batch-independent, and the layout changes the images.
    again = run_sample(pipeline_dir, graphs_file, tmp_path / "again", *predicted, "batch_size=1")
    plain = run_sample(pipeline_dir, graphs_file, tmp_path / "plain", "cameras=[1,4]", "layout=none")
    # Another batch shape may round one float differently on some CPUs: at most one grey level, never more.
    assert max_level_difference(Path(again["out"]), out) <= 1
    assert sample_images(Path(plain["out"])) != sample_images(out)


def test_predicted_layout_refusals(pipeline_dir, plain_pipeline_dir, predictor_dir, graphs_file, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"layout=predicted needs layout_predictor=DIR"):
        run_sample(pipeline_dir, graphs_file, out, "layout=predicted")
    with pytest.raises(FileNotFoundError, match=r"layout_predictor=.*nowhere does not exist"):
        run_sample(
            pipeline_dir, graphs_file, out, "layout=predicted", f"layout_predictor={tmp_path / 'nowhere'}"
        )
    with pytest.raises(ValueError, match=r"layout_predictor is set but layout=auto"):
        run_sample(pipeline_dir, graphs_file, out, f"layout_predictor={predictor_dir}")
    with pytest.raises(ValueError, match="layout=predicted, but this pipeline's denoiser has no layout"):
        run_sample(
            plain_pipeline_dir, graphs_file, out, "layout=predicted", f"layout_predictor={predictor_dir}"
        )
    other = tmp_path / "other_vocabulary"
    renamed_predicate_predictor().save_pretrained(other)
    with pytest.raises(ValueError, match=r"different vocabulary than the pipeline .*predicates.*Juggling"):
        run_sample(pipeline_dir, graphs_file, out, "layout=predicted", f"layout_predictor={other}")
    assert not out.exists()


def test_export_and_edit_take_predicted_layouts(pipeline_dir, predictor_dir, graphs_file, tmp_path):
    source = write_layout_dataset(
        tmp_path / "source",
        {"train": [small_scene(1, "000000"), small_scene(3, "000000")]},
        image_hw=(16, 16),
    )
    out = tmp_path / "export"
    predicted = ("layout=predicted", f"layout_predictor={predictor_dir}")
    assert run_export(pipeline_dir, source, out, *predicted)["images"] == 4
    lines = manifest_lines(out)
    assert {line["layout"] for line in lines} == {"predicted"}
    assert {line["layout_predictor_hash"] for line in lines} == {pipeline_hash(predictor_dir)}
    settings = json.loads((out / "or_synth_export.json").read_text())["settings"]
    assert settings["layout_predictor_hash"] == pipeline_hash(predictor_dir)
    masks = sorted((out / "export_holistic_take1_processed" / "instance_masks").glob("*.png"))
    assert len(masks) == 2 and all(np.asarray(Image.open(m)).max() > 0 for m in masks)

    edited = ("scan=4/000001", "cameras=[1]", "edit=predicate head-surgeon Patient Sawing")
    result = run_edit(pipeline_dir, graphs_file, tmp_path / "edits", *edited, *predicted)
    assert result["layout"] == "predicted" and result["cameras"]["1"]["regenerated"] == "edited region"
    assert (Path(result["folder"]) / "mask_cam1.png").is_file()
