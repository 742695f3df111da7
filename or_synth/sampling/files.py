"""What the sampling commands need of the files they write: JSON without NaN, and the check that a finished image
is really there before a resume counts it as done.

A resume must not trust existence: a crash, a full disk or a copy cut short leaves a file of the right name and
the wrong content. Decoding every finished image would make resuming a large job slow, so :func:`image_complete`
first reads only the file's ends (the format's signature, a PNG's declared size, the end marker: the last bytes
PIL writes) and decodes only a file that this cheap check cannot clear.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image

from or_synth.data.io import atomic_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: length 0, type, CRC
JPEG_START, JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"  # SOI (+ the next marker's 0xff), EOI


def write_json(path: str | Path, document, indent: int | None = None) -> None:
    """``document`` as JSON (plus a final newline) written atomically, refusing NaN and infinity (which JSON has
    no words for: a reader would fail on them, or read them as numbers that are not).

    Raises:
        ValueError: a non-finite number in ``document``, named by its key; nothing is written.
    """
    try:
        text = json.dumps(document, indent=indent, allow_nan=False) + "\n"
    except ValueError:
        raise ValueError(f"{path}: {', '.join(non_finite(document)) or 'a value'} must be finite") from None
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def non_finite(document, where: str = "") -> list[str]:
    """The keys (dotted paths) of the NaN and infinite numbers in ``document``."""
    if isinstance(document, float) and not math.isfinite(document):
        return [where or "value"]
    if isinstance(document, dict):
        return [
            bad for key, value in document.items() for bad in non_finite(value, f"{where}.{key}".lstrip("."))
        ]
    if isinstance(document, list | tuple):
        return [bad for i, value in enumerate(document) for bad in non_finite(value, f"{where}[{i}]")]
    return []


def image_complete(path: str | Path, size: tuple[int, int] | None = None) -> bool:
    """Whether ``path`` is a whole PNG or JPEG (by its suffix), ``size`` (H, W) when given.

    The cheap check reads 33 bytes at the start and 12 at the end: the signature, a PNG's IHDR size, the end
    marker. A file that passes it is counted as whole without decoding (a bit flipped in the middle of a file
    passes; a cut-off, emptied or foreign file does not); one that fails it is decoded to decide.
    """
    path = Path(path)
    try:
        length = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(33)
            handle.seek(max(length - 12, 0))
            tail = handle.read(12)
    except OSError:  # missing, a folder, unreadable
        return False
    png = path.suffix.lower() == ".png"
    if png and head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        declared = (int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"))  # (H, W)
        if size is not None and declared != tuple(size):
            return False  # not the image this job draws, whatever else it is
        if tail == PNG_END:
            return True
    elif not png and head.startswith(JPEG_START) and tail.endswith(JPEG_END):
        return True
    return decodes(path, size)


def decodes(path: Path, size: tuple[int, int] | None = None) -> bool:
    """Whether PIL decodes the whole of ``path`` (and it is ``size`` (H, W) when given)."""
    try:
        with Image.open(path) as image:
            image.load()
            return size is None or (image.height, image.width) == tuple(size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
