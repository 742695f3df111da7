"""Coherent layouts over a take: the renderer's placement as a state that evolves from scan to scan.

A take is a sequence (4D-OR: about one scan a second), and placing every scan afresh makes furniture jump and
people teleport. Here each scan starts from the previous scan's placement:

- furniture stays where it is while the graph lists it (new furniture is placed around what is there); the
  operating table, and the Patient lying on it, never move;
- a person whose relations are unchanged stays (hands, pose and tools as they were);
- a person whose relations changed gets a new place from :func:`~or_synth.render.layout.plan_layout` (placed
  around everyone who stays) and walks there at most :data:`MAX_STEP` metres per scan: while on the way the
  person is drawn walking (no action pose; a held instrument stays in hand) and arrives in a later scan;
- nodes are matched across scans by identity (:func:`identity`: a person by role, an object by class), since
  node numbers change whenever someone enters or leaves.

:func:`take_layouts` works for any sequence of one take's graphs in scan order: the scene process's and real
4D-OR's. The per-scan placement (:func:`~or_synth.render.layout.build_layout_record`) stays the default for
single images; ``python -m or_synth.render placement=take`` renders datasets with these layouts, and
``python -m or_synth.sequence`` draws generated sequences from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from or_synth.data.errors import DatasetFormatError
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import UNKNOWN_ROLE, is_human_class
from or_synth.render.layout import (
    Hand,
    Layout,
    Placement,
    build_layout_record,
    copy_placement,
    plan_layout,
    with_close_to,
)
from or_synth.render.painter import Shaded, Style, build_mesh, shade

# Metres a person may walk from one scan to the next: 4D-OR's scans are about a second apart and staff walk at
# about 1.4 m/s in a room; a move longer than this takes several scans.
MAX_STEP = 1.5
# Seeds of a take's scene (style, appearance, clutter): one per take, so that lighting and colours do not flicker.
TAKE_SCENE_SEED = 1_000_061
TAKE_LAYOUT_SEED = 1_000_057


def identity(record: SceneGraphRecord, node: int) -> str:
    """What a node is across the scans of a take: a person by role (``human_k`` when the role is unknown, as 4D-OR
    numbers its people), the Patient and every object by class."""
    name = record.object_names[node]
    role = record.roles[node]
    if is_human_class(name) and role not in (UNKNOWN_ROLE, "Patient"):
        return f"person:{role}"
    return name


def identities(record: SceneGraphRecord) -> list[str]:
    """Every node's :func:`identity`; two nodes of one identity (two unknown-role people named alike cannot
    occur in 4D-OR, but two nurses can) are told apart by their order."""
    seen: dict[str, int] = {}
    out = []
    for node in range(record.num_nodes):
        key = identity(record, node)
        seen[key] = seen.get(key, 0) + 1
        out.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return out


def relation_signature(record: SceneGraphRecord, names: Sequence[str], node: int) -> frozenset:
    """What decides where a node stands: its own relations (CloseTo aside) and, for a person it assists or
    touches, that person's, by identity."""
    own = {(names[s], names[o], p) for s, o, p in record.triples if s == node and p != "CloseTo"}
    partners = {o for s, o, p in record.triples if s == node and p in ("Assisting", "Touching")}
    for partner in partners:
        if is_human_class(record.object_names[partner]):
            own |= {(names[s], names[o], p) for s, o, p in record.triples if s == partner and p != "CloseTo"}
    return frozenset(own)


@dataclass
class Walker:
    """Where a person is drawn, where the person is going, and the relations that sent the person there."""

    drawn: Placement
    target: Placement
    signature: frozenset

    @property
    def arrived(self) -> bool:
        return self.drawn is self.target


@dataclass
class TakeState:
    """The take's placement so far: the table, and each identity's furniture placement or walker."""

    table: np.ndarray
    furniture: dict[str, Placement]
    people: dict[str, Walker]


def take_layouts(
    records: Sequence[SceneGraphRecord],
    rng: np.random.Generator,
    *,
    tries: int = 1,
    derive_close_to: bool = False,
    max_step: float = MAX_STEP,
    consecutive: bool = True,
    file=None,
) -> list[tuple[SceneGraphRecord, Layout]]:
    """The layouts of one take's scans (in scan order), each from the one before.

    ``tries``: placements tried for what moves (the one whose CloseTo pairs fit a given graph best is kept);
    ``derive_close_to``: generated graphs get their CloseTo from the drawn placement, as the renderer does;
    ``consecutive=False`` accepts gaps in the scan ids (a render that skipped graphs it cannot draw).

    Raises:
        DatasetFormatError: the scans are not of one take, not in scan order, or (``consecutive``) not consecutive.
    """
    check_take_order(records, consecutive=consecutive, file=file)
    out: list[tuple[SceneGraphRecord, Layout]] = []
    state: TakeState | None = None
    for record in records:
        if state is None:
            record, layout = build_layout_record(record, rng, tries=tries, derive_close_to=derive_close_to)
            state = _state_of(layout)
        else:
            layout = _next_layout(record, state, rng, tries, max_step)
            if derive_close_to:
                record = with_close_to(record, layout)
                layout.record = record
        out.append((record, layout))
    return out


def check_take_order(records: Sequence[SceneGraphRecord], *, consecutive: bool = True, file=None) -> None:
    """One take, scans strictly increasing, no gap in the scan ids (a sequence is consecutive scans).

    Raises:
        DatasetFormatError: naming the file and the first scan out of place.
    """
    if not records:
        raise DatasetFormatError("a sequence needs at least one scan", file=file)
    first = records[0]
    for before, record in zip(records, records[1:], strict=False):
        where = {"file": file, "take": record.take, "scan": record.scan}
        if record.take != first.take:
            raise DatasetFormatError(
                f"a sequence is one take, but take {record.take} follows take {first.take}", **where
            )
        step = int(record.scan) - int(before.scan)
        if step <= 0:
            raise DatasetFormatError(f"scans out of order: {record.scan} follows {before.scan}", **where)
        if step > 1 and consecutive:
            raise DatasetFormatError(
                f"gap in the scan ids: {before.scan} is followed by {record.scan} "
                f"({step - 1} scan(s) missing); a sequence is consecutive scans",
                **where,
            )


def _state_of(layout: Layout) -> TakeState:
    record = layout.record
    names = identities(record)
    furniture, people = {}, {}
    for node, placement in layout.placements.items():
        if placement.kind == "furniture":
            furniture[names[node]] = placement
        elif placement.kind == "person":
            people[names[node]] = Walker(placement, placement, relation_signature(record, names, node))
    return TakeState(np.asarray(layout.table, float), furniture, people)


def _next_layout(
    record: SceneGraphRecord, state: TakeState, rng: np.random.Generator, tries: int, max_step: float
) -> Layout:
    names = identities(record)
    node_of = {name: node for node, name in enumerate(names)}
    instrument = node_of.get("instrument", -1)
    fixed: dict[int, Placement] = {}
    for name, placement in state.furniture.items():
        if name in node_of:
            fixed[node_of[name]] = copy_placement(placement, node_of[name], instrument)
    signatures = {node: relation_signature(record, names, node) for node in range(record.num_nodes)}
    for name, walker in state.people.items():
        node = node_of.get(name)
        if node is None or walker.signature != signatures[node] or not walker.arrived:
            continue
        if not is_human_class(record.object_names[node]) and record.object_names[node] != "Patient":
            continue
        fixed[node] = copy_placement(walker.drawn, node, instrument)
    layout = plan_layout(record, rng, tries=tries, fixed=fixed, table=state.table)

    people: dict[str, Walker] = {}
    for node, placement in layout.placements.items():
        name = names[node]
        if placement.kind == "furniture":
            state.furniture[name] = placement
            continue
        if placement.kind != "person":
            continue
        earlier = state.people.get(name)
        signature = signatures[node]
        if node in fixed or earlier is None:  # staying, or just come in
            people[name] = Walker(placement, placement, signature)
            continue
        # On the way: the remembered target while the relations that set it still hold, else the new one.
        target = placement
        if earlier.signature == signature and not earlier.arrived:
            target = copy_placement(earlier.target, node, instrument)
        drawn = _step_towards(earlier.drawn, target, max_step, instrument)
        people[name] = Walker(drawn, target, signature)
        layout.placements[node] = drawn
    for name in [n for n in state.furniture if n not in node_of]:
        del state.furniture[name]
    state.people = people
    return layout


def _step_towards(start: Placement, target: Placement, max_step: float, instrument: int) -> Placement:
    """``target`` itself when it is within ``max_step`` of ``start``; else the person walking that far towards
    it, facing the way, arms down (a held instrument stays in hand)."""
    dx, dy = target.x - start.x, target.y - start.y
    distance = math.hypot(dx, dy)
    if distance <= max_step:
        return target
    x, y = start.x + max_step * dx / distance, start.y + max_step * dy / distance
    yaw = math.degrees(math.atan2(dy, dx))
    walking = replace(target, x=x, y=y, yaw=yaw, right=None, left=None, lean=0.0, action=None, slot=None)
    holds = any(h is not None and h.tool == "instrument" for h in (target.right, target.left))
    if holds:
        r = math.radians(yaw)
        forward = np.array([math.cos(r), math.sin(r), 0.0])
        side = np.array([-forward[1], forward[0], 0.0])
        walking.left = Hand(np.array([x, y, 1.2]) + 0.42 * forward + 0.2 * side, "instrument", instrument)
    return walking


def take_rng(seed: int, take: int) -> np.random.Generator:
    """The generator of one take's placements (``placement=take``)."""
    return np.random.default_rng([int(seed), int(take), TAKE_LAYOUT_SEED])


def take_scene(layout: Layout, seed: int, take: int) -> tuple[Shaded, Style]:
    """One scan's lit scene under the take's style: lighting, colours and clutter drawn from ``(seed, take)``, not
    the scan, so they hold still across the take (clutter avoids the furniture, not the people who walk)."""
    rng = np.random.default_rng([int(seed), int(take), TAKE_SCENE_SEED])
    clutter = np.random.default_rng([int(seed), int(take), TAKE_SCENE_SEED, 1])
    style = Style.sample(rng)
    mesh = build_mesh(layout, rng, clutter_rng=clutter, clutter_avoids_people=False)
    return shade(mesh, style, layout.knee()), style
