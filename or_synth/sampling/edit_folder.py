"""One edit's folder (``out/<take>_<scan>_<edit>/``): the files ``or_synth.edit`` writes there, the settings its
``edit.json`` records (``job``: what decides the images), and whether a re-run may write into it.

A re-run with the same settings finds the folder done (every file whole) or draws it again to the same bytes; one
with other settings is refused unless ``overwrite=true``, which deletes the earlier edit's own files first (never a
file of another name). ``edit.json`` is written last, so a folder without it is an edit that stopped half-way: its
files are the command's own, by name, and are replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

from or_synth.data import UserError
from or_synth.data.vocabulary import CAMERAS
from or_synth.sampling.files import image_complete

RECORD = "edit.json"
IMAGES = (
    "before",
    "after",
    "full",
    "mask",
    "null",
)  # {name}_cam{c}.png; mask, null only where a region was regenerated
SHARED = ("pair.png", "graphs.json")


class EditRefused(UserError, RuntimeError):
    """The edit's folder holds an edit of other settings (or a damaged record); nothing was touched."""


def edit_files(folder: Path, cameras=CAMERAS) -> list[Path]:
    """The files an edit of ``cameras`` writes in ``folder``, its record last."""
    images = [folder / f"{name}_cam{camera}.png" for camera in cameras for name in IMAGES]
    return [*images, *(folder / name for name in SHARED), folder / RECORD]


def read_record(folder: Path) -> dict | None:
    """``edit.json``'s content, or None without one.

    Raises:
        ValueError: the file is there but not a JSON object.
    """
    path = folder / RECORD
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(str(error)) from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def check_folder(folder: Path, job: dict, overwrite: bool) -> dict | None:
    """What a run with settings ``job`` may do with ``folder`` (reads only).

    Returns:
        The earlier ``edit.json`` when the folder already holds this very edit, whole (nothing to draw); else
        None: the run draws it, after :func:`clear_folder`.

    Raises:
        EditRefused: an edit of other settings, or a damaged ``edit.json``, without ``overwrite``.
    """
    if folder.exists() and not folder.is_dir():
        raise EditRefused(
            f"{folder} is a file, where the edit writes its folder; move it away or choose another out="
        )
    try:
        record = read_record(folder)
    except ValueError as error:
        if overwrite:
            return None
        raise EditRefused(
            f"{folder / RECORD} is damaged ({error}): the edit's settings are unknown; nothing was changed. "
            "Pass overwrite=true to draw it again (only the edit's own files are replaced), or choose "
            "another out="
        ) from None
    if record is None:  # a new edit, or one that stopped before its record
        return None
    earlier = record.get("job")
    if earlier == job:
        return record if edit_whole(folder, job["cameras"]) else None  # cut short: drawn again, same bytes
    if overwrite:
        return None
    if isinstance(earlier, dict):
        reason = f"other settings ({', '.join(sorted(k for k in job if earlier.get(k) != job[k]))})"
    else:
        reason = "settings its edit.json does not record (an older version's)"
    raise EditRefused(
        f"{folder} holds an edit drawn with {reason}; nothing was changed. Pass overwrite=true to replace it "
        "(only the edit's own files are deleted), or choose another out="
    )


def edit_whole(folder: Path, cameras) -> bool:
    """Whether every image of the edit's ``cameras``, its pair figure and its graphs are whole in ``folder``."""
    images = [folder / f"{name}_cam{camera}.png" for camera in cameras for name in IMAGES[:3]]
    # where a region was regenerated, its null edit too (an edit drawn before the null edit existed is redrawn)
    images += [
        folder / f"null_cam{camera}.png" for camera in cameras if (folder / f"mask_cam{camera}.png").is_file()
    ]
    return (
        all(image_complete(path) for path in [*images, folder / "pair.png"])
        and (folder / SHARED[1]).is_file()
    )


def clear_folder(folder: Path) -> None:
    """Delete the edit's own files (by name, every camera's, the record last), so an earlier edit's cameras never
    mix with this one's; a file of another name stays."""
    for path in edit_files(folder):
        path.unlink(missing_ok=True)
