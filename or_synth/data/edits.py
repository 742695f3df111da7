"""Scene-graph edits for semantic manipulation (Dhamo et al.'s SIMSG): change a predicate or a role, swap a
relation's subject and object, remove or add a node. An edit is a short string, so it fits a command line::

    predicate head-surgeon Patient Sawing     # the relation head-surgeon -> Patient becomes Sawing
    role 3 assistant-surgeon                  # node 3 (0-based) gets another clinical role
    swap head-surgeon Patient                 # head-surgeon -> Patient becomes Patient -> head-surgeon
    remove circulating-nurse                  # the node and all its relations
    add human_4:anaesthetist CloseTo Patient  # a new node (class[:role]) with one relation to an existing node

A node is named by its index in the scan's object list, or by a name that picks exactly one node: its object
class (``Patient``, ``operating_table``, ``human_0``) or its clinical role (``head-surgeon``).
:func:`apply_edit` returns the edited record and the nodes whose pixels the edit changes (in the ORIGINAL
numbering, to cut their region from the original layout; an added node has no region there). An edit that does
not make sense (unknown node, a predicate or role the vocabulary lacks, no relation to change) is a
:class:`GraphEditError` naming the edit; so is an edited graph that ``check`` refuses. The physical rules (a
surgical action whose object is not the Patient, an instrument holding a person) are the renderer's: the
sampling layer passes them in (:func:`or_synth.sampling.edits.apply_drawable_edit`), as this layer imports
nothing above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from or_synth.data.errors import DatasetFormatError, UserError
from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import NOT_A_PERSON, UNKNOWN_ROLE, Vocabulary, is_human_class

KINDS = {"predicate": 3, "role": 2, "swap": 2, "remove": 1, "add": (1, 3)}


class GraphEditError(UserError, ValueError):
    """An edit that cannot apply to the scan's graph; the message names the edit and the scan."""


@dataclass(frozen=True)
class GraphEdit:
    """One parsed edit: ``kind`` and its arguments as written (node references are resolved per graph)."""

    kind: str
    args: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class EditResult:
    """The graph after the edit, and the original nodes whose image regions the edit changes."""

    before: SceneGraphRecord
    after: SceneGraphRecord
    changed_nodes: frozenset[int]
    edit: GraphEdit


def parse_edit(text: str) -> GraphEdit:
    """``"predicate head-surgeon Patient Sawing"`` -> ``GraphEdit("predicate", (...), text)``."""
    words = str(text).split()
    if not words or words[0] not in KINDS:
        raise GraphEditError(f"edit {text!r}: start with one of {', '.join(KINDS)}")
    kind, args = words[0], tuple(words[1:])
    arity = KINDS[kind]
    allowed = arity if isinstance(arity, tuple) else (arity,)
    if len(args) not in allowed:
        usage = {
            "predicate": "predicate SUBJECT OBJECT NEW_PREDICATE",
            "role": "role NODE NEW_ROLE",
            "swap": "swap SUBJECT OBJECT",
            "remove": "remove NODE",
            "add": "add CLASS[:ROLE] [PREDICATE TARGET]",
        }[kind]
        raise GraphEditError(f"edit {text!r}: expected `{usage}`")
    return GraphEdit(kind, args, str(text))


def resolve_node(record: SceneGraphRecord, reference: str, edit: GraphEdit) -> int:
    """A node index from an index or a name that picks exactly one node (class or role)."""
    if reference.isdigit():
        index = int(reference)
        if index >= record.num_nodes:
            raise _error(
                edit, record, f"no node {index} (the graph has {record.num_nodes}: {_nodes(record)})"
            )
        return index
    matches = [
        i
        for i, (name, role) in enumerate(zip(record.object_names, record.roles, strict=True))
        if reference in (name, role)
    ]
    if len(matches) != 1:
        what = "no node" if not matches else f"{len(matches)} nodes ({', '.join(map(str, matches))})"
        raise _error(edit, record, f"{what} named {reference!r}; use an index ({_nodes(record)})")
    return matches[0]


def apply_edit(
    record: SceneGraphRecord,
    edit: GraphEdit | str,
    vocabulary: Vocabulary | None = None,
    *,
    check: Callable[[SceneGraphRecord], None] | None = None,
) -> EditResult:
    """Apply one edit to a scan's graph; see the module docstring for the grammar.

    Args:
        check: called with the edited graph; a :class:`DatasetFormatError` it raises becomes a
            :class:`GraphEditError` naming the edit (e.g. the renderer's ``check_drawable``).
    """
    vocabulary = vocabulary or Vocabulary()
    edit = parse_edit(edit) if isinstance(edit, str) else edit
    names, roles, triples = list(record.object_names), list(record.roles), list(record.triples)
    if edit.kind in ("predicate", "swap"):
        s, o = (resolve_node(record, ref, edit) for ref in edit.args[:2])
        hits = [i for i, (a, b, _) in enumerate(triples) if (a, b) == (s, o)]
        if not hits:
            raise _error(edit, record, f"no relation {_name(record, s)} -> {_name(record, o)} to change")
        for i in hits:
            _, _, predicate = triples[i]
            if edit.kind == "predicate":
                triples[i] = (s, o, _predicate(edit.args[2], vocabulary, edit, record))
            else:
                triples[i] = (o, s, predicate)
        changed = {s, o}
    elif edit.kind == "role":
        node = resolve_node(record, edit.args[0], edit)
        if not is_human_class(names[node]):
            raise _error(edit, record, f"node {node} ({names[node]}) is not a person, so it has no role")
        roles[node] = _role(edit.args[1], vocabulary, edit, record)
        changed = {node}
    elif edit.kind == "remove":
        node = resolve_node(record, edit.args[0], edit)
        names.pop(node), roles.pop(node)
        shift = lambda i: i - (i > node)  # noqa: E731 - later nodes move up by one
        triples = [(shift(a), shift(b), p) for a, b, p in triples if node not in (a, b)]
        changed = {node}
    else:  # add
        class_name, _, role = edit.args[0].partition(":")
        if class_name not in vocabulary.object_classes:
            raise _error(edit, record, f"unknown object class {class_name!r}")
        if class_name in names:
            raise _error(edit, record, f"the graph already has a {class_name}")
        if role:
            role = _role(role, vocabulary, edit, record)
        else:
            role = UNKNOWN_ROLE if is_human_class(class_name) else NOT_A_PERSON
        names.append(class_name)
        roles.append(role)
        if len(edit.args) == 3:
            target = resolve_node(record, edit.args[2], edit)
            triples.append((len(names) - 1, target, _predicate(edit.args[1], vocabulary, edit, record)))
        changed = set()
    after = replace(record, object_names=tuple(names), roles=tuple(roles), triples=tuple(triples))
    try:
        if check is not None:
            check(after)
    except DatasetFormatError as error:
        raise _error(edit, record, f"the edited graph: {error.reason}") from None
    return EditResult(record, after, frozenset(changed), edit)


def _predicate(name: str, vocabulary: Vocabulary, edit: GraphEdit, record: SceneGraphRecord) -> str:
    if name not in vocabulary.predicates:
        raise _error(edit, record, f"unknown predicate {name!r} (known: {', '.join(vocabulary.predicates)})")
    return name


def _role(name: str, vocabulary: Vocabulary, edit: GraphEdit, record: SceneGraphRecord) -> str:
    if name not in vocabulary.roles or name in ("Patient", NOT_A_PERSON):
        people = [r for r in vocabulary.roles if r not in ("Patient", NOT_A_PERSON)]
        raise _error(edit, record, f"unknown role {name!r} for staff (known: {', '.join(people)})")
    return name


def _name(record: SceneGraphRecord, i: int) -> str:
    role = record.roles[i]
    return role if role not in (UNKNOWN_ROLE, NOT_A_PERSON) else record.object_names[i]


def _nodes(record: SceneGraphRecord) -> str:
    return ", ".join(f"{i}={_name(record, i)}" for i in range(record.num_nodes))


def _error(edit: GraphEdit, record: SceneGraphRecord, message: str) -> GraphEditError:
    return GraphEditError(f"edit {edit.text!r} on take {record.take} scan {record.scan}: {message}")
