"""Clinically worded text prompts for every node label and predicate of a 4D-OR scene graph.

Node labels: people (the Patient and every ``human_k``) are named by their clinical role, objects by their
class, because ``human_k`` is not a stable identity across scans (``../shared/docs/4dor_format.md`` §2.2):
the same person is ``human_0`` in one scan and ``human_1`` in the next, while the role is what the image
shows (gown, position at the table, what the hands do).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import torch

from or_synth.data.vocabulary import NOT_A_PERSON, Vocabulary, is_human_class

log = logging.getLogger(__name__)

# People, keyed by role (vocabulary.ROLES minus "not-a-person").
ROLE_PROMPTS: dict[str, str] = {
    "Patient": "a patient lying under sterile drapes for knee replacement surgery",
    "head-surgeon": "a head surgeon in a sterile gown, gloves and a surgical helmet",
    "assistant-surgeon": "an assistant surgeon in a sterile gown helping at the operating table",
    "circulating-nurse": "a circulating nurse in scrubs walking around the operating room",
    "anaesthetist": "an anaesthetist in scrubs at the head end of the patient",
    "unknown": "a person in scrubs in the operating room",
}

# Objects, keyed by object class.
OBJECT_PROMPTS: dict[str, str] = {
    "anesthesia_equipment": "an anaesthesia machine with monitors and breathing tubes",
    "instrument": "a handheld surgical instrument such as a drill, saw or hammer",
    "instrument_table": "a sterile instrument table covered with surgical tools",
    "operating_table": "an operating table in the middle of the operating room",
    "secondary_table": "a secondary side table with supplies in the operating room",
}

# Predicates, worded as the action seen in the image (subject does this to the object).
PREDICATE_PROMPTS: dict[str, str] = {
    "Assisting": "assisting the surgeon during the operation",
    "Cementing": "cementing the knee implant into the patient's bone",
    "Cleaning": "cleaning and disinfecting the patient's knee",
    "CloseTo": "standing close to",
    "Cutting": "cutting into the patient's knee with a scalpel",
    "Drilling": "drilling into the patient's knee bone",
    "Hammering": "hammering the implant into the patient's knee",
    "Holding": "holding a surgical instrument in the hand",
    "LyingOn": "lying on the operating table",
    "Operating": "operating the controls of the equipment",
    "Preparing": "preparing the patient for surgery",
    "Sawing": "sawing the patient's bone with a surgical saw",
    "Suturing": "suturing the wound on the patient's knee",
    "Touching": "touching with the hand",
}


def _generic(name: str) -> str:
    return f"a {name.replace('_', ' ').replace('-', ' ')} in an operating room"


@dataclass(frozen=True)
class LabelPrompts:
    """The node-label and predicate prompt lists of one vocabulary, in id order.

    Attributes:
        node_labels: names of the node labels: person roles first, then the object classes.
        node_prompts: one prompt per node label.
        predicates: the vocabulary's predicates (without ``none``), in id order.
        predicate_prompts: one prompt per predicate.
    """

    node_labels: tuple[str, ...]
    node_prompts: tuple[str, ...]
    predicates: tuple[str, ...]
    predicate_prompts: tuple[str, ...]

    @classmethod
    def from_vocabulary(cls, vocabulary: Vocabulary | None = None) -> LabelPrompts:
        """Prompts for every label of ``vocabulary``; a name without a written prompt gets a generic one."""
        vocabulary = vocabulary or Vocabulary()
        people = [role for role in vocabulary.roles if role != NOT_A_PERSON]
        objects = [
            name for name in vocabulary.object_classes if name != "Patient" and not is_human_class(name)
        ]
        node_labels = tuple(people + objects)
        table = {**ROLE_PROMPTS, **OBJECT_PROMPTS}
        missing = [n for n in node_labels if n not in table] + [
            p for p in vocabulary.predicates if p not in PREDICATE_PROMPTS
        ]
        if missing:
            log.warning("no written prompt for %s; using a generic prompt", ", ".join(missing))
        return cls(
            node_labels=node_labels,
            node_prompts=tuple(table.get(n, _generic(n)) for n in node_labels),
            predicates=tuple(vocabulary.predicates),
            predicate_prompts=tuple(PREDICATE_PROMPTS.get(p, _generic(p)) for p in vocabulary.predicates),
        )

    @property
    def texts(self) -> list[str]:
        """All prompts, node labels first: the order in which a text tower embeds them."""
        return list(self.node_prompts) + list(self.predicate_prompts)

    def digest(self) -> str:
        """sha256 of labels and prompts: part of the label-embedding cache key."""
        payload = json.dumps(
            [self.node_labels, self.node_prompts, self.predicates, self.predicate_prompts], sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def node_label_lookup(vocabulary: Vocabulary, node_labels: tuple[str, ...]) -> torch.Tensor:
    """(num_classes, num_roles) long table: (class id, role id) -> node-label id, -1 where invalid.

    The Patient class maps to the Patient label; ``human_k`` maps to its role (a person role); every other
    class maps to itself, whatever the role column says (objects carry ``not-a-person``).
    """
    table = torch.full((len(vocabulary.object_classes), len(vocabulary.roles)), -1, dtype=torch.long)
    for c, name in enumerate(vocabulary.object_classes):
        for r, role in enumerate(vocabulary.roles):
            if name == "Patient":
                label = "Patient"
            elif is_human_class(name):
                label = role if role not in ("Patient", NOT_A_PERSON) else None
            else:
                label = name
            if label is not None and label in node_labels:
                table[c, r] = node_labels.index(label)
    return table
