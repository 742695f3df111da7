"""``layout_masks``: instance masks of any graph from the renderer's one 3D scene, seen by the six cameras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from or_synth.data import DatasetFormatError, load_scene_graphs
from or_synth.data.annotations import CLUTTER_LABEL, read_instance_mask
from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import CAMERAS, Vocabulary
from or_synth.render import layout_masks, load_config, render
from or_synth.render.writer import frame_id
from tests.helpers import scan_entry, small_scene

# small_scene's nodes: 1 Patient, 2 head surgeon (drilling), 3 assistant (holding), 4 instrument,
# 5 instrument_table, 6 operating_table (label = node index + 1).
PATIENT, SURGEON, ASSISTANT, TABLE = 1, 2, 3, 6


def record_of(entry: dict):
    return parse_scan(entry, Vocabulary())


def test_deterministic_per_seed_and_label_values():
    record = record_of(small_scene(4, "000003"))
    maps = layout_masks(record, CAMERAS, (48, 64), seed=0)
    assert maps.shape == (6, 48, 64) and maps.dtype == np.uint8
    assert np.array_equal(maps, layout_masks(record, CAMERAS, (48, 64), seed=0))
    assert not np.array_equal(maps, layout_masks(record, CAMERAS, (48, 64), seed=1))
    assert set(np.unique(maps)) <= {0, *range(1, record.num_nodes + 1), CLUTTER_LABEL}
    # A camera's map does not depend on the other cameras asked for, nor on their order.
    assert np.array_equal(layout_masks(record, [5, 2], (48, 64), seed=0), maps[[4, 1]])


def test_one_scene_seen_by_all_cameras():
    """The same node ids show up across the views: the table and patient in (nearly) all, every person in some."""
    records = [record_of(small_scene(4, f"{i:06d}")) for i in range(6)]
    for record in records:
        maps = layout_masks(record, CAMERAS, (64, 64), seed=0)
        seen = [set(np.unique(m).tolist()) for m in maps]  # labels per view
        assert sum(TABLE in s for s in seen) >= 5, seen
        assert sum(PATIENT in s for s in seen) >= 5, seen
        assert all(any(node in s for s in seen) for node in (SURGEON, ASSISTANT, 5))
        # The drilling surgeon stands at the knee: next to the patient in every view that shows both.
        for m in maps:
            if SURGEON in m and PATIENT in m:
                surgeon = np.argwhere(m == SURGEON).mean(0)
                patient = np.argwhere(m == PATIENT)
                assert np.min(np.linalg.norm(patient - surgeon, axis=1)) < 0.5 * m.shape[0]


def test_equals_the_masks_the_renderer_writes(tmp_path):
    scans = [small_scene(4, "000001"), small_scene(8, "000002")]
    source = tmp_path / "graphs" / "relationships_validation.json"
    source.parent.mkdir()
    source.write_text(json.dumps({"scans": scans}))
    root = tmp_path / "rendered"
    render(
        load_config(["image_size=[32,40]", "seed=3", "progress=false", f"root={root}", f"from_json={source}"])
    )
    for entry in scans:
        record = record_of(entry)
        maps = layout_masks(record, CAMERAS, (32, 40), seed=3)
        for view, camera in zip(maps, CAMERAS, strict=True):
            written = read_instance_mask(
                root, record.take, camera, frame_id(record.take, int(record.scan), camera)
            )
            assert np.array_equal(view, written), (record.key, camera)


def test_undrawable_graphs_name_file_take_scan_and_field(tmp_path):
    table_held = scan_entry(
        8, "000042", ["human_0", "operating_table"], [(1, 2, "Holding")], {"human_0": "head-surgeon"}
    )
    with pytest.raises(
        DatasetFormatError, match=r"file g\.json, take 8, scan 000042, field relationships\[0\]"
    ):
        layout_masks(record_of(table_held), file="g.json")
    with pytest.raises(DatasetFormatError, match=r"take -1.*field take_idx"):
        layout_masks(record_of({**small_scene(4, "000001"), "take_idx": -1}))
    record = record_of(small_scene(4, "000001"))
    with pytest.raises(ValueError, match="cameras"):
        layout_masks(record, [0, 1])
    with pytest.raises(ValueError, match="seed must be >= 0"):
        layout_masks(record, seed=-1)


@pytest.mark.real_data
def test_real_validation_graphs(real_validation_file):
    """Real 4D-OR graphs (no images): every picked graph gets six agreeing label maps."""
    records = load_scene_graphs(real_validation_file).records
    picked = records[:: max(1, len(records) // 24)]
    table_views, missing, nodes = [], 0, 0
    for record in picked:
        maps = layout_masks(record, CAMERAS, (64, 64), seed=0, file=real_validation_file)
        assert maps.shape == (6, 64, 64)
        labels = set(np.unique(maps).tolist()) - {0, CLUTTER_LABEL}
        assert labels <= set(range(1, record.num_nodes + 1))
        if "operating_table" in record.object_names:  # some real scans list no table
            table = record.object_names.index("operating_table") + 1
            table_views.append(sum(bool((m == table).any()) for m in maps))
        # Every placed node (the virtual instrument has no body) is seen by at least one camera.
        drawn = [i + 1 for i, virtual in enumerate(record.virtual_nodes()) if not virtual]
        drawn = [k for k in drawn if record.object_names[k - 1] != "instrument"]
        nodes += len(drawn)
        missing += sum(k not in labels for k in drawn)
    assert len(table_views) >= len(picked) // 2
    assert min(table_views) >= 5 and np.mean(table_views) >= 5.5
    assert missing <= 0.01 * nodes
