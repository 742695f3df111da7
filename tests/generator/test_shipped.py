"""Shipped pipelines (pretrained/<name>): shipping records every file's hash and provenance; loading refuses a
missing or altered file with an error naming it."""

from __future__ import annotations

import json

import pytest

from or_synth.generator import ORScenePipeline, shipped
from or_synth.generator.shipped import ShippedPipelineError, resolve_pipeline, ship, verify_shipped
from tests.helpers import tiny_pipeline


@pytest.fixture
def shipped_root(tmp_path, monkeypatch):
    """A tiny pipeline shipped as ``tiny`` into a temporary pretrained/ root."""
    trained = tmp_path / "run" / "pipeline"
    tiny_pipeline(layout_channels=4).save_pretrained(trained)
    root = tmp_path / "pretrained"
    monkeypatch.setattr(shipped, "SHIPPED_ROOT", root)
    ship(
        trained, "tiny", command="python -m or_synth.train experiment=x", notes={"train_steps": 3}, root=root
    )
    return root


def test_ship_records_hashes_and_provenance_and_resolves_by_name(shipped_root):
    folder = shipped_root / "tiny"
    manifest = json.loads((folder / "shipped.json").read_text())
    assert manifest["command"] == "python -m or_synth.train experiment=x" and manifest["train_steps"] == 3
    assert (
        "unet/diffusion_pytorch_model.safetensors" in manifest["files"]
        and "model_index.json" in manifest["files"]
    )
    assert all(len(h) == 64 for h in manifest["files"].values())
    assert verify_shipped(folder)["name"] == "tiny"
    assert resolve_pipeline("tiny") == folder == resolve_pipeline(folder)
    assert ORScenePipeline.from_pretrained(resolve_pipeline("tiny")).has_layout_input
    assert not list(shipped_root.glob(".*.tmp"))  # staged, then renamed


def test_altered_or_missing_file_is_a_clear_error_naming_it(shipped_root):
    weights = shipped_root / "tiny" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ShippedPipelineError, match=r"diffusion_pytorch_model\.safetensors does not match"):
        resolve_pipeline("tiny")
    weights.unlink()
    with pytest.raises(ShippedPipelineError, match=r"diffusion_pytorch_model\.safetensors is missing"):
        resolve_pipeline(shipped_root / "tiny")


def test_unknown_pipeline_names_the_shipped_ones(shipped_root):
    with pytest.raises(FileNotFoundError, match=r"not a shipped pipeline name \(shipped: tiny\)"):
        resolve_pipeline("cpu_nothing")


def test_a_shipped_copy_has_the_hash_of_the_folder_it_was_shipped_from(tmp_path):
    """One pipeline, one hash: the shipped copy's own shipped.json is not part of the pipeline it describes."""
    from or_synth.generator.pipeline import pipeline_hash

    trained = tmp_path / "run/pipeline"
    tiny_pipeline(layout_channels=0).save_pretrained(trained)
    shipped = ship(trained, "tiny", command="test", notes={}, root=tmp_path / "pretrained")
    assert (shipped / "shipped.json").is_file()
    assert pipeline_hash(shipped) == pipeline_hash(trained)
    assert json.loads((shipped / "shipped.json").read_text())["pipeline_hash"] == pipeline_hash(shipped)
    (shipped / "unet/config.json").write_text("{}")  # any other file still counts
    assert pipeline_hash(shipped) != pipeline_hash(trained)
