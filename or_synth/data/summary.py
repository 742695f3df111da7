"""``python -m or_synth.data.summary PATH``: one JSON object of counts, to check a 4D-OR download.

PATH is a ``relationships_{split}.json`` file or a dataset root (every relationships file in it is read).
Phase counts appear when phase files sit beside the JSON (``phases/``) or under the dataset root.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from or_synth.data.errors import DatasetFormatError, UserError
from or_synth.data.phases import PhaseTable
from or_synth.data.scene_graph import SceneGraphRecord, load_scene_graphs
from or_synth.data.vocabulary import PHASES, SPLIT_TAKES, Vocabulary, main_action


def summarize(path: str | Path, *, strict: bool = True) -> dict:
    """Counts over the scene graphs at ``path`` (a relationships JSON or a dataset root)."""
    path = Path(path)
    if path.is_dir():
        root = path
        files = sorted(
            f
            for folder in (path, path / "data")
            if folder.is_dir()
            for f in folder.glob("relationships_*.json")
            if f.stem.removeprefix("relationships_") in SPLIT_TAKES
        )
        if not files:
            raise DatasetFormatError("no relationships_{train,validation,test}.json here", file=path)
    elif path.is_file():
        root, files = path.parent, [path]
    else:
        raise DatasetFormatError("no such file or directory", file=path)
    vocabulary = Vocabulary.load(root)
    phases = PhaseTable.load(root)

    records: list[SceneGraphRecord] = []
    skipped: list[dict] = []
    for file in files:
        scene_graphs = load_scene_graphs(file, vocabulary, strict=strict)
        records.extend(scene_graphs.records)
        skipped.extend(error.as_dict() for error in scene_graphs.skipped)

    predicates, classes, roles, actions, phase_counts = Counter(), Counter(), Counter(), Counter(), Counter()
    objects_per_scan = Counter()
    for record in records:
        predicates.update(p for _, _, p in record.triples)
        classes.update(record.object_names)
        roles.update(
            r
            for r, name in zip(record.roles, record.object_names, strict=True)
            if name == "Patient" or name.startswith("human_")
        )
        actions[main_action(record.predicates)] += 1
        objects_per_scan[record.num_nodes] += 1
        if record.take in phases.ranges:
            phase_counts[PHASES[phases.phase_id(record.take, record.scan)]] += 1

    return {
        "files": [str(f) for f in files],
        "scans": len(records),
        "takes": {str(t): n for t, n in sorted(Counter(r.take for r in records).items())},
        "triples": sum(len(r.triples) for r in records),
        "scans_without_relations": sum(1 for r in records if not r.triples),
        "objects_per_scan": {str(k): v for k, v in sorted(objects_per_scan.items())},
        "predicates": _ordered(predicates, vocabulary.predicates),
        "object_classes": _ordered(classes, vocabulary.object_classes),
        "roles": _ordered(roles, vocabulary.roles),
        "main_actions": _ordered(actions, vocabulary.main_actions),
        "phases": _ordered(phase_counts, PHASES) if phase_counts else None,
        "phase_takes": [t for t in phases.takes if any(r.take == t for r in records)],
        "skipped": skipped,
    }


def _ordered(counts: Counter, names: tuple[str, ...]) -> dict[str, int]:
    """Counts in vocabulary order, zeros included, so two summaries line up field by field."""
    return {name: counts.get(name, 0) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m or_synth.data.summary", description=__doc__.split("\n")[0]
    )
    parser.add_argument("path", help="relationships_{split}.json or a dataset root")
    parser.add_argument(
        "--no-strict",
        dest="strict",
        action="store_false",
        help="skip bad scans (listed under 'skipped') instead of stopping at the first",
    )
    parser.add_argument("--indent", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.path, strict=args.strict)
    except (UserError, OSError) as error:  # the data layer's user errors, and an unreadable path
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=args.indent or None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
