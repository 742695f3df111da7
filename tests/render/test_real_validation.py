"""Rendering the graphs of the real 4D-OR validation file, as they are."""

from __future__ import annotations

import json

import pytest

from or_synth.data import FourDORDataset, load_scene_graphs
from or_synth.render import load_config, render


@pytest.mark.real_data
def test_render_real_validation_graphs(real_validation_file, tmp_path):
    scans = json.loads(real_validation_file.read_text())["scans"]
    # A few scans with actions, from both takes (the frame list must still cover the skipped indices).
    picked = [
        s for s in scans if any(r[3] in ("Sawing", "Suturing", "Operating") for r in s["relationships"])
    ][::15]
    picked += [s for s in scans if s["take_idx"] == 8][:3]
    picked.sort(key=lambda s: (s["take_idx"], s["scan"]))
    source = tmp_path / "relationships_validation.json"
    source.write_text(json.dumps({"scans": picked}))
    root = tmp_path / "out"
    render(load_config(["image_size=[32,32]", "progress=false", f"root={root}", f"from_json={source}"]))
    given = load_scene_graphs(source).records
    rendered = load_scene_graphs(root / "relationships_validation.json").records
    assert rendered == given
    dataset = FourDORDataset(root, "validation", load_images=True, processed_root=tmp_path / "p")
    assert len(dataset) == len(picked)
    assert dataset[len(picked) - 1].images.shape[1] == 6
