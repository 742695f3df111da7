"""The single source of ids for 4D-OR: object classes, predicates, roles, surgery phases, main actions.

Every other module asks this one for an id; none inlines a list. The built-in defaults equal 4D-OR's
``data/classes.txt`` and ``data/relationships.txt`` (see ``../shared/docs/4dor_format.md`` §2.2); when a
dataset root holds those files, :meth:`Vocabulary.load` reads them instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from or_synth.data.errors import DatasetFormatError

OBJECT_CLASSES: tuple[str, ...] = (
    "Patient",
    "anesthesia_equipment",
    "human_0",
    "human_1",
    "human_2",
    "human_3",
    "human_4",
    "human_5",
    "instrument",
    "instrument_table",
    "operating_table",
    "secondary_table",
)

PREDICATES: tuple[str, ...] = (
    "Assisting",
    "Cementing",
    "Cleaning",
    "CloseTo",
    "Cutting",
    "Drilling",
    "Hammering",
    "Holding",
    "LyingOn",
    "Operating",
    "Preparing",
    "Sawing",
    "Suturing",
    "Touching",
)

# 4D-OR's training code appends "none" after the sorted predicates: the label of an unannotated ordered pair.
NO_RELATION = "none"

# Clinical roles of the people in the room. The Patient is an object class of its own in the annotation but a
# role for every consumer (4D-OR role prediction uses exactly these five); "unknown" covers humans without a
# role entry and the annotators' "none" role; objects that are no person get "not-a-person".
ROLES: tuple[str, ...] = (
    "Patient",
    "head-surgeon",
    "assistant-surgeon",
    "circulating-nurse",
    "anaesthetist",
    "unknown",
    "not-a-person",
)
UNKNOWN_ROLE = "unknown"
NOT_A_PERSON = "not-a-person"
# Role strings that occur in human_idx_to_name but mean "no role known".
ROLE_ALIASES: dict[str, str] = {"none": UNKNOWN_ROLE}

PHASES: tuple[str, ...] = (
    "sterile",
    "roll_in",
    "patient_prep",
    "knee_prep",
    "knee_insert",
    "surgery_conclusion",
    "roll_out",
    "cleanup",
)
PHASE_LONG_NAMES: dict[str, str] = {
    "sterile": "OR Preparation",
    "roll_in": "Patient Roll-In",
    "patient_prep": "Patient Preparation",
    "knee_prep": "Surgery 1: Implant Placement Preparation",
    "knee_insert": "Surgery 2: Implant Placement",
    "surgery_conclusion": "Surgery 3: Conclusion",
    "roll_out": "Patient Roll-Out",
    "cleanup": "OR Cleanup",
}

# LABRAD-OR's main-action priorities (or_dataset.py L187-201). Their code spells Operating 'Pperating', so it
# can never win there; here it is included as intended.
MAIN_ACTION_PRIORITIES: tuple[frozenset[str], ...] = (
    frozenset({"Cementing", "Cutting", "Drilling", "Hammering", "Preparing", "Sawing", "Suturing"}),
    frozenset({"Cleaning", "Operating"}),
    frozenset({"Touching"}),
)
MAIN_ACTIONS: tuple[str, ...] = (NO_RELATION,) + tuple(
    sorted(name for group in MAIN_ACTION_PRIORITIES for name in group)
)

SPLIT_TAKES: dict[str, tuple[int, ...]] = {
    "train": (1, 3, 5, 7, 9, 10),
    "validation": (4, 8),
    "test": (2, 6),
}
SPLIT_ALIASES: dict[str, str] = {"val": "validation"}

CAMERAS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)


def canonical_split(split: str) -> str:
    """Map ``val`` to ``validation`` and reject unknown split names."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in SPLIT_TAKES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_TAKES)} or 'val'")
    return name


def canonical_role(role: str | None) -> str:
    """Role string from ``human_idx_to_name`` (or None when absent) -> an entry of :data:`ROLES`."""
    if role is None:
        return UNKNOWN_ROLE
    return ROLE_ALIASES.get(role, role)


def is_human_class(name: str) -> bool:
    """True for the ``human_k`` object classes (not the Patient)."""
    return name.startswith("human_")


def main_action(predicates: Iterable[str]) -> str:
    """The one main action of a scan from the predicates present in it (LABRAD-OR's rule).

    The highest-priority group with a present predicate wins; within a group (4D-OR never has two
    priority-0 actions in one scan) the alphabetically first is taken, so the result is deterministic.
    """
    present = set(predicates)
    for group in MAIN_ACTION_PRIORITIES:
        hits = sorted(present & group)
        if hits:
            return hits[0]
    return NO_RELATION


@dataclass(frozen=True)
class Vocabulary:
    """Object classes and predicates with their ids, plus the fixed role, phase and main-action lists.

    Attributes:
        object_classes: class names; the id is the position (``classes.txt`` line index).
        predicates: the 14 predicates; the id is the position (``relationships.txt`` line index). The
            ``none`` label is appended at id ``len(predicates)`` in :attr:`predicates_with_none`.
    """

    object_classes: tuple[str, ...] = OBJECT_CLASSES
    predicates: tuple[str, ...] = PREDICATES
    roles: tuple[str, ...] = ROLES
    phases: tuple[str, ...] = PHASES
    main_actions: tuple[str, ...] = MAIN_ACTIONS

    def __post_init__(self) -> None:
        for field_name in ("object_classes", "predicates"):
            names = getattr(self, field_name)
            if len(set(names)) != len(names):
                raise ValueError(f"Vocabulary.{field_name} has duplicate entries: {names}")
        if NO_RELATION in self.predicates:
            raise ValueError(f"{NO_RELATION!r} is appended automatically; it must not be a predicate")

    @classmethod
    def load(cls, root: str | Path | None = None) -> Vocabulary:
        """Read ``classes.txt`` / ``relationships.txt`` from ``root`` (or ``root/data``) when present.

        Missing files fall back to the built-in 4D-OR defaults, one file at a time.
        """
        if root is None:
            return cls()
        root = Path(root)
        kwargs = {}
        for file_name, field_name in (("classes.txt", "object_classes"), ("relationships.txt", "predicates")):
            for folder in (root, root / "data"):
                path = folder / file_name
                if path.is_file():
                    kwargs[field_name] = _read_name_list(path)
                    break
        return cls(**kwargs)

    @property
    def predicates_with_none(self) -> tuple[str, ...]:
        """The predicates followed by ``none`` (the dense-label vocabulary of the 4D-OR protocol)."""
        return self.predicates + (NO_RELATION,)

    @property
    def none_index(self) -> int:
        return len(self.predicates)

    @property
    def num_predicates(self) -> int:
        return len(self.predicates)

    def class_id(self, name: str) -> int:
        return self._index(self.object_classes, name, "object class")

    def predicate_id(self, name: str) -> int:
        return self._index(self.predicates_with_none, name, "predicate")

    def role_id(self, name: str) -> int:
        return self._index(self.roles, name, "role")

    def phase_id(self, name: str) -> int:
        return self._index(self.phases, name, "phase")

    def main_action_id(self, name: str) -> int:
        return self._index(self.main_actions, name, "main action")

    @staticmethod
    def _index(names: tuple[str, ...], name: str, what: str) -> int:
        try:
            return names.index(name)
        except ValueError:
            raise KeyError(f"unknown {what} {name!r}; known: {', '.join(names)}") from None


def _read_name_list(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"cannot read vocabulary file: {exc}", file=path) from exc
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise DatasetFormatError("vocabulary file is empty", file=path)
    return names
