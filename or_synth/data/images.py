"""Per-camera colour images of a scan, resolved through ``timestamp_to_pcd_and_frames_list.json``.

4D-OR's image frame ids are not scan ids (maintainer, egeozsoy/4D-OR#10): entry ``int(scan)`` of the
take's frame list holds ``color_{c}`` frame ids, used verbatim in
``export_holistic_take{T}_processed/colorimage/camera0{c}_colorimage-{id}.jpg``
(``../shared/docs/4dor_format.md`` §1.1).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from or_synth.data.errors import DatasetFormatError
from or_synth.data.io import read_json

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
