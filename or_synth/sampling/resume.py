"""Resuming a samples folder: which manifest lines to keep, whether the manifest needs rewriting, and refusing a
folder sampled with other settings (or, with ``overwrite``, what of it to delete)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from or_synth.data import UserError
from or_synth.data.manifest import MANIFEST, ManifestLine, read_manifest, write_manifest
from or_synth.sampling.export_files import EXPORT_MANIFEST
from or_synth.sampling.files import image_complete
from or_synth.sampling.seeds import IMAGE_DIR, LAYOUT_DIR

# Manifest fields that must agree for a folder to be resumed (the rest describe the image itself).
SETTINGS_KEYS = (
    "pipeline_hash",
    "graphs_hash",
    "sampler",
    "steps",
    "guidance_scale",
    "layout_guidance_scale",
    "layout",
    "layout_renderer",  # only with layout=render: a new renderer may place graphs differently
    "layout_predictor_hash",  # only with layout=predicted: another predictor draws other layouts
    "base_seed",
    "control",
)


class SampleRefused(UserError, RuntimeError):
    """``out`` already holds images sampled with other settings; nothing was touched."""


@dataclass
class Resume:
    """What a job keeps of its ``out`` folder.

    Attributes:
        kept: the manifest lines to keep (their images exist), one per image.
        rewrite: the manifest must be rewritten before appending (lines dropped, or lines in an older shape).
        stale: (``overwrite`` of a folder sampled with other settings) the files to delete first, else None.
    """

    kept: list[ManifestLine]
    rewrite: bool = False
    stale: list[Path] | None = None

    def apply(self, manifest: Path) -> None:
        """Delete the stale files, or rewrite the manifest to the kept lines, as decided."""
        if self.stale is not None:
            for path in self.stale:
                path.unlink(missing_ok=True)
            manifest.unlink(missing_ok=True)
        if self.rewrite:
            write_manifest(manifest, self.kept)


def resume_state(out: Path, settings: dict, overwrite: bool) -> Resume:
    """How to resume ``out`` with these settings (reads only).

    Lines whose image is gone or not whole (:func:`~or_synth.sampling.files.image_complete`) and a line cut off
    by a crash are dropped (those images are drawn again).

    Raises:
        SampleRefused: the manifest was written with other settings and ``overwrite`` is false.
    """
    path = out / MANIFEST
    for folder in (out / IMAGE_DIR, out / LAYOUT_DIR):  # a file in the way would stop the job after a batch
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(
                f"out={out}: {folder} is a file, where the job writes a folder; move it away"
            )
    if (
        out / EXPORT_MANIFEST
    ).exists():  # its manifest lists the export's images: never this command's to delete
        raise SampleRefused(
            f"{out} holds an export (or_synth.export, {EXPORT_MANIFEST}); choose another out="
        )
    if path.exists() and not path.is_file():
        raise SampleRefused(f"{path} is not a file; move it away or choose another out=")
    if not path.is_file():
        return Resume([])
    contents = read_manifest(path, tolerant=True)
    lines = contents.lines
    if not lines and contents.garbled():
        # No line says which settings drew the folder's images: redrawing them would be a guess.
        if not overwrite:
            raise SampleRefused(
                f"{path}: no line of it is readable (line {contents.garbled()[0]} is not a manifest line), so "
                "the images it listed cannot be matched to settings; nothing was changed. Pass overwrite=true "
                "to draw them again, or choose another out="
            )
        return Resume([], stale=[])
    differing = sorted({k for line in lines for k in SETTINGS_KEYS if getattr(line, k) != settings.get(k)})
    if differing:
        if not overwrite:
            before = {k: getattr(lines[0], k) for k in differing}
            now = {k: settings.get(k) for k in differing}
            raise SampleRefused(
                f"{out} holds images sampled with other settings ({before}, now {now}); nothing was changed. "
                "Pass overwrite=true to replace them, or choose another out="
            )
        # overwrite: what the earlier job listed (and nothing else) goes, when sampling starts.
        listed = [(out / line.image).resolve() for line in lines]
        listed += [(out / line.layout_image).resolve() for line in lines if line.layout_image]
        return Resume([], stale=[file for file in listed if file.is_relative_to(out.resolve())])
    # Keep one line per image (the last), so a manifest never lists an image twice; an image cut off, emptied or
    # of another size is drawn again (its line dropped), as is one whose saved layout is.
    size = (settings.get("height"), settings.get("width"))
    by_image = {line.image: line for line in lines if finished(out, line, size)}
    rewrite = contents.damaged or contents.older or len(by_image) != len(lines)
    return Resume(list(by_image.values()), rewrite=rewrite)


def finished(out: Path, line: ManifestLine, size: tuple[int, int]) -> bool:
    """Whether ``line``'s image (and its saved layout, if any) is whole on disk, the image of ``size`` (H, W)."""
    if not image_complete(out / line.image, size):
        return False
    return line.layout_image is None or image_complete(out / line.layout_image)
