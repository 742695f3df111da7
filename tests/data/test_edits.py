"""Scene-graph edits: each kind changes exactly what it says, reports the nodes whose regions change, and an
edit that makes no sense is an error naming the edit."""

from __future__ import annotations

import pytest

from or_synth.data.edits import GraphEditError, apply_edit, parse_edit
from or_synth.data.scene_graph import parse_scan
from or_synth.data.vocabulary import Vocabulary
from tests.helpers import small_scene

# nodes: 0 Patient, 1 human_0 (head-surgeon), 2 human_1 (assistant-surgeon), 3 instrument, 4 instrument_table,
# 5 operating_table


@pytest.fixture
def record():
    return parse_scan(small_scene(4, "000001"), Vocabulary())


def test_predicate_change_keeps_everything_else(record):
    result = apply_edit(record, "predicate head-surgeon Patient Sawing")
    assert (1, 0, "Sawing") in result.after.triples and (1, 0, "Drilling") not in result.after.triples
    assert (
        len(result.after.triples) == len(record.triples) and result.after.object_names == record.object_names
    )
    assert result.changed_nodes == {0, 1} and result.before is record


def test_role_swap_remove_and_add(record):
    role = apply_edit(record, "role 2 circulating-nurse")
    assert role.after.roles[2] == "circulating-nurse" and role.changed_nodes == {2}

    swapped = apply_edit(record, "swap instrument human_1")
    assert (2, 3, "CloseTo") in swapped.after.triples and (3, 2, "CloseTo") not in swapped.after.triples
    assert swapped.changed_nodes == {2, 3}

    removed = apply_edit(record, "remove assistant-surgeon")
    assert removed.after.object_names == (
        "Patient",
        "human_0",
        "instrument",
        "instrument_table",
        "operating_table",
    )
    assert removed.changed_nodes == {2}
    assert all(
        2 not in (s, o) or removed.after.object_names[2] == "instrument" for s, o, _ in removed.after.triples
    )
    assert (2, 3, "Holding") not in removed.after.triples  # the assistant's relation left with it
    assert (0, 4, "LyingOn") in removed.after.triples  # later nodes moved up by one

    added = apply_edit(record, "add human_2:anaesthetist CloseTo Patient")
    assert added.after.object_names[-1] == "human_2" and added.after.roles[-1] == "anaesthetist"
    assert (6, 0, "CloseTo") in added.after.triples and added.changed_nodes == frozenset()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("predicate head-surgeon Patient Juggling", "unknown predicate 'Juggling'"),
        ("predicate 9 Patient Sawing", "no node 9"),
        ("predicate Patient human_1 Sawing", "no relation Patient -> assistant-surgeon"),
        ("role operating_table head-surgeon", "is not a person"),
        ("role 1 pilot", "unknown role 'pilot'"),
        ("remove human_9", "no node named 'human_9'"),
        ("add Patient", "already has a Patient"),
        ("paint Patient blue", "start with one of"),
        ("swap Patient", "expected `swap SUBJECT OBJECT`"),
    ],
)
def test_nonsense_edits_are_clear_errors_naming_the_edit(record, edit, message):
    with pytest.raises(GraphEditError) as caught:
        apply_edit(record, edit)
    assert f"edit {edit!r}" in str(caught.value) and message in str(caught.value)
    parse_errors = ("paint", "swap Patient")  # refused before any graph is looked at
    assert ("take 4 scan 000001" in str(caught.value)) != edit.startswith(parse_errors)


def test_parse_edit_keeps_the_text():
    edit = parse_edit("swap head-surgeon Patient")
    assert (
        edit.kind == "swap"
        and edit.args == ("head-surgeon", "Patient")
        and edit.text == "swap head-surgeon Patient"
    )
