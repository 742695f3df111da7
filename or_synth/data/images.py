"""Per-camera colour images of a scan, resolved through ``timestamp_to_pcd_and_frames_list.json``.

4D-OR's image frame ids are not scan ids (maintainer, egeozsoy/4D-OR#10): entry ``int(scan)`` of the
take's frame list holds ``color_{c}`` frame ids, used verbatim in
``export_holistic_take{T}_processed/colorimage/camera0{c}_colorimage-{id}.jpg``
(``../shared/docs/4dor_format.md`` §1.1).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from or_synth.data.errors import DatasetFormatError
from or_synth.data.io import atomic_path, read_json

FRAME_LIST = "timestamp_to_pcd_and_frames_list.json"


def take_dir(root: Path, take: int) -> Path:
    return root / f"export_holistic_take{take}_processed"


def color_image_path(root: Path, take: int, camera: int, frame_id: str) -> Path:
    return take_dir(root, take) / "colorimage" / f"camera0{camera}_colorimage-{frame_id}.jpg"


class FrameIndex:
    """The frame list of one take: scan index -> per-camera colour frame ids."""

    def __init__(self, root: str | Path, take: int) -> None:
        self.root = Path(root)
        self.take = take
        self.file = take_dir(self.root, take) / FRAME_LIST
        entries = read_json(self.file, what="frame list", take=take)
        if not isinstance(entries, list):
            raise DatasetFormatError("expected a list of [key, channels] entries", file=self.file, take=take)
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def frame_id(self, scan: str, camera: int) -> str:
        """The colour frame id of ``camera`` for ``scan``, exactly as stored."""
        index = int(scan)
        where = {"file": self.file, "take": self.take, "scan": scan}
        if not 0 <= index < len(self.entries):
            raise DatasetFormatError(
                f"scan index {index} is beyond the frame list ({len(self.entries)} entries)",
                field=f"[{index}]",
                **where,
            )
        entry = self.entries[index]
        field = f"[{index}][1].color_{camera}"
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
            raise DatasetFormatError("expected [key, {channels}]", field=f"[{index}]", **where)
        frame = entry[1].get(f"color_{camera}")
        if frame is None:
            raise DatasetFormatError(f"no colour frame for camera {camera}", field=field, **where)
        frame = str(frame)
        # A frame id is a file-name part: one that reaches outside the take folder is refused, not followed.
        if not frame or "/" in frame or "\\" in frame or ".." in frame or "\x00" in frame:
            raise DatasetFormatError(
                f"frame id {frame!r} would escape the dataset root", field=field, **where
            )
        return frame

    def image_path(self, scan: str, camera: int) -> Path:
        path = color_image_path(self.root, self.take, camera, self.frame_id(scan, camera))
        # Defence in depth against symlinked take folders or odd ids: the resolved path must stay in root.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise DatasetFormatError(
                f"image path {path} resolves outside the dataset root",
                file=self.file,
                take=self.take,
                scan=scan,
                field=f"color_{camera}",
            )
        return path


# Draft-mode decoding only where the stored image is at least this many times the size asked for (real 4D-OR at
# 256 px: 6x); the rendered datasets (2x) keep their full decode, so their recorded numbers stay as they were.
DRAFT_MIN_REDUCTION = 4


@lru_cache(maxsize=64)
def _cached_index(root: str, take: int) -> FrameIndex:
    return FrameIndex(root, take)


def frame_index(root: str | Path, take: int) -> FrameIndex:
    """A take's :class:`FrameIndex`, read once per process."""
    return _cached_index(str(Path(root)), take)


def read_image(
    path: Path,
    size: tuple[int, int] | None = None,
    *,
    take: int | None = None,
    scan: str | None = None,
    camera: int | None = None,
) -> torch.Tensor:
    """Read an RGB image as ``uint8`` (3, H, W), resized (antialiased bilinear) to ``size = (H, W)``.

    Raises:
        DatasetFormatError: naming the file, take, scan and camera when the image is missing or unreadable.
    """
    where = {"file": path, "take": take, "scan": scan, "field": f"color_{camera}" if camera else None}
    # Pillow decodes (torchvision's own image io is deprecated since 0.29); torchvision resizes.
    try:
        with Image.open(path) as handle:
            if (
                size is not None
                and handle.format == "JPEG"
                and min(handle.width / size[1], handle.height / size[0]) >= DRAFT_MIN_REDUCTION
            ):
                # JPEG draft mode decodes at 1/2..1/8 scale in the DCT (still at least ``size``): a 2048 x 1536
                # 4D-OR image read for 256 px costs a fraction of a full decode (benchmarks/loader.py).
                handle.draft("RGB", (size[1], size[0]))
            image = torch.from_numpy(np.asarray(handle.convert("RGB")).copy()).permute(2, 0, 1)
    except FileNotFoundError:
        raise DatasetFormatError("image file is missing", **where) from None
    except (PermissionError, IsADirectoryError) as exc:
        raise DatasetFormatError(f"image file cannot be read ({exc.strerror})", **where) from None
    # A truncated or corrupt JPEG is an OSError from the decoder; a hostile one may be a decompression bomb.
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetFormatError(f"image cannot be decoded: {exc}", **where) from exc
    if size is not None and tuple(image.shape[-2:]) != tuple(size):
        image = F.resize(image, list(size), antialias=True)
    return image


class ResizedImageCache:
    """Colour images at the size training reads them, written once under ``folder`` (PNG, lossless) so that an
    epoch never decodes a full-size JPEG twice.

    An entry's name hashes the source's resolved path, byte size and modification time and the target size:
    a changed or replaced image gets a new entry, so a stale one is never read.
    """

    VERSION = 1  # part of the key: bump when the decode or resize changes

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def entry(self, path: Path, size: tuple[int, int]) -> Path:
        stat = Path(path).stat()
        key = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size[0]}x{size[1]}|{self.VERSION}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.png"

    def read(self, path: Path, size: tuple[int, int], **where) -> torch.Tensor:
        """(3, H, W) uint8: the cached entry, or the source decoded, resized and cached."""
        try:
            entry = self.entry(path, size)
        except FileNotFoundError:
            return read_image(path, size, **where)  # the reader's own error, naming file, take, scan, camera
        if entry.is_file():
            with Image.open(entry) as handle:
                return torch.from_numpy(np.asarray(handle.convert("RGB")).copy()).permute(2, 0, 1)
        image = read_image(path, size, **where)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(entry) as tmp:
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp, format="PNG", compress_level=1)
        return image
