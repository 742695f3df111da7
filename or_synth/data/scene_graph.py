"""4D-OR scene graphs: ``relationships_{split}.json`` -> validated records -> PyG ``Data``.

The format (``../shared/docs/4dor_format.md`` §2.1): ``{"scans": [{take_idx, scan, objects, relationships,
human_idx_to_name}, ...]}``. Object keys ``"1".."n"`` are node ``key - 1``; a relationship is
``[sub_key, obj_key, pred_idx, pred_name]`` with ``pred_idx`` the line of ``relationships.txt``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch_geometric.data import Data

from or_synth.data.errors import DatasetFormatError
from or_synth.data.io import read_json
from or_synth.data.phases import PhaseTable
from or_synth.data.vocabulary import (
    NOT_A_PERSON,
    SPLIT_TAKES,
    UNKNOWN_ROLE,
    Vocabulary,
    canonical_role,
    is_human_class,
    main_action,
)

log = logging.getLogger(__name__)

VIRTUAL_INSTRUMENT = "instrument"
# 4D-OR's takes: every take has a split, so a take outside them would fail far from the file (a split lookup).
TAKES = tuple(sorted(take for takes in SPLIT_TAKES.values() for take in takes))


@dataclass(frozen=True)
class SceneGraphRecord:
    """One validated scan of 4D-OR.

    Attributes:
        take: take index (1..10 in 4D-OR).
        scan: the 6-digit scan id as stored (``"000010"``); not an image frame id.
        object_names: class name of each node, in node order (object key ``k`` is node ``k - 1``).
        roles: role of each node (an entry of ``vocabulary.ROLES``).
        triples: ``(subject_node, object_node, predicate_name)``, 0-based nodes, in file order.
    """

    take: int
    scan: str
    object_names: tuple[str, ...]
    roles: tuple[str, ...]
    triples: tuple[tuple[int, int, str], ...]

    @property
    def num_nodes(self) -> int:
        return len(self.object_names)

    @property
    def key(self) -> tuple[int, str]:
        return (self.take, self.scan)

    @property
    def predicates(self) -> set[str]:
        return {pred for _, _, pred in self.triples}

    def virtual_nodes(self) -> list[bool]:
        """4D-OR always lists a virtual ``instrument``; flag it when it takes part in no relation."""
        used = {node for sub, obj, _ in self.triples for node in (sub, obj)}
        return [
            name == VIRTUAL_INSTRUMENT and index not in used for index, name in enumerate(self.object_names)
        ]

    def to_json(self, vocabulary: Vocabulary | None = None) -> dict:
        """The record in 4D-OR's own JSON scan form (the inverse of :func:`parse_scan`).

        Humans whose role is unknown get no ``human_idx_to_name`` entry, which parses back to unknown.
        """
        vocabulary = vocabulary or Vocabulary()
        roles = {
            name: role
            for name, role in zip(self.object_names, self.roles, strict=True)
            if is_human_class(name) and role != UNKNOWN_ROLE
        }
        return {
            "take_idx": self.take,
            "scan": self.scan,
            "objects": {str(i + 1): name for i, name in enumerate(self.object_names)},
            "relationships": [[s + 1, o + 1, vocabulary.predicates.index(p), p] for s, o, p in self.triples],
            "human_idx_to_name": roles,
        }


@dataclass
class SceneGraphSet:
    """The records of one relationships file, plus what ``strict=False`` skipped (never dropped silently)."""

    file: Path
    records: list[SceneGraphRecord]
    skipped: list[DatasetFormatError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[SceneGraphRecord]:
        return iter(self.records)


def load_scene_graphs(
    path: str | Path,
    vocabulary: Vocabulary | None = None,
    *,
    strict: bool = True,
    takes: Iterable[int] | None = None,
) -> SceneGraphSet:
    """Parse and validate a 4D-OR ``relationships_{split}.json``.

    Args:
        path: the JSON file.
        vocabulary: ids to validate against; the 4D-OR defaults when None.
        strict: raise :class:`DatasetFormatError` on the first bad scan (default); when False, skip bad
            scans and list them in ``SceneGraphSet.skipped`` (a warning says how many).
        takes: keep only these takes (all when None).

    Returns:
        The records in file order.
    """
    path = Path(path)
    vocabulary = vocabulary or Vocabulary()
    scans = _read_scan_list(path)
    keep_takes = set(takes) if takes is not None else None
    records: list[SceneGraphRecord] = []
    skipped: list[DatasetFormatError] = []
    seen: dict[tuple[int, str], int] = {}
    for position, entry in enumerate(scans):
        try:
            record = parse_scan(entry, vocabulary, file=path, position=position)
            if record.key in seen:
                raise DatasetFormatError(
                    f"duplicate scan: entry {position} repeats entry {seen[record.key]}",
                    file=path,
                    take=record.take,
                    scan=record.scan,
                    field=f"scans[{position}]",
                )
            seen[record.key] = position
        except DatasetFormatError as error:
            if strict:
                raise
            skipped.append(error)
            continue
        if keep_takes is None or record.take in keep_takes:
            records.append(record)
    if skipped:
        log.warning("%s: skipped %d bad scan(s) (strict=false)", path, len(skipped))
    return SceneGraphSet(file=path, records=records, skipped=skipped)


def _read_scan_list(path: Path) -> list:
    document = read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("scans"), list):
        raise DatasetFormatError('expected a top-level object {"scans": [...]}', file=path, field="scans")
    return document["scans"]


def parse_scan(
    entry: object, vocabulary: Vocabulary, *, file: Path | str | None = None, position: int = 0
) -> SceneGraphRecord:
    """Validate one entry of ``scans`` and turn it into a :class:`SceneGraphRecord`."""
    where = {"file": file}
    if not isinstance(entry, dict):
        raise DatasetFormatError("scan entry is not an object", field=f"scans[{position}]", **where)
    take, scan = entry.get("take_idx"), entry.get("scan")
    if not isinstance(take, int) or isinstance(take, bool):
        raise DatasetFormatError(
            f"take_idx must be an integer, got {take!r}", field="take_idx", scan=_s(scan), **where
        )
    if take not in TAKES:
        raise DatasetFormatError(
            f"take_idx {take} is not a 4D-OR take ({TAKES[0]}..{TAKES[-1]})",
            take=take,
            scan=_s(scan),
            field="take_idx",
            **where,
        )
    if not isinstance(scan, str) or not scan.isdigit():
        raise DatasetFormatError(
            f"scan must be a digit string like '000010', got {scan!r}", take=take, field="scan", **where
        )
    where.update(take=take, scan=scan)

    objects = entry.get("objects")
    if not isinstance(objects, dict) or not objects:
        raise DatasetFormatError("objects must be a non-empty object", field="objects", **where)
    try:
        keys = sorted(int(k) for k in objects)
    except (TypeError, ValueError):
        raise DatasetFormatError(
            f"object keys must be integers '1'..'n', got {sorted(objects)}", field="objects", **where
        ) from None
    if keys != list(range(1, len(keys) + 1)):
        raise DatasetFormatError(
            f"object keys must be contiguous '1'..'{len(keys)}', got {keys}", field="objects", **where
        )
    names = []
    for key in range(1, len(keys) + 1):
        name = objects[str(key)]
        if name not in vocabulary.object_classes:
            raise DatasetFormatError(f"unknown object class {name!r}", field=f'objects["{key}"]', **where)
        names.append(name)

    role_table = entry.get("human_idx_to_name", {})
    if not isinstance(role_table, dict):
        raise DatasetFormatError("human_idx_to_name must be an object", field="human_idx_to_name", **where)
    roles = []
    for name in names:
        if name == "Patient":
            roles.append("Patient")
        elif is_human_class(name):
            role = canonical_role(role_table.get(name))
            if role not in vocabulary.roles or role in ("Patient", NOT_A_PERSON):
                raise DatasetFormatError(
                    f"unknown role {role_table.get(name)!r}", field=f'human_idx_to_name["{name}"]', **where
                )
            roles.append(role)
        else:
            roles.append(NOT_A_PERSON)

    relationships = entry.get("relationships", [])
    if not isinstance(relationships, list):
        raise DatasetFormatError("relationships must be a list", field="relationships", **where)
    triples = []
    pairs: dict[tuple[int, int], int] = {}
    for i, relation in enumerate(relationships):
        slot = f"relationships[{i}]"
        if not isinstance(relation, list) or len(relation) != 4:
            raise DatasetFormatError(
                f"expected [sub_id, obj_id, pred_idx, pred_name], got {relation!r}", field=slot, **where
            )
        sub_key, obj_key, pred_idx, pred_name = relation
        for column, key in ((0, sub_key), (1, obj_key)):
            if not isinstance(key, int) or isinstance(key, bool) or not 1 <= key <= len(names):
                raise DatasetFormatError(
                    f"names object id {key!r}, which is not in objects (1..{len(names)})",
                    field=f"{slot}[{column}]",
                    **where,
                )
        if pred_name not in vocabulary.predicates:
            raise DatasetFormatError(f"unknown predicate {pred_name!r}", field=f"{slot}[3]", **where)
        if pred_idx is not None and pred_idx != vocabulary.predicates.index(pred_name):
            raise DatasetFormatError(
                f"pred_idx {pred_idx!r} disagrees with {pred_name!r} "
                f"(index {vocabulary.predicates.index(pred_name)} in relationships.txt)",
                field=f"{slot}[2]",
                **where,
            )
        if sub_key == obj_key:
            raise DatasetFormatError("relationship links an object to itself", field=slot, **where)
        pair = (sub_key - 1, obj_key - 1)
        if pair in pairs:
            raise DatasetFormatError(
                f"second predicate for the same ordered pair (first at relationships[{pairs[pair]}])",
                field=slot,
                **where,
            )
        pairs[pair] = i
        triples.append((sub_key - 1, obj_key - 1, pred_name))
    return SceneGraphRecord(
        take=take, scan=scan, object_names=tuple(names), roles=tuple(roles), triples=tuple(triples)
    )


def _s(value: object) -> str | None:
    return value if isinstance(value, str) else None


def record_to_data(
    record: SceneGraphRecord,
    vocabulary: Vocabulary | None = None,
    *,
    phase: int = -1,
    dense: bool = False,
) -> Data:
    """A PyG graph of one scan.

    Node-level: ``node_class`` (N,) class ids, ``node_role`` (N,) role ids, ``node_is_virtual`` (N,) bool.
    Edge-level: ``edge_index`` (2, E) 0-based, ``edge_attr`` (E,) predicate ids (0..13).
    With ``dense=True`` also ``dense_edge_index`` (2, N(N-1)) over all ordered pairs and
    ``dense_edge_label`` (N(N-1),) with ``none`` (14) for unannotated pairs: the 4D-OR evaluation protocol.
    Graph-level (leading dim 1 so batches stack): ``take`` (1,), ``phase`` (1,) (-1 when unknown),
    ``main_action`` (1,), ``predicate_multi_hot`` (1, 14); ``scan`` is the scan-id string.
    """
    vocabulary = vocabulary or Vocabulary()
    n = record.num_nodes
    node_class = torch.tensor([vocabulary.class_id(x) for x in record.object_names], dtype=torch.long)
    node_role = torch.tensor([vocabulary.role_id(r) for r in record.roles], dtype=torch.long)
    if record.triples:
        edge_index = torch.tensor([[s, o] for s, o, _ in record.triples], dtype=torch.long).t()
        edge_attr = torch.tensor([vocabulary.predicate_id(p) for _, _, p in record.triples])
    else:
        edge_index = torch.empty((2, 0), dtype=torch.long)
        edge_attr = torch.empty((0,), dtype=torch.long)
    multi_hot = torch.zeros((1, vocabulary.num_predicates))
    multi_hot[0, edge_attr] = 1.0
    data = Data(
        edge_index=edge_index,
        edge_attr=edge_attr,
        node_class=node_class,
        node_role=node_role,
        node_is_virtual=torch.tensor(record.virtual_nodes(), dtype=torch.bool),
        num_nodes=n,
        take=torch.tensor([record.take]),
        scan=record.scan,
        phase=torch.tensor([phase]),
        main_action=torch.tensor([vocabulary.main_action_id(main_action(record.predicates))]),
        predicate_multi_hot=multi_hot,
    )
    if dense:
        data.dense_edge_index, data.dense_edge_label = dense_relation_labels(
            n, edge_index, edge_attr, vocabulary.none_index
        )
    return data


def dense_relation_labels(
    num_nodes: int, edge_index: torch.Tensor, edge_attr: torch.Tensor, none_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``num_nodes * (num_nodes - 1)`` ordered pairs and their labels, ``none_index`` where unannotated.

    Pairs are ordered row-major by (subject, object), self-pairs excluded (4D-OR
    ``data_preparation_utils.py`` L127-159).
    """
    grid = torch.full((num_nodes, num_nodes), none_index, dtype=torch.long)
    grid[edge_index[0], edge_index[1]] = edge_attr
    off_diagonal = ~torch.eye(num_nodes, dtype=torch.bool)
    pairs = off_diagonal.nonzero().t()  # (2, N(N-1)), row-major
    return pairs, grid[pairs[0], pairs[1]]


def records_to_data(
    records: Iterable[SceneGraphRecord],
    vocabulary: Vocabulary | None = None,
    *,
    phases: PhaseTable | None = None,
    dense: bool = False,
) -> list[Data]:
    """Convert many records, looking each scan's phase up in ``phases`` (-1 without phase files)."""
    vocabulary = vocabulary or Vocabulary()
    out = []
    for record in records:
        phase = phases.phase_id(record.take, record.scan) if phases is not None else -1
        out.append(record_to_data(record, vocabulary, phase=phase, dense=dense))
    return out
