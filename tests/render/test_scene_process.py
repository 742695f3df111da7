"""The scene process: 4D-OR's structure and conventions, phases, and the rare-action knob."""

from __future__ import annotations

from collections import Counter

import numpy as np

from or_synth.data.vocabulary import PHASES, PREDICATES, ROLES
from or_synth.render import load_config
from or_synth.render.layout import PATIENT_ACTIONS
from or_synth.render.pipeline import plan_jobs, scan_record
from or_synth.render.scene_process import SceneProcess, phase_ranges


def default_records(*overrides: str):
    cfg = load_config(["progress=false", *overrides])
    jobs, _, _, _ = plan_jobs(cfg, cfg.root, tuple(cfg.image_size))
    return [scan_record(job)[0] for job in jobs]


def test_default_set_covers_every_predicate_and_role():
    records = default_records()
    predicates = Counter(p for r in records for _, _, p in r.triples)
    roles = Counter(role for r in records for role in r.roles)
    assert set(PREDICATES) <= set(predicates), set(PREDICATES) - set(predicates)
    assert set(ROLES) - {"not-a-person"} <= set(roles), set(ROLES) - set(roles)


def test_graphs_follow_4dor_conventions():
    for record in default_records("takes=2", "scans_per_take=30"):
        names = list(record.object_names)
        assert names == sorted(names) and "instrument" in names  # keys in sorted name order, as in 4D-OR
        assert len(set(names)) == len(names)
        pairs = {(s, o): p for s, o, p in record.triples}
        assert len(pairs) == len(record.triples)
        for (s, o), p in pairs.items():
            assert s != o
            assert (o, s) in pairs, "every triple has a reverse"
            if p != "CloseTo":
                assert pairs[(o, s)] == "CloseTo"
            if p in PATIENT_ACTIONS:
                assert names[o] == "Patient" and names[s].startswith("human_")
        if "Patient" in names:
            assert (names.index("Patient"), names.index("operating_table"), "LyingOn") in record.triples
        # At most one surgical action type per scan (4D-OR never has two).
        assert len({p for _, _, p in record.triples if p in PATIENT_ACTIONS and p not in ("Cleaning",)}) <= 1


def test_phase_ranges_cover_the_take_in_order():
    for n in (8, 40, 700):
        ranges = phase_ranges(n, np.random.default_rng(n))
        assert list(ranges) == list(PHASES)
        flat = [i for start, end in ranges.values() for i in range(start, end + 1)]
        assert flat == list(range(n))


def test_rare_action_boost_makes_rare_actions_more_frequent():
    def count(boost: float) -> int:
        process = SceneProcess(rare_action_boost=boost)
        rng = np.random.default_rng(0)
        rare = 0
        for i in range(300):
            for phase in ("knee_prep", "knee_insert", "surgery_conclusion"):
                record = process.scan(1, i, phase, rng)
                rare += any(p in ("Drilling", "Cementing", "Suturing") for _, _, p in record.triples)
        return rare

    assert count(1.0) > 2 * count(0.0) > 0


def test_presets_compose_and_command_line_wins():
    gpu = load_config(["preset=gpu", "takes=2"])
    assert (gpu.root, gpu.takes, gpu.scans_per_take, list(gpu.image_size)) == (
        "datasets/synthetic_or_gpu",
        2,
        650,
        [256, 256],
    )
    cpu = load_config([])
    assert (cpu.root, cpu.takes, cpu.scans_per_take) == ("datasets/synthetic_or", 6, 40)
