"""The error types that reach a user: a mistake in what was asked for (:class:`UserError`, with
:class:`DatasetFormatError` for bad dataset input, whose message names the file, take, scan and field) and a long
job that stopped on request (:class:`StoppedOnRequest`).

They live in the data layer because every other subpackage builds on it; the entry points
(:mod:`or_synth.cli`) turn them into one ``error: ...`` line and an exit code, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake in a command's input (an option, a file, a folder): the message says what and where, and what to
    do instead. Entry points print it as one line and exit with :attr:`exit_code`."""

    exit_code = 2


class DatasetMissing(UserError, FileNotFoundError):
    """A dataset (or a part of one) that is not where the config says: what is missing, where it was looked for,
    and how to get it."""


class StoppedOnRequest(Exception):
    """A long job stopped on request (Ctrl-C, SIGTERM) after saving its progress; the same command resumes it."""

    exit_code = 130


class DatasetFormatError(UserError, ValueError):
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
