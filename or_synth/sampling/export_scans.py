"""What an export draws: its source graphs (a relationships file of training takes, or new graphs from the
renderer's scene process), how many scans each becomes (rebalanced towards rare main actions), and the exported
scans, ordered by surgery phase within each take so every phase is one contiguous range as in 4D-OR's phase files.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from or_synth.data import DatasetFormatError, UserError, load_scene_graphs
from or_synth.data.phases import PhaseTable
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import PHASES, SPLIT_TAKES, Vocabulary, main_action
from or_synth.sampling.pipelines import resolve_graphs

CAMERA_JITTER = 0.08  # the renderer's default: exported takes place cameras as the renderer does
EVAL_SPLITS = ("validation", "test")


class ExportRefused(UserError, RuntimeError):
    """The output folder (or the graphs) holds something this export must not write into (or from)."""


@dataclass(frozen=True)
class ExportScan:
    """One exported scan: source graph ``graph`` (``record``)'s ``copy``-th rendition as scan ``index`` of
    ``take``."""

    take: int
    index: int
    graph: int
    record: SceneGraphRecord
    copy: int
    phase: str | None

    @property
    def scan(self) -> str:
        return f"{self.index:06d}"


@dataclass
class ExportSource:
    """The source graphs, the phase of each (by (take, scan)), what they are (a file, or the scene process and
    its settings) and, for a file, its relationships file and dataset root."""

    records: list[SceneGraphRecord]
    phases: dict
    description: str
    file: Path | None
    root: Path | None


def source_graphs(cfg: DictConfig) -> ExportSource:
    """The graphs ``graphs=`` names (the first ``limit``); validation / test graphs are refused unless
    ``allow_eval_graphs``."""
    source = (
        _scene_process_graphs(cfg.scene_process) if str(cfg.graphs) == "scene_process" else _file_graphs(cfg)
    )
    source.records = source.records[: int(cfg.limit)] if cfg.limit is not None else source.records
    if not source.records:
        raise DatasetFormatError("no scene graphs to export", file=source.description)
    return source


def _file_graphs(cfg: DictConfig) -> ExportSource:
    split = str(cfg.graphs)
    file, root = resolve_graphs(cfg.graphs, cfg.dataset_root)
    records = list(load_scene_graphs(file, Vocabulary.load(root)).records)
    eval_takes = {t for s in EVAL_SPLITS for t in SPLIT_TAKES[s]}
    held_out = sorted({r.take for r in records} & eval_takes)
    if (held_out or split in (*EVAL_SPLITS, "val")) and not cfg.allow_eval_graphs:
        raise ExportRefused(
            f"{file} holds graphs of 4D-OR's validation/test takes {held_out or split}: a synthetic training set "
            "must not be made from the graphs models are scored on. Use graphs=train or graphs=scene_process, or "
            "pass allow_eval_graphs=true (recorded in the dataset card)"
        )
    try:
        table = PhaseTable.load(root)
        phases = {(r.take, r.scan): _phase_name(table.phase_id(r.take, r.scan)) for r in records}
    except (FileNotFoundError, DatasetFormatError):
        phases = {}
    return ExportSource(records, phases, str(file), file, root)


def _phase_name(phase_id: int) -> str | None:
    return PHASES[phase_id] if phase_id >= 0 else None


def _scene_process_graphs(settings) -> ExportSource:
    """New graphs from the renderer's phase-driven scene process (with CloseTo from the 3D placement)."""
    from or_synth.render.pipeline import ScanJob, scan_record
    from or_synth.render.scene_process import phase_ranges

    seed, boost = int(settings.seed), float(settings.rare_action_boost)
    n = int(settings.scans_per_take)
    records, phases = [], {}
    for take in [int(t) for t in settings.takes]:
        if take not in SPLIT_TAKES["train"]:
            raise ExportRefused(
                f"scene_process.takes: take {take} is not a 4D-OR training take {SPLIT_TAKES['train']}"
            )
        for phase, (start, end) in phase_ranges(n, np.random.default_rng([seed, take, 1_000_033])).items():
            for i in range(start, end + 1):
                job = ScanJob(take=take, scan_index=i, phase=phase, record=None, root="", seed=seed,
                              rare_action_boost=boost, image_size=(8, 8), jpeg_quality=(95, 95),
                              camera_jitter=CAMERA_JITTER, layout_tries=1)  # fmt: skip
                record = scan_record(job)[0]
                records.append(record)
                phases[record.key] = phase
    what = f"scene_process(takes={list(settings.takes)}, scans_per_take={n}, seed={seed}, rare_action_boost={boost})"
    return ExportSource(records, phases, what, None, None)


# --- rebalancing ---------------------------------------------------------------------------------------------
def copies_per_graph(records: Sequence[SceneGraphRecord], per_graph: int, rebalance, seed: int) -> list[int]:
    """How many scans each source graph becomes: ``per_graph`` each, or re-weighted towards rare main actions.

    The total stays ``len(records) * per_graph``; action a gets a share proportional to its target weight, split
    evenly over its graphs (the remainder goes to graphs picked by a seeded shuffle)."""
    total = len(records) * per_graph
    if rebalance is None or not records:
        return [per_graph] * len(records)
    actions = [main_action(r.predicates) for r in records]
    counts = Counter(actions)
    weights = rebalance_weights(rebalance, counts)
    mass = sum(weights.values())
    if mass <= 0:
        raise ValueError(f"rebalance={rebalance}: the actions present ({sorted(counts)}) all have weight 0")
    # Largest-remainder apportionment: the shares add up to exactly `total`.
    targets = {a: total * weights[a] / mass for a in counts}
    shares = {a: int(t) for a, t in targets.items()}
    by_remainder = sorted(counts, key=lambda a: (-(targets[a] - shares[a]), a))
    for action in by_remainder[: total - sum(shares.values())]:
        shares[action] += 1
    copies = [0] * len(records)
    rng = np.random.default_rng([seed, 7_001])
    for action, count in sorted(counts.items()):
        members = [i for i, a in enumerate(actions) if a == action]
        base, extra = divmod(shares[action], count)
        for i in members:
            copies[i] = base
        for i in rng.permutation(members)[:extra]:
            copies[int(i)] += 1
    return copies


def check_rebalance(rebalance) -> str | dict[str, float] | None:
    """``rebalance=`` checked: null, ``uniform``, or a mapping of known main actions to finite weights >= 0.

    Raises:
        ValueError: anything else, named with what to give instead.
    """
    if rebalance is None or rebalance == "uniform":
        return rebalance
    if isinstance(rebalance, str) or not isinstance(rebalance, Mapping):
        raise ValueError(f"rebalance={rebalance}: use null, uniform or a mapping {{Action: weight}}")
    known = set(Vocabulary().main_actions)
    weights = {}
    for action, weight in rebalance.items():
        if str(action) not in known:
            raise ValueError(f"rebalance: unknown main action {action!r} (known: {sorted(known)})")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise ValueError(
                f"rebalance: the weight of {action} must be a finite number >= 0, got {weight!r}"
            )
        weights[str(action)] = float(weight)
    return weights


def rebalance_weights(rebalance, counts: Counter) -> dict[str, float]:
    """Target weight of each main action present: ``uniform``, or a mapping of relative weights (actions left
    out keep weight 1)."""
    given = check_rebalance(rebalance)
    if given == "uniform":
        return {action: 1.0 for action in counts}
    return {action: given.get(action, 1.0) for action in counts}


def plan_export(records: Sequence[SceneGraphRecord], phases: dict, copies: Sequence[int]) -> list[ExportScan]:
    """Exported scans per take, ordered by (phase, source scan, copy) so every phase is one contiguous range."""
    order = {name: i for i, name in enumerate(PHASES)}
    by_take: dict[int, list] = {}
    for graph, (record, n) in enumerate(zip(records, copies, strict=True)):
        phase = phases.get(record.key)
        for copy in range(n):
            by_take.setdefault(record.take, []).append(
                (order.get(phase, len(PHASES)), record.scan, copy, graph, record, phase)
            )
    scans = []
    for take in sorted(by_take):
        for index, (_, _, copy, graph, record, phase) in enumerate(
            sorted(by_take[take], key=lambda x: x[:3])
        ):
            scans.append(ExportScan(take, index, graph, record, copy, phase))
    return scans
