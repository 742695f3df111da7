"""The image manifest, ``manifest.jsonl``: one JSON line per generated image, in one line shape, written by the
sampling commands (``or_synth.sample``, ``or_synth.export``) and read by everything that scores or shows their
images (the evaluation suite, the reports).

A line (:class:`ManifestLine`) names the image and the graph it was drawn from, the camera, the seed, where its
layout came from (``layout``: ``absent``, ``given``, ``rendered`` or ``predicted``) and the settings of the job.
Paths are relative to the manifest's folder when the file lies inside it (the images, an export's own
relationships files), else as the command was given them.

Older manifests are read by an explicit conversion (:meth:`ManifestLine.from_json`): ``source`` was the graphs
file in sample's lines and a dict in the export's, whose ``layout`` used the option names (``render``, ``masks``,
``none``), so an existing samples folder still resumes and scores.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from or_synth.data.errors import UserError
from or_synth.data.io import atomic_path
from or_synth.data.vocabulary import SPLIT_TAKES

MANIFEST = "manifest.jsonl"
# layout= option -> what a line records as its "layout": where the instance masks came from.
LAYOUT_SOURCES = {"none": "absent", "masks": "given", "render": "rendered", "predicted": "predicted"}
REQUIRED = ("image", "take", "scan", "camera")
# The fields that describe the job rather than the one image (the same on every line of one job).
SETTINGS = (
    "graphs",
    "graphs_hash",
    "layout",
    "sampler",
    "steps",
    "guidance_scale",
    "layout_guidance_scale",
    "base_seed",
    "pipeline",
    "pipeline_hash",
    "height",
    "width",
    "layout_renderer",
    "layout_predictor",
    "layout_predictor_hash",
    "control",
)
# control= (python -m or_synth.sample): how the drawn graph relates to the image's scan and layout.
CONTROLS = ("none", "null_graph", "conflict", "reconstruction")


class ManifestError(UserError, ValueError):
    """A manifest line that cannot be read; the message names the file, the line and the field."""


@dataclass(frozen=True)
class ManifestLine:
    """One generated image.

    Attributes:
        image: the image file, relative to the manifest's folder.
        take, scan: the scan whose graph the image shows (for an export, the exported scan).
        camera: the view, 1..6.
        graphs: the relationships file holding that graph (relative to the manifest's folder when inside it).
        sample: the image's index among the samples of its (graph, camera).
        seed: the image's own seed.
        layout: ``absent``, ``given`` (the dataset's masks), ``rendered`` (the renderer's) or ``predicted``.
        layout_image: the label map the image was drawn from, when it was saved (relative like ``image``).
        source_scan: an export's source graph ``{"graphs", "take", "scan", "copy"}``; None for samples.
        control: ``none``; ``null_graph`` (drawn from the encoder's null graph with the scan's layout),
            ``conflict`` (the scan's layout, the graph of scan ``graph_scan``) or ``reconstruction`` (the scan's
            REAL image through the pipeline's autoencoder, no denoiser): the evidence protocol's controls.
        graph_scan: ``take/scan`` of the graph the image was drawn from, where it is not the image's own scan
            (``conflict``).
        The rest are the job's settings (:data:`SETTINGS`); ``layout_renderer`` only with ``rendered``,
        ``layout_predictor`` and its hash only with ``predicted``.
    """

    image: str
    take: int
    scan: str
    camera: int
    graphs: str | None = None
    sample: int = 0
    seed: int | None = None
    layout: str | None = None
    sampler: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    layout_guidance_scale: float | None = None
    base_seed: int | None = None
    pipeline: str | None = None
    pipeline_hash: str | None = None
    graphs_hash: str | None = None
    height: int | None = None
    width: int | None = None
    layout_renderer: int | None = None
    layout_predictor: str | None = None
    layout_predictor_hash: str | None = None
    layout_image: str | None = None
    source_scan: dict | None = None
    control: str = "none"
    graph_scan: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        """The line as written: JSON without NaN or infinity (which JSON has no words for), plus a newline."""
        try:
            return json.dumps(self.to_json(), allow_nan=False) + "\n"
        except ValueError:
            bad = [k for k, v in self.to_json().items() if isinstance(v, float) and not math.isfinite(v)]
            raise ValueError(
                f"manifest line of {self.image}: {', '.join(bad)} must be finite numbers"
            ) from None

    def settings(self) -> dict:
        """The job's settings this line carries (:data:`SETTINGS`)."""
        return {key: getattr(self, key) for key in SETTINGS}

    def graphs_file(self, folder: str | Path) -> Path | None:
        """The relationships file of the line's graph: relative to the manifest's ``folder`` when it lies there,
        else as written (absolute, or relative to the working directory)."""
        if not self.graphs:
            return None
        path = Path(self.graphs)
        inside = Path(folder) / path
        return inside if not path.is_absolute() and inside.exists() else path

    @classmethod
    def from_json(cls, raw: Mapping) -> ManifestLine:
        """A line from its JSON object, older shapes converted (:func:`convert_older_shape`).

        Raises:
            ManifestError: a required field is missing or not of its type (the message names the field).
        """
        raw = convert_older_shape(raw)
        missing = [key for key in REQUIRED if key not in raw]
        if missing:
            raise ManifestError(f"field {missing[0]!r} is missing")
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in raw.items() if key in known}
        for key, kind, what in (
            ("take", int, "a number"),
            ("camera", int, "a number"),
            ("scan", str, "text"),
        ):
            try:
                values[key] = kind(values[key])
            except (TypeError, ValueError):
                raise ManifestError(f"field {key!r} is not {what}: {values[key]!r}") from None
        return cls(**values)


def convert_older_shape(raw: Mapping) -> dict:
    """The current line shape of a line written before it (unchanged when it is already current).

    Before one shape, ``source`` was the graphs file in ``or_synth.sample``'s lines (with ``source_hash`` its
    hash) and the source scan in ``or_synth.generate``'s, whose graph lives in the export's own
    ``relationships_{split}.json`` and whose ``layout`` said ``render`` / ``masks`` / ``none``.
    """
    line = dict(raw)
    source = line.pop("source", None)
    if "graphs" not in line and isinstance(source, str):
        line["graphs"] = source
        line.setdefault("graphs_hash", line.pop("source_hash", None))
    elif "graphs" not in line and isinstance(source, Mapping):
        split = next((s for s, takes in SPLIT_TAKES.items() if line.get("take") in takes), None)
        line["graphs"] = f"relationships_{split}.json" if split else None
        line["source_scan"] = dict(source)
    if line.get("control") is None:  # before the controls existed every image was drawn from its own graph
        line["control"] = "none"
    if line.get("layout") in LAYOUT_SOURCES:  # the export's option names
        line["layout"] = LAYOUT_SOURCES[line["layout"]]
    return line


@dataclass
class ManifestContents:
    """What :func:`read_manifest` found.

    Attributes:
        lines: the readable lines, in file order.
        damaged: lines were dropped (``tolerant``: not JSON, not a manifest line, or a last line cut off by a
            crash), so the file needs rewriting before lines are appended to it.
        older: some lines are in an older shape (rewriting the file brings them to the current one).
        dropped: (``tolerant``) the numbers of the lines dropped, the last one included when it was cut off.
        cut: the last line has no newline: a crash in the middle of an append.
        lines_read: the number of the file's last line.
    """

    lines: list[ManifestLine]
    damaged: bool = False
    older: bool = False
    dropped: list[int] = field(default_factory=list)
    cut: bool = False
    lines_read: int = 0

    def garbled(self) -> list[int]:
        """The dropped lines that no crash explains (a crash cuts off only the last line)."""
        return [n for n in self.dropped if not (self.cut and n == self.lines_read)]


def read_manifest(path: str | Path, *, tolerant: bool = False) -> ManifestContents:
    """The lines of the manifest file ``path`` (blank lines skipped).

    Args:
        tolerant: drop unreadable lines (and say so in ``damaged``) instead of raising; a job resuming its own
            folder redraws what they named.

    Raises:
        ManifestError: (not ``tolerant``) a line is not JSON or lacks a field; names the file and the line.
    """
    path = Path(path)
    raw = path.read_bytes()
    # A last line without its newline was cut off by a crash.
    cut = bool(raw) and not raw.endswith(b"\n")
    contents = ManifestContents([], damaged=cut, cut=cut)
    for number, text in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        contents.lines_read = number
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            if not isinstance(line, dict):
                raise ManifestError("not a JSON object")
            contents.lines.append(ManifestLine.from_json(line))
        except (json.JSONDecodeError, ManifestError) as error:
            if not tolerant:
                reason = f"not JSON ({error.msg})" if isinstance(error, json.JSONDecodeError) else str(error)
                raise ManifestError(f"{path}, line {number}: {reason}") from None
            contents.damaged = True
            contents.dropped.append(number)
            continue
        contents.older = contents.older or "graphs" not in line
    return contents


def first_line(path: str | Path | None) -> ManifestLine | None:
    """The first readable line of a manifest (what describes its job), or None without a file or a line."""
    if path is None or not Path(path).is_file():
        return None
    lines = read_manifest(path, tolerant=True).lines
    return lines[0] if lines else None


def append_lines(path: str | Path, lines: Iterable[ManifestLine]) -> None:
    """Append ``lines`` and flush them to disk (a crash after this keeps them)."""
    texts = [line.to_text() for line in lines]  # all serialised first: a bad value writes nothing
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.writelines(texts)
        handle.flush()
        os.fsync(handle.fileno())


def write_manifest(path: str | Path, lines: Iterable[ManifestLine]) -> None:
    """Replace the manifest with ``lines`` atomically (a reader sees the old file or the new one)."""
    texts = [line.to_text() for line in lines]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(texts), encoding="utf-8")


def path_in_folder(path: str | Path, folder: str | Path) -> str:
    """``path`` relative to ``folder`` when it lies inside it (so the folder can move), else as given."""
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return str(path)
