"""Surgery phases: ``phase_to_frames_{take}.json`` maps each of the 8 phases to an inclusive scan range."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

from or_synth.data.errors import DatasetFormatError
from or_synth.data.io import read_json
from or_synth.data.vocabulary import PHASES

# Where phase files live under a dataset root: ours (and ../shared) use phases/; the 4D-OR code repo uses
# surgery_phase_recognition/phases_to_frames/.
PHASE_DIRS = ("phases", "surgery_phase_recognition/phases_to_frames")
_PHASE_FILE = re.compile(r"phase_to_frames_(\d+)\.json$")


class PhaseTable:
    """Phase lookup for the takes that have a phase file.

    Args:
        ranges: take -> list of ``(phase_id, start, end)`` with inclusive scan ranges.
        files: take -> the file it came from (for error messages).
    """

    def __init__(self, ranges: dict[int, list[tuple[int, int, int]]], files: dict[int, Path]) -> None:
        self.ranges = ranges
        self.files = files

    @classmethod
    def load(cls, root: str | Path) -> PhaseTable:
        """Read every ``phase_to_frames_{take}.json`` under ``root`` (or ``root/phases``, or 4D-OR's path)."""
        root = Path(root)
        ranges, files = {}, {}
        for folder in (root, *(root / d for d in PHASE_DIRS)):
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                match = _PHASE_FILE.match(path.name)
                if match and int(match.group(1)) not in ranges:
                    take = int(match.group(1))
                    ranges[take] = read_phase_file(path, take)
                    files[take] = path
        return cls(ranges, files)

    @property
    def takes(self) -> list[int]:
        return sorted(self.ranges)

    def phase_id(self, take: int, scan: str) -> int:
        """Phase id (index in ``PHASES``) of a scan; -1 when the take has no phase file.

        Raises:
            DatasetFormatError: the take has a phase file but no range contains the scan.
        """
        if take not in self.ranges:
            return -1
        index = int(scan)
        for phase, start, end in self.ranges[take]:
            if start <= index <= end:
                return phase
        raise DatasetFormatError(
            f"no phase range contains scan index {index}",
            file=self.files[take],
            take=take,
            scan=scan,
            field="phase",
        )


def read_phase_file(path: Path, take: int) -> list[tuple[int, int, int]]:
    """Parse and validate one phase file: known phase names, ``[start, end]`` integer ranges, no overlap."""
    table = read_json(path, what="phase file", take=take)
    if not isinstance(table, dict):
        raise DatasetFormatError("expected an object {phase: [start, end]}", file=path, take=take)
    ranges = []
    for name, span in table.items():
        if name not in PHASES:
            raise DatasetFormatError(
                f"unknown phase {name!r}; known: {', '.join(PHASES)}", file=path, take=take, field=name
            )
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(isinstance(v, int) for v in span)
            or span[0] > span[1]
        ):
            raise DatasetFormatError(
                f"expected an inclusive [start, end] range, got {span!r}", file=path, take=take, field=name
            )
        ranges.append((PHASES.index(name), span[0], span[1]))
    ranges.sort(key=lambda r: r[1])
    for (_, _, prev_end), (phase, start, _) in pairwise(ranges):
        if start <= prev_end:
            raise DatasetFormatError(
                f"range starting at {start} overlaps the previous one",
                file=path,
                take=take,
                field=PHASES[phase],
            )
    return ranges
