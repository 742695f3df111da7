"""A phase-driven process that writes 4D-OR-like scene graphs, take by take.

A take runs through 4D-OR's 8 surgery phases with durations drawn around the shared phase files' mean
fractions. Within a phase, who is in the room and what they do follow the validation statistics of
``../shared/docs/4dor_format.md`` §2.3 (per-phase rates were counted from the validation JSON and its
phase files): e.g. the head surgeon cuts, saws and drills in ``knee_prep``, hammers and cements in
``knee_insert`` and sutures in ``surgery_conclusion``; the circulating nurse touches the secondary table;
nurse and anaesthetist operate the table when the patient is rolled in and out.

This module writes only the *semantic* relations. ``CloseTo`` is added by :mod:`or_synth.render.layout`
from where things end up in the room, so every CloseTo is geometrically true.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import PHASES, UNKNOWN_ROLE

# Mean fraction of a take spent in each phase, and its spread (the 8 phase files in ../shared).
PHASE_FRACTIONS = (0.070, 0.129, 0.262, 0.168, 0.156, 0.134, 0.034, 0.047)
PHASE_FRACTION_STD = (0.019, 0.017, 0.028, 0.012, 0.025, 0.020, 0.005, 0.012)

SURGICAL_ACTIONS = ("Cementing", "Cutting", "Drilling", "Hammering", "Preparing", "Sawing", "Suturing")
TOOLED_ACTIONS = ("Cementing", "Cutting", "Drilling", "Hammering", "Sawing", "Suturing", "Cleaning")


@dataclass(frozen=True)
class PhasePlan:
    """Who is present and what happens in one phase.

    Attributes:
        patient: probability that the Patient is in the room (lying on the operating table).
        anesthesia: probability that the anaesthesia machine is annotated.
        roles: probability of each staff role being present.
        actions: scan-level probability of each patient action (at most one surgical action per scan,
            as in 4D-OR); ``Cleaning`` is drawn on its own.
        staff: per role, (predicate, target, probability) of its other activities, tried in order.
        holding: per role, probability of holding an instrument.
    """

    patient: float
    anesthesia: float
    roles: dict[str, float]
    actions: dict[str, float]
    staff: dict[str, tuple[tuple[str, str, float], ...]]
    holding: dict[str, float]


_NURSE_TOUCH = (("Touching", "secondary_table", 0.45), ("Touching", "instrument_table", 0.05))
PHASE_PLANS: dict[str, PhasePlan] = {
    "sterile": PhasePlan(
        patient=0.0,
        anesthesia=0.94,
        roles={"circulating-nurse": 0.6, "anaesthetist": 0.3, UNKNOWN_ROLE: 0.1},
        actions={},
        staff={
            "circulating-nurse": _NURSE_TOUCH,
            "anaesthetist": (("Touching", "anesthesia_equipment", 0.2),),
        },
        holding={"circulating-nurse": 0.05},
    ),
    "roll_in": PhasePlan(
        patient=1.0,
        anesthesia=0.95,
        roles={
            "circulating-nurse": 0.55,
            "anaesthetist": 0.35,
            "head-surgeon": 0.2,
            "assistant-surgeon": 0.22,
            UNKNOWN_ROLE: 0.12,
        },
        actions={"Preparing": 0.01},
        staff={
            "circulating-nurse": (("Operating", "operating_table", 0.25),),
            "anaesthetist": (("Operating", "operating_table", 0.25),),
        },
        holding={"head-surgeon": 0.05, "assistant-surgeon": 0.05},
    ),
    "patient_prep": PhasePlan(
        patient=1.0,
        anesthesia=1.0,
        roles={
            "head-surgeon": 1.0,
            "assistant-surgeon": 1.0,
            "circulating-nurse": 0.82,
            "anaesthetist": 0.04,
            UNKNOWN_ROLE: 0.16,
        },
        actions={"Preparing": 0.5, "Cleaning": 0.11},
        staff={
            "assistant-surgeon": (("Touching", "instrument_table", 0.2),),
            "circulating-nurse": _NURSE_TOUCH,
        },
        holding={"head-surgeon": 0.3, "assistant-surgeon": 0.3, "circulating-nurse": 0.1},
    ),
    "knee_prep": PhasePlan(
        patient=1.0,
        anesthesia=1.0,
        roles={"head-surgeon": 1.0, "assistant-surgeon": 1.0, "circulating-nurse": 1.0},
        actions={"Cutting": 0.19, "Sawing": 0.17, "Drilling": 0.10, "Hammering": 0.02, "Cleaning": 0.10},
        staff={
            "head-surgeon": (("Touching", "Patient", 0.12),),
            "assistant-surgeon": (("Touching", "instrument_table", 0.25),),
            "circulating-nurse": _NURSE_TOUCH,
        },
        holding={"head-surgeon": 0.6, "assistant-surgeon": 0.5, "circulating-nurse": 0.15},
    ),
    "knee_insert": PhasePlan(
        patient=1.0,
        anesthesia=1.0,
        roles={"head-surgeon": 1.0, "assistant-surgeon": 1.0, "circulating-nurse": 0.94, UNKNOWN_ROLE: 0.1},
        actions={"Hammering": 0.21, "Cementing": 0.09, "Cleaning": 0.08},
        staff={
            "head-surgeon": (("Touching", "Patient", 0.12),),
            "assistant-surgeon": (("Touching", "instrument_table", 0.25),),
            "circulating-nurse": _NURSE_TOUCH,
        },
        holding={"head-surgeon": 0.45, "assistant-surgeon": 0.4, "circulating-nurse": 0.1},
    ),
    "surgery_conclusion": PhasePlan(
        patient=1.0,
        anesthesia=1.0,
        roles={
            "circulating-nurse": 0.95,
            "anaesthetist": 0.48,
            "head-surgeon": 0.4,
            "assistant-surgeon": 0.3,
        },
        actions={"Suturing": 0.12, "Preparing": 0.44},
        staff={
            "circulating-nurse": _NURSE_TOUCH,
            "anaesthetist": (("Touching", "anesthesia_equipment", 0.1),),
        },
        holding={
            "head-surgeon": 0.4,
            "assistant-surgeon": 0.4,
            "circulating-nurse": 0.2,
            "anaesthetist": 0.1,
        },
    ),
    "roll_out": PhasePlan(
        patient=0.5,
        anesthesia=1.0,
        roles={"circulating-nurse": 0.6, "anaesthetist": 0.6, UNKNOWN_ROLE: 0.07},
        actions={},
        staff={
            "circulating-nurse": (("Operating", "operating_table", 0.5),),
            "anaesthetist": (("Operating", "operating_table", 0.5),),
        },
        holding={},
    ),
    "cleanup": PhasePlan(
        patient=0.0,
        anesthesia=0.7,
        roles={"circulating-nurse": 0.85, "anaesthetist": 0.6, UNKNOWN_ROLE: 0.1},
        actions={},
        staff={"circulating-nurse": _NURSE_TOUCH, "anaesthetist": (("Touching", "secondary_table", 0.1),)},
        holding={"circulating-nurse": 0.35, "anaesthetist": 0.25},
    ),
}

# Who performs a patient action: the head surgeon does the surgery; preparing and cleaning are shared.
ACTORS: dict[str, tuple[tuple[str, float], ...]] = {
    "Preparing": (
        ("head-surgeon", 0.45),
        ("assistant-surgeon", 0.35),
        ("circulating-nurse", 0.1),
        ("anaesthetist", 0.1),
    ),
    "Cleaning": (("assistant-surgeon", 0.6), ("head-surgeon", 0.4)),
}
ASSISTING_PROBABILITY = 0.5  # assistant Assisting head-surgeon while the head surgeon works at the patient


def phase_ranges(num_scans: int, rng: np.random.Generator) -> dict[str, list[int]]:
    """Inclusive ``[start, end]`` scan range of each phase, covering ``0..num_scans-1`` (every phase >= 1).

    Raises:
        ValueError: fewer scans than phases.
    """
    if num_scans < len(PHASES):
        raise ValueError(f"scans_per_take must be at least {len(PHASES)} (one per phase), got {num_scans}")
    fractions = np.clip(rng.normal(PHASE_FRACTIONS, PHASE_FRACTION_STD), 0.01, None)
    fractions = fractions / fractions.sum()
    spare = num_scans - len(PHASES)
    counts = 1 + np.floor(fractions * spare).astype(int)
    for i in np.argsort(-(fractions * spare - np.floor(fractions * spare)))[: num_scans - counts.sum()]:
        counts[i] += 1
    ends = np.cumsum(counts) - 1
    return {
        phase: [int(end - count + 1), int(end)]
        for phase, count, end in zip(PHASES, counts, ends, strict=True)
    }


def boosted_actions(actions: dict[str, float], boost: float) -> dict[str, float]:
    """Re-balance rare actions: ``p -> p ** (1 - boost)`` (0: 4D-OR's rates, 1: every action as likely as
    the phase allows), scaled down so the surgical actions of a phase stay below 0.9 in total."""
    if boost <= 0:
        return dict(actions)
    out = {name: p ** (1.0 - min(boost, 1.0)) for name, p in actions.items()}
    surgical = sum(p for name, p in out.items() if name in SURGICAL_ACTIONS)
    if surgical > 0.9:
        out = {name: p * 0.9 / surgical if name in SURGICAL_ACTIONS else p for name, p in out.items()}
    return out


class SceneProcess:
    """Draws the semantic scene graph of each scan of a take.

    Args:
        rare_action_boost: 0 keeps 4D-OR's action frequencies; towards 1 rare actions (drilling,
            cementing, suturing, ...) become as frequent as the phase allows (see :func:`boosted_actions`).
    """

    def __init__(self, rare_action_boost: float = 0.0) -> None:
        self.rare_action_boost = float(rare_action_boost)

    def scan(self, take: int, scan_index: int, phase: str, rng: np.random.Generator) -> SceneGraphRecord:
        """One scan's objects, roles and non-CloseTo relations (CloseTo comes from the layout)."""
        plan = PHASE_PLANS[phase]
        staff = [role for role, p in plan.roles.items() if rng.random() < p]
        patient = rng.random() < plan.patient
        activities: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(staff))}

        if patient:
            actions = boosted_actions(plan.actions, self.rare_action_boost)
            surgical = [(a, p) for a, p in actions.items() if a in SURGICAL_ACTIONS]
            draw, acc = rng.random(), 0.0
            for action, p in surgical:  # one surgical action type per scan at most (4D-OR never has two)
                acc += p
                if draw < acc:
                    self._assign_action(action, staff, activities, rng)
                    break
            if "Cleaning" in actions and rng.random() < actions["Cleaning"]:
                self._assign_action("Cleaning", staff, activities, rng)
            self._assign_assisting(staff, activities, rng)

        for i, role in enumerate(staff):
            if activities[i]:
                continue
            for predicate, target, p in plan.staff.get(role, ()):
                p = _boost_staff(p, self.rare_action_boost)
                if target == "Patient" and not patient:
                    continue
                if predicate == "Operating" and target == "operating_table" and not patient:
                    continue
                if rng.random() < p:
                    activities[i].append((predicate, target))
                    break
        holding = [
            i
            for i, role in enumerate(staff)
            if rng.random() < plan.holding.get(role, 0.0) and not _two_handed(activities[i])
        ]
        anesthesia = rng.random() < plan.anesthesia
        return build_record(take, scan_index, staff, activities, holding, patient, anesthesia, rng)

    def _assign_action(self, action, staff, activities, rng) -> None:
        # The head surgeon does the surgery; the assistant only stands in when no head surgeon is there.
        candidates = ACTORS.get(action, (("head-surgeon", 1.0),))
        present = [(role, w) for role, w in candidates if role in staff]
        if not present and action not in ACTORS and "assistant-surgeon" in staff:
            present = [("assistant-surgeon", 1.0)]
        if not present:
            return
        weights = np.array([w for _, w in present])
        role = present[int(rng.choice(len(present), p=weights / weights.sum()))][0]
        free = [i for i, r in enumerate(staff) if r == role and not activities[i]]
        if free:
            activities[free[0]].append((action, "Patient"))

    def _assign_assisting(self, staff, activities, rng) -> None:
        if "head-surgeon" not in staff or "assistant-surgeon" not in staff:
            return
        head = staff.index("head-surgeon")
        assistant = staff.index("assistant-surgeon")
        at_patient = any(target == "Patient" for _, target in activities[head])
        p = _boost_staff(ASSISTING_PROBABILITY, self.rare_action_boost)
        if at_patient and not activities[assistant] and rng.random() < p:
            activities[assistant].append(("Assisting", "head-surgeon"))


def _boost_staff(p: float, boost: float) -> float:
    """Staff activities (Operating, Assisting, Touching) under the same knob: rare ones rise towards 0.5."""
    return p + max(0.0, min(boost, 1.0)) * max(0.0, 0.5 - p)


def _two_handed(activity: list[tuple[str, str]]) -> bool:
    return any(pred in ("Sawing", "Cementing", "Preparing", "Operating") for pred, _ in activity)


def build_record(
    take: int,
    scan_index: int,
    staff: list[str],
    activities: dict[int, list[tuple[str, str]]],
    holding: list[int],
    patient: bool,
    anesthesia: bool,
    rng: np.random.Generator,
) -> SceneGraphRecord:
    """Name the nodes the 4D-OR way and turn activities into triples.

    Humans get ``human_k`` in a random order (4D-OR's ``k`` is not an identity, §2.2); object keys are
    assigned in sorted name order; ``instrument``, ``instrument_table`` and ``secondary_table`` are always
    listed.
    """
    order = rng.permutation(len(staff))
    human_name = {int(staff_index): f"human_{k}" for k, staff_index in enumerate(order)}
    names = ["instrument", "instrument_table", "secondary_table"] + list(human_name.values())
    if patient:
        names += ["Patient", "operating_table"]
    if anesthesia:
        names.append("anesthesia_equipment")
    names = sorted(names)
    node = {name: i for i, name in enumerate(names)}
    roles = []
    role_of_name = {human_name[i]: staff[i] for i in range(len(staff))}
    for name in names:
        if name == "Patient":
            roles.append("Patient")
        elif name.startswith("human_"):
            roles.append(role_of_name[name])
        else:
            roles.append("not-a-person")

    def target_node(target: str) -> int | None:
        if target in node:
            return node[target]
        if target in staff:  # a role, e.g. Assisting head-surgeon
            return node[human_name[staff.index(target)]]
        return None

    triples = []
    if patient:
        triples.append((node["Patient"], node["operating_table"], "LyingOn"))
    for i in range(len(staff)):
        subject = node[human_name[i]]
        for predicate, target in activities[i]:
            obj = target_node(target)
            if obj is not None and obj != subject:
                triples.append((subject, obj, predicate))
        if i in holding:
            triples.append((subject, node["instrument"], "Holding"))
    return SceneGraphRecord(
        take=take,
        scan=f"{scan_index:06d}",
        object_names=tuple(names),
        roles=tuple(roles),
        triples=tuple(sorted(triples)),
    )
