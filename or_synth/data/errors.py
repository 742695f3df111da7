"""One error type for bad dataset input, so every message names the file, take, scan and field."""

from __future__ import annotations

from pathlib import Path


class DatasetFormatError(ValueError):
    """A dataset file that does not follow the 4D-OR format.

    The message always starts with where the problem is (``file``, ``take``, ``scan``, ``field``, whichever
    are known), so a user can open the file at the right place.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        take: int | None = None,
        scan: str | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = message
        self.file = str(file) if file is not None else None
        self.take = take
        self.scan = scan
        self.field = field
        super().__init__(f"{self.location()}: {message}" if self.location() else message)

    def location(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(f"file {self.file}")
        if self.take is not None:
            parts.append(f"take {self.take}")
        if self.scan is not None:
            parts.append(f"scan {self.scan}")
        if self.field is not None:
            parts.append(f"field {self.field}")
        return ", ".join(parts)

    def as_dict(self) -> dict:
        """JSON-friendly form, used when ``strict=false`` reports skipped scans."""
        return {
            "file": self.file,
            "take": self.take,
            "scan": self.scan,
            "field": self.field,
            "reason": self.reason,
        }
