"""Scene graph -> 3D placement of furniture, people, hands and tools, so that every predicate is true.

- ``LyingOn``: the Patient lies on the operating table, the operated (right) knee bent up.
- ``Holding``: an instrument in a hand. ``Touching``: a hand on the object. ``Operating``: both hands on the
  table's control pendant or the anaesthesia machine's screen, which light up.
- ``Assisting``: standing beside the partner at the same site, hands towards the partner's work.
- Surgical actions: at the knee, each with its own tool and posture (see :data:`ACTION_POSES`).
- ``CloseTo``: footprints less than :data:`CLOSE_TO_GAP` apart. For generated scenes it is *computed* from
  the placement (:func:`close_to_pairs`); for given graphs several placements are tried and the one that
  agrees best with the given CloseTo pairs is kept.

Graphs that no room can show (two Patients, a surgical action whose object is not the Patient, a table that
holds an instrument, ...) raise :class:`DatasetFormatError` naming the scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from or_synth.data.errors import DatasetFormatError
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import is_human_class
from or_synth.render.room import FURNITURE_SIZE, KNEE, ROOM_X, ROOM_Y, TABLE_TOP

CLOSE_TO_GAP = 0.9  # metres between footprints
PATIENT_ACTIONS = (
    "Cementing",
    "Cleaning",
    "Cutting",
    "Drilling",
    "Hammering",
    "Preparing",
    "Sawing",
    "Suturing",
)
DRAWABLE_PREDICATES = frozenset(PATIENT_ACTIONS) | {
    "Assisting",
    "CloseTo",
    "Holding",
    "LyingOn",
    "Operating",
    "Touching",
}
FURNITURE = tuple(FURNITURE_SIZE)
OPERABLE = ("operating_table", "anesthesia_equipment")
PERSON_RADIUS = 0.25

# Tool in the right hand, tool in the left hand, hand heights above the knee, lean forward (m).
# Offsets are (towards the actor, along the table, up) from the knee.
ACTION_POSES: dict[str, dict] = {
    "Drilling": {
        "right": (0.12, 0.0, 0.28),
        "left": (0.22, -0.18, 0.05),
        "tools": ("drill", None),
        "lean": 0.05,
    },
    "Sawing": {"right": (0.22, 0.1, 0.12), "left": (0.22, -0.1, 0.12), "tools": ("saw", None), "lean": 0.08},
    "Hammering": {
        "right": (0.2, 0.05, 0.62),
        "left": (0.12, -0.05, 0.2),
        "tools": ("hammer", "impactor"),
        "lean": 0.0,
    },
    "Cutting": {
        "right": (0.1, 0.0, 0.08),
        "left": (0.15, -0.25, 0.0),
        "tools": ("scalpel", None),
        "lean": 0.12,
    },
    "Suturing": {
        "right": (0.12, 0.06, 0.05),
        "left": (0.12, -0.08, 0.05),
        "tools": ("needle_holder", "forceps"),
        "lean": 0.2,
    },
    "Cementing": {
        "right": (0.3, 0.0, 0.3),
        "left": (0.2, 0.0, 0.2),
        "tools": ("cement_gun", None),
        "lean": 0.05,
    },
    "Cleaning": {
        "right": (0.05, 0.08, 0.02),
        "left": (0.3, -0.3, -0.1),
        "tools": ("sponge", None),
        "lean": 0.1,
    },
    "Preparing": {
        "right": (0.15, 0.38, 0.25),
        "left": (0.15, -0.38, 0.25),
        "tools": ("drape", None),
        "lean": 0.05,
    },
}

# Places at the patient (table coordinates: x along the table, y across; facing yaw in degrees).
PATIENT_SLOTS = (
    (KNEE[0], -0.7, 90.0),
    (KNEE[0], 0.72, -90.0),
    (1.35, 0.1, 180.0),
    (-0.3, -0.7, 90.0),
    (-0.3, 0.72, -90.0),
)


@dataclass
class Hand:
    point: np.ndarray  # (3,) world
    tool: str | None = None
    tool_node: int = -1  # node the tool's pixels belong to (the actor, or the instrument node)


@dataclass
class Placement:
    """Where one graph node is. People: ``x, y`` feet, ``yaw`` facing; furniture: centre and size."""

    node: int
    kind: str  # furniture | person | patient_lying | instrument
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)
    right: Hand | None = None
    left: Hand | None = None
    lean: float = 0.0
    glow: bool = False  # furniture being operated: its controls light up
    action: str | None = None
    slot: int | None = None  # the place at the patient (index of PATIENT_SLOTS) a person took, if any

    def footprint(self) -> np.ndarray:
        """(K, 2) points that stand for the footprint, for distances."""
        if self.kind in ("person",):
            angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
            return np.stack(
                [self.x + PERSON_RADIUS * np.cos(angles), self.y + PERSON_RADIUS * np.sin(angles)], 1
            )
        sx, sy = self.size[0] / 2, self.size[1] / 2
        grid = np.array([(a, b) for a in (-1, -0.5, 0, 0.5, 1) for b in (-1, 0, 1)], dtype=float)
        return grid * [sx, sy] + [self.x, self.y]


@dataclass
class Layout:
    record: SceneGraphRecord
    placements: dict[int, Placement]
    table: np.ndarray = field(default_factory=lambda: np.zeros(2))  # operating-table centre (x, y)

    def knee(self) -> np.ndarray:
        return np.array([self.table[0] + KNEE[0], self.table[1] + KNEE[1], KNEE[2]])


def check_drawable(record: SceneGraphRecord, *, file=None) -> None:
    """Raise :class:`DatasetFormatError` when the graph cannot be drawn or no room could show it."""
    where = {"file": file, "take": record.take, "scan": record.scan}
    names = record.object_names
    for name in set(names):
        if names.count(name) > 1:
            what = "two Patients in one scan" if name == "Patient" else f"object {name!r} listed twice"
            raise DatasetFormatError(f"physically impossible: {what}", field="objects", **where)
    lying = {}
    actions: dict[int, list[str]] = {}
    for i, (sub, obj, pred) in enumerate(record.triples):
        slot = {"field": f"relationships[{i}]", **where}
        s, o = names[sub], names[obj]
        if pred not in DRAWABLE_PREDICATES:
            raise DatasetFormatError(f"the renderer cannot draw predicate {pred!r}", **slot)
        if pred == "CloseTo":
            continue
        if pred == "LyingOn":
            if s != "Patient" or o != "operating_table":
                raise DatasetFormatError(
                    f"physically impossible: {s} LyingOn {o} (only the Patient lies on the operating table)",
                    **slot,
                )
            if o in lying.values():
                raise DatasetFormatError("physically impossible: two bodies on one operating table", **slot)
            lying[sub] = o
            continue
        if not is_human_class(s):
            raise DatasetFormatError(f"physically impossible: {s} {pred} {o} (only staff can {pred})", **slot)
        if pred in PATIENT_ACTIONS:
            if o != "Patient":
                raise DatasetFormatError(
                    f"physically impossible: surgical action {pred} on {o!r}; its object must be the Patient",
                    **slot,
                )
            actions.setdefault(sub, []).append(pred)
            if len(actions[sub]) > 1:
                raise DatasetFormatError(
                    f"physically impossible: {s} does two surgical actions at once ({', '.join(actions[sub])})",
                    **slot,
                )
        elif pred == "Holding" and o != "instrument":
            raise DatasetFormatError(f"cannot draw {s} Holding {o!r}: only instruments are held", **slot)
        elif pred == "Operating" and o not in OPERABLE:
            raise DatasetFormatError(
                f"cannot draw {s} Operating {o!r}: only {', '.join(OPERABLE)} have controls", **slot
            )
        elif pred == "Assisting" and not is_human_class(o):
            raise DatasetFormatError(f"cannot draw {s} Assisting {o!r}: one assists a staff member", **slot)
        elif pred == "Touching" and o == "instrument":
            raise DatasetFormatError(f"cannot draw {s} Touching instrument: use Holding", **slot)


def build_layout_record(
    record: SceneGraphRecord, rng: np.random.Generator, *, tries: int = 1, derive_close_to: bool = False
) -> tuple[SceneGraphRecord, Layout]:
    """Place a graph; with ``derive_close_to`` (generated scenes) add CloseTo from the placement."""
    layout = plan_layout(record, rng, tries=tries)
    if derive_close_to:
        record = with_close_to(record, layout)
        layout.record = record
    return record, layout


def plan_layout(
    record: SceneGraphRecord,
    rng: np.random.Generator,
    *,
    tries: int = 1,
    fixed: dict[int, Placement] | None = None,
    table: np.ndarray | None = None,
) -> Layout:
    """Place the scene. With ``tries > 1`` keep the placement whose CloseTo pairs best match the graph's.

    ``fixed`` (node -> placement) and ``table`` (the operating table's centre) keep what an earlier scan of the
    same take placed (:mod:`or_synth.render.motion`); only the other nodes are placed afresh."""
    best, best_cost = None, math.inf
    given = {(min(s, o), max(s, o)) for s, o, p in record.triples if p == "CloseTo"}
    for _ in range(tries):
        layout = _place(record, rng, fixed, table)
        if tries == 1:
            return layout
        computed = close_to_pairs(layout)
        cost = len(given ^ computed)
        if cost < best_cost:
            best, best_cost = layout, cost
            if cost == 0:
                break
    return best


def close_to_pairs(layout: Layout) -> set[tuple[int, int]]:
    """Unordered node pairs whose footprints are closer than :data:`CLOSE_TO_GAP` (instrument excluded)."""
    items = [(n, p.footprint()) for n, p in sorted(layout.placements.items()) if p.kind != "instrument"]
    pairs = set()
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            (na, fa), (nb, fb) = items[a], items[b]
            gap = np.sqrt(((fa[:, None, :] - fb[None, :, :]) ** 2).sum(-1)).min()
            if gap < CLOSE_TO_GAP:
                pairs.add((na, nb))
    return pairs


def with_close_to(record: SceneGraphRecord, layout: Layout) -> SceneGraphRecord:
    """The record with 4D-OR's CloseTo conventions added from geometry.

    Every non-CloseTo triple ``(a, b)`` gets the reverse ``(b, a) CloseTo``; other near pairs get CloseTo
    both ways; no ordered pair has two predicates.
    """
    triples = {(s, o): p for s, o, p in record.triples}
    for s, o, p in record.triples:
        if p != "CloseTo":
            triples.setdefault((o, s), "CloseTo")
    for a, b in close_to_pairs(layout):
        triples.setdefault((a, b), "CloseTo")
        triples.setdefault((b, a), "CloseTo")
    return SceneGraphRecord(
        take=record.take,
        scan=record.scan,
        object_names=record.object_names,
        roles=record.roles,
        triples=tuple(sorted((s, o, p) for (s, o), p in triples.items())),
    )


# --- placement ------------------------------------------------------------------------------------------
def _place(
    record: SceneGraphRecord,
    rng: np.random.Generator,
    fixed: dict[int, Placement] | None = None,
    table: np.ndarray | None = None,
) -> Layout:
    names = record.object_names
    index = {name: i for i, name in enumerate(names)}
    fixed = fixed or {}
    table = rng.uniform(-0.12, 0.12, 2) if table is None else np.asarray(table, float)
    layout = Layout(record=record, placements={}, table=table)
    by_subject: dict[int, list[tuple[int, str]]] = {}
    for s, o, p in record.triples:
        if p != "CloseTo":
            by_subject.setdefault(s, []).append((o, p))

    # Furniture: the operating table in the middle, the anaesthesia machine at the head end, the two mobile
    # tables wherever this scan has them.
    anesthesia_side = rng.choice([-1.0, 1.0])
    spots = {
        "operating_table": [(table[0], table[1])],
        "anesthesia_equipment": [(table[0] - 1.7, anesthesia_side * rng.uniform(0.4, 0.9))],
        "instrument_table": [(1.0, -1.3), (1.6, -0.95), (0.6, 1.4), (1.7, 1.2)],
        "secondary_table": [(2.3, 1.7), (2.3, -1.8), (-2.2, -1.8), (-0.6, -1.9)],
    }
    taken: list[Placement] = []
    for name in FURNITURE:
        if name not in index:
            continue
        if index[name] in fixed:  # an earlier scan of the take put it there: furniture stays where it is
            layout.placements[index[name]] = placement = copy_placement(fixed[index[name]], index[name])
            placement.glow = False
            taken.append(placement)
            continue
        options = spots[name]
        x, y = options[int(rng.integers(len(options)))]
        if name in ("instrument_table", "secondary_table"):
            x, y = x + rng.uniform(-0.2, 0.2), y + rng.uniform(-0.15, 0.15)
        placement = Placement(index[name], "furniture", float(x), float(y), 0.0, FURNITURE_SIZE[name])
        if any(_overlap(placement, other, 0.15) for other in taken):
            placement.x, placement.y = float(np.clip(x, *ROOM_X)), float(-y)
        layout.placements[index[name]] = placement
        taken.append(placement)

    if "Patient" in index:
        patient = index["Patient"]
        if any(p == "LyingOn" for _, p in by_subject.get(patient, [])):
            size = FURNITURE_SIZE["operating_table"]
            layout.placements[patient] = Placement(
                patient, "patient_lying", float(table[0]), float(table[1]), 0.0, (size[0] * 0.85, 0.45, 0.3)
            )
    if "instrument" in index:
        layout.placements[index["instrument"]] = Placement(index["instrument"], "instrument")

    # People: those at the patient first, then at controls and furniture, assistants next to their partner,
    # and everyone else on a free spot.
    humans = [
        i for i, n in enumerate(names) if is_human_class(n) or (n == "Patient" and i not in layout.placements)
    ]

    def priority(i: int) -> int:
        preds = [p for _, p in by_subject.get(i, [])]
        if any(p in PATIENT_ACTIONS for p in preds):
            return 0
        if any(names[o] == "Patient" for o, _ in by_subject.get(i, [])):
            return 1
        if "Operating" in preds or "Touching" in preds:
            return 2
        if "Assisting" in preds:
            return 3
        return 4

    slots_used: list[int] = []
    for i in humans:  # people kept from an earlier scan first, so that the others are placed around them
        if i in fixed:
            layout.placements[i] = person = copy_placement(fixed[i], i)
            taken.append(person)
            if person.slot is not None:
                slots_used.append(person.slot)
            for o, p in by_subject.get(i, []):
                if p == "Operating" and o in layout.placements:
                    layout.placements[o].glow = True
    for i in sorted((i for i in humans if i not in fixed), key=lambda i: (priority(i), i)):
        relations = by_subject.get(i, [])
        person = Placement(i, "person")
        _place_person(person, relations, layout, rng, slots_used, taken)
        layout.placements[i] = person
        taken.append(person)
    return layout


def _place_person(person, relations, layout, rng, slots_used, taken) -> None:
    names = layout.record.object_names
    table = layout.table
    knee = layout.knee()
    action = next((p for o, p in relations if p in PATIENT_ACTIONS), None)
    touch = next((o for o, p in relations if p == "Touching"), None)
    operate = next((o for o, p in relations if p == "Operating"), None)
    assist = next((o for o, p in relations if p == "Assisting"), None)
    holding = any(p == "Holding" for o, p in relations)
    placed = False

    if action is not None or (touch is not None and names[touch] == "Patient"):
        slot = person.slot = _free_slot(slots_used, rng)
        sx, sy, yaw = PATIENT_SLOTS[slot]
        person.x, person.y, person.yaw = table[0] + sx, table[1] + sy, yaw
        forward = _forward(yaw)
        toward = -forward  # from the knee towards the actor
        along = np.array([-toward[1], toward[0], 0.0])
        if action is not None:
            pose = ACTION_POSES[action]
            site = knee
            person.right = Hand(site + _offset(pose["right"], toward, along), pose["tools"][0], person.node)
            person.left = Hand(site + _offset(pose["left"], toward, along), pose["tools"][1], person.node)
            person.lean = pose["lean"]
            person.action = action
        else:  # Touching Patient: a hand on the thigh
            thigh = knee + np.array([-0.3, 0.0, -0.12])
            person.right = Hand(thigh + 0.06 * np.append(toward[:2], 0.0))
            person.lean = 0.08
        placed = True
    elif operate is not None:
        target = layout.placements.get(operate)
        if target is not None:
            if names[operate] == "operating_table":
                side = rng.choice([-1.0, 1.0])
                control = np.array([target.x - 0.55, target.y + side * 0.37, TABLE_TOP + 0.15])
                person.x, person.y = control[0], control[1] + side * 0.5
                person.yaw = -90.0 * side
            else:
                side = 1.0 if target.x < 0 else -1.0
                control = np.array([target.x + side * 0.3, target.y, 1.25])
                person.x, person.y = control[0] + side * 0.45, control[1]
                person.yaw = 180.0 if side > 0 else 0.0
            toward = -_forward(person.yaw)
            along = np.array([-toward[1], toward[0], 0.0])
            person.right = Hand(control + 0.08 * along)
            person.left = Hand(control - 0.08 * along)
            target.glow = True
            placed = True
    elif touch is not None:
        target = layout.placements.get(touch)
        if target is not None and target.kind == "furniture":
            _stand_at_furniture(person, target, rng)
            placed = True
        elif target is not None and target.kind == "person":
            _stand_beside(person, target, rng, distance=0.55)
            shoulder = np.array([target.x, target.y, 1.4])
            person.right = Hand(
                shoulder + 0.15 * np.append(_unit(person.x - target.x, person.y - target.y), 0)
            )
            placed = True
    elif assist is not None:
        partner = layout.placements.get(assist)
        if partner is not None and partner.kind == "person":
            _stand_beside(person, partner, rng, distance=0.6)
            work = partner.right.point if partner.right is not None else np.array([partner.x, partner.y, 1.1])
            direction = np.append(_unit(work[0] - person.x, work[1] - person.y), 0.0)
            person.right = Hand(work - 0.18 * direction + np.array([0, 0, 0.05]))
            person.left = Hand(work - 0.3 * direction + np.array([0, 0, 0.02]))
            person.lean = 0.1
            placed = True
    if not placed:
        _free_spot(person, layout, rng, taken)
    _avoid_overlap(person, taken, rng)
    if holding:
        instrument = layout.record.object_names.index("instrument")
        forward = _forward(person.yaw)
        side = np.array([-forward[1], forward[0], 0.0])
        point = np.array([person.x, person.y, 1.2]) + 0.42 * forward + 0.2 * side  # held up, in front
        if person.left is None or person.left.tool is None:
            person.left = Hand(point if person.left is None else person.left.point, "instrument", instrument)
        else:  # both hands busy with the action's tools: the left one takes the instrument instead
            person.left = Hand(person.left.point, "instrument", instrument)


def copy_placement(placement: Placement, node: int, instrument: int | None = None) -> Placement:
    """A copy of ``placement`` as node ``node`` of another scan's graph, hands copied: a tool that was the node's
    own stays its own, a held instrument's node becomes ``instrument`` (that scan's; unchanged when None)."""

    def hand(h: Hand | None) -> Hand | None:
        if h is None:
            return None
        tool_node = h.tool_node
        if tool_node == placement.node:
            tool_node = node
        elif tool_node >= 0 and instrument is not None:
            tool_node = instrument
        return Hand(h.point.copy(), h.tool, tool_node)

    return replace(placement, node=node, right=hand(placement.right), left=hand(placement.left))


def _free_slot(slots_used: list[int], rng) -> int:
    """The next free place at the patient: one side of the knee or the other at random, then the rest."""
    order = [0, 1] if rng.random() < 0.5 else [1, 0]
    order += [2, 3, 4]
    for slot in order:
        if slot not in slots_used:
            slots_used.append(slot)
            return slot
    slot = int(rng.integers(len(PATIENT_SLOTS)))
    slots_used.append(slot)
    return slot


def _stand_at_furniture(person: Placement, target: Placement, rng) -> None:
    sx, sy = target.size[0] / 2, target.size[1] / 2
    # Stand at the side that faces the room's centre, where there is space.
    sides = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    centre = np.array([-target.x, -target.y])
    sides.sort(key=lambda d: -(d[0] * centre[0] + d[1] * centre[1]) + rng.uniform(0, 0.5))
    dx, dy = sides[0]
    edge = np.array([target.x + dx * sx, target.y + dy * sy])
    shift = rng.uniform(-0.3, 0.3) * np.array([abs(dy) * sx, abs(dx) * sy])
    edge = edge + shift
    person.x, person.y = edge[0] + dx * 0.38, edge[1] + dy * 0.38
    person.yaw = math.degrees(math.atan2(-dy, -dx))
    hand = np.array([edge[0] - dx * 0.08, edge[1] - dy * 0.08, target.size[2] + 0.03])
    person.right = Hand(hand)
    person.lean = 0.05


def _stand_beside(person: Placement, partner: Placement, rng, distance: float) -> None:
    forward = _forward(partner.yaw)
    side = np.array([-forward[1], forward[0]])
    sign = rng.choice([-1.0, 1.0])
    person.x, person.y = partner.x + sign * distance * side[0], partner.y + sign * distance * side[1]
    person.yaw = partner.yaw


def _free_spot(person: Placement, layout: Layout, rng, taken) -> None:
    """A random spot on the floor; for given graphs, near the first person/furniture it is CloseTo."""
    close = [
        o
        for s, o, p in layout.record.triples
        if s == person.node
        and p == "CloseTo"
        and o in layout.placements
        and layout.placements[o].kind != "instrument"
    ]
    for _ in range(40):
        if close:
            anchor = layout.placements[close[int(rng.integers(len(close)))]]
            angle = rng.uniform(0, 2 * np.pi)
            reach = max(anchor.size[0], anchor.size[1]) / 2 + rng.uniform(0.45, 0.9)
            x, y = anchor.x + reach * np.cos(angle), anchor.y + reach * np.sin(angle)
        else:
            x, y = (
                rng.uniform(ROOM_X[0] + 0.5, ROOM_X[1] - 0.5),
                rng.uniform(ROOM_Y[0] + 0.5, ROOM_Y[1] - 0.5),
            )
        person.x, person.y = float(x), float(y)
        inside = not (ROOM_X[0] + 0.3 < x < ROOM_X[1] - 0.3 and ROOM_Y[0] + 0.3 < y < ROOM_Y[1] - 0.3)
        if not inside and not any(_overlap(person, other, 0.1) for other in taken):
            break
    person.yaw = math.degrees(
        math.atan2(layout.table[1] - person.y, layout.table[0] - person.x)
    ) + rng.uniform(-60, 60)


def _avoid_overlap(person: Placement, taken, rng) -> None:
    """Nudge a person out of another person or a piece of furniture (a few steps, then give up)."""
    for _ in range(8):
        clash = next((o for o in taken if _overlap(person, o, 0.0)), None)
        if clash is None:
            return
        away = (
            _unit(person.x - clash.x, person.y - clash.y)
            if (person.x, person.y) != (clash.x, clash.y)
            else (1, 0)
        )
        person.x += 0.15 * away[0]
        person.y += 0.15 * away[1]


def _overlap(a: Placement, b: Placement, margin: float) -> bool:
    if a.kind == "instrument" or b.kind == "instrument":
        return False
    if a.kind == "person" and b.kind == "person":
        return math.hypot(a.x - b.x, a.y - b.y) < 2 * PERSON_RADIUS + margin
    if a.kind == "person":
        a, b = b, a
    if b.kind == "person":
        return (
            abs(b.x - a.x) < a.size[0] / 2 + PERSON_RADIUS * 0.6 + margin
            and abs(b.y - a.y) < a.size[1] / 2 + PERSON_RADIUS * 0.6 + margin
        )
    return (
        abs(a.x - b.x) < (a.size[0] + b.size[0]) / 2 + margin
        and abs(a.y - b.y) < (a.size[1] + b.size[1]) / 2 + margin
    )


def _forward(yaw_deg: float) -> np.ndarray:
    r = math.radians(yaw_deg)
    return np.array([math.cos(r), math.sin(r), 0.0])


def _unit(dx: float, dy: float) -> np.ndarray:
    n = math.hypot(dx, dy) or 1.0
    return np.array([dx / n, dy / n])


def _offset(offset: tuple[float, float, float], toward: np.ndarray, along: np.ndarray) -> np.ndarray:
    return offset[0] * toward + offset[1] * along + np.array([0.0, 0.0, offset[2]])
