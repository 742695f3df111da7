"""Atomic file writes, shared by every part that writes files (dataset caches, renders, checkpoints)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


def atomic_write_json(path: str | Path, document, indent: int | None = None) -> None:
    """Write ``document`` as JSON (plus a final newline) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=indent) + "\n", encoding="utf-8")
