"""Coherent layouts over a take (:mod:`or_synth.render.motion`) on real 4D-OR validation graphs: furniture stays,
people whose relations hold stay, people walk at a bounded speed and arrive, bad sequences are refused, and the
renderer's ``placement=take`` draws consecutive scans that differ less than per-scan placement."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from or_synth.data import DatasetFormatError, load_scene_graphs
from or_synth.data.vocabulary import Vocabulary
from or_synth.render.config import load_config
from or_synth.render.motion import (
    MAX_STEP,
    check_take_order,
    identities,
    relation_signature,
    take_layouts,
    take_rng,
)
from or_synth.render.pipeline import content_config, fingerprint, render
from tests.helpers import REAL_VALIDATION, SHARED_4DOR

pytestmark = pytest.mark.skipif(not REAL_VALIDATION.is_file(), reason="needs ../shared/datasets/4d-or")


@pytest.fixture(scope="module")
def take4():
    records = load_scene_graphs(REAL_VALIDATION, Vocabulary.load(SHARED_4DOR)).records
    return [r for r in records if r.take == 4]


def positions(record, layout, kind):
    names = identities(record)
    return {names[n]: p for n, p in layout.placements.items() if p.kind == kind}


def test_furniture_stays_and_people_walk_at_bounded_speed(take4):
    scans = take4[200:260]
    placed = take_layouts(scans, take_rng(0, 4), tries=6)
    moved_people = 0
    for (before, a), (after, b) in zip(placed, placed[1:], strict=False):
        furniture_a, furniture_b = positions(before, a, "furniture"), positions(after, b, "furniture")
        for name in furniture_a.keys() & furniture_b.keys():
            assert (furniture_a[name].x, furniture_a[name].y) == (furniture_b[name].x, furniture_b[name].y), (
                name
            )
        assert np.array_equal(a.table, b.table)
        people_a, people_b = positions(before, a, "person"), positions(after, b, "person")
        names_a, names_b = identities(before), identities(after)
        for name in people_a.keys() & people_b.keys():
            p, q = people_a[name], people_b[name]
            step = math.hypot(q.x - p.x, q.y - p.y)
            assert step <= MAX_STEP + 1e-9, (after.scan, name, step)
            same = relation_signature(before, names_a, names_a.index(name)) == relation_signature(
                after, names_b, names_b.index(name)
            )
            if same and step == 0:
                continue
            if not same:
                moved_people += 1
    assert moved_people > 0  # the stretch has relation changes (Assisting, Preparing starts)


def test_a_walker_arrives_and_takes_up_the_pose(take4):
    """Scans 209-215: head surgeon and assistant are Preparing the Patient: by the end both are at the knee with
    their action pose (the hands drawn), however far they had to walk."""
    placed = take_layouts(take4[200:216], take_rng(0, 4), tries=6)
    record, layout = placed[-1]
    people = positions(record, layout, "person")
    for role in ("head-surgeon", "assistant-surgeon"):
        person = people[f"person:{role}"]
        assert person.action == "Preparing" and person.right is not None and person.slot is not None


def test_placement_is_deterministic_and_independent_of_what_follows(take4):
    short = take_layouts(take4[200:220], take_rng(0, 4), tries=6)
    long = take_layouts(take4[200:240], take_rng(0, 4), tries=6)
    for (_, a), (_, b) in zip(short, long, strict=False):
        assert {n: (p.x, p.y, p.yaw) for n, p in a.placements.items()} == {
            n: (p.x, p.y, p.yaw) for n, p in b.placements.items()
        }


@pytest.mark.parametrize(
    "order, message",
    [
        (lambda t: [t[5], t[4]], "out of order"),
        (lambda t: [t[4], t[6]], "gap in the scan ids"),
    ],
)
def test_bad_sequences_are_refused(take4, order, message):
    with pytest.raises(DatasetFormatError, match=message):
        take_layouts(order(take4), take_rng(0, 4))


def test_several_takes_are_refused():
    records = load_scene_graphs(REAL_VALIDATION, Vocabulary.load(SHARED_4DOR)).records
    four, eight = [r for r in records if r.take == 4][-1], [r for r in records if r.take == 8][0]
    with pytest.raises(DatasetFormatError, match="one take"):
        check_take_order([four, eight])


def mask_change(root, camera=1) -> float:
    files = sorted(
        (root / "export_holistic_take1_processed" / "instance_masks").glob(f"camera0{camera}_*.png")
    )
    masks = [np.asarray(Image.open(f)) for f in files]
    return float(np.mean([(a != b).mean() for a, b in zip(masks, masks[1:], strict=False)]))


def test_render_placement_take_is_coherent_and_leaves_per_scan_renders_alone(tmp_path):
    common = ["takes=1", "scans_per_take=10", "image_size=[32,32]", "progress=false"]
    per_scan = load_config([f"root={tmp_path / 'scan'}", *common])
    assert "placement" not in content_config(per_scan)  # existing renders keep their fingerprint
    per_take = load_config([f"root={tmp_path / 'take'}", *common, "placement=take"])
    assert fingerprint(per_take) != fingerprint(per_scan)
    render(per_scan)
    render(per_take)
    # the scene process draws every scan's graph on its own, so graphs change a lot; placement still halves the change
    assert mask_change(tmp_path / "take") < 0.75 * mask_change(tmp_path / "scan")
    scans = json.loads((tmp_path / "take" / "relationships_train.json").read_text())["scans"]
    assert len(scans) == 10
    with pytest.raises(ValueError, match="placement must be one of"):
        render(load_config([f"root={tmp_path / 'bad'}", *common, "placement=walk"]))
