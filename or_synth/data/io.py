"""Atomic file writes, shared by every part that writes files (dataset caches, renders, checkpoints)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from or_synth.data.errors import DatasetFormatError

# The checkout this package runs from (or the site-packages folder of an install, where no path of a user's
# outputs lies beneath it).
REPO_ROOT = Path(__file__).resolve().parents[2]


def file_sha256(path: str | Path) -> str:
    """Full SHA-256 hex digest of a file, read in 1 MiB blocks (weights files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def repo_relative(text: str, root: str | Path | None = None) -> str:
    """``text`` with every absolute path inside ``root`` written relative to it (``root`` itself as ``.``), so a
    committed report or result says ``runs/classifier/x`` instead of the building machine's ``/home/.../runs/...``.
    Paths outside ``root`` stay as they are."""
    root = str(Path(REPO_ROOT if root is None else root).resolve()).rstrip("/")
    return text.replace(root + "/", "").replace(root, ".")


def check_output_folder(path: str | Path, option: str = "out") -> Path:
    """``path`` can hold a command's output: a folder, or a path where one can be made, on a writable file system.
    Checked before any work, so a command never computes for minutes and then fails to write. Creates nothing:
    writability is probed with a temporary file in the nearest existing folder (permission bits say nothing
    for root, and nothing about a read-only mount).

    Raises:
        NotADirectoryError: ``path`` (or a parent of it) is a file.
        PermissionError: nothing can be written there.
    """
    path = Path(path)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise NotADirectoryError(f"{option}={path} {where}; give a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".or_synth_write_check."):
            pass
    except OSError as error:
        raise PermissionError(
            f"{option}={path}: cannot write in {existing} ({error.strerror or error})"
        ) from None
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write to it, and on success it replaces ``path``.

    A reader never sees half a file, and a crash or exception leaves the old file (if any) and no temporary
    behind. Works with any writer that takes a path (``torch.save``, ``PIL.Image.save``, safetensors).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def finite_or_null(value):
    """``value`` with every NaN or infinite float replaced by None (JSON null): a mean over nothing, an F1 with no
    support, is undefined, and a bare ``NaN`` is not JSON (many readers refuse the whole file)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def json_text(document, indent: int | None = None, **kwargs) -> str:
    """JSON every parser reads: undefined numbers written as null (:func:`finite_or_null`), and
    ``allow_nan=False`` so nothing else non-finite can slip through."""
    return json.dumps(finite_or_null(document), indent=indent, allow_nan=False, **kwargs)


def atomic_write_json(path: str | Path, document, indent: int | None = None) -> None:
    """Write ``document`` as JSON (plus a final newline) atomically, non-finite numbers as null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(document, indent=indent) + "\n", encoding="utf-8")


def read_json(path: str | Path, *, what: str = "file", take: int | None = None):
    """Parse a JSON file; a missing, unreadable or malformed file is a :class:`DatasetFormatError` that names
    it (and the take), with the line and column of a syntax error.

    Args:
        what: how the message calls the file when it is missing, e.g. "frame list".
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetFormatError(f"{what} not found", file=path, take=take) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"cannot read {what}: {exc}", file=path, take=take) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=path, take=take
        ) from None
