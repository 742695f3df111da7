"""Sample grids: each scene graph as text beside its images (generated, a reference pipeline's, the real renders),
for training runs, graph edits and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from or_synth.data.io import atomic_path
from or_synth.data.vocabulary import Vocabulary


def describe_graph(graph, vocabulary: Vocabulary | None = None, max_lines: int = 9) -> list[str]:
    """The graph as text lines ``subject Predicate object`` (people by role), CloseTo left out as clutter."""
    vocabulary = vocabulary or Vocabulary()

    def name(i: int) -> str:
        role = vocabulary.roles[int(graph.node_role[i])]
        if role not in ("unknown", "not-a-person"):
            return role
        return vocabulary.object_classes[int(graph.node_class[i])]

    lines = []
    for (s, o), p in zip(graph.edge_index.t().tolist(), graph.edge_attr.tolist(), strict=True):
        predicate = vocabulary.predicates[p]
        if predicate != "CloseTo":
            lines.append(f"{name(s)} {predicate} {name(o)}")
    if not lines:
        lines = ["(only CloseTo)" if graph.edge_attr.numel() else "(no relations)"]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], f"... {len(lines) - max_lines + 1} more"]
    return lines


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def sample_grid(
    rows: list[tuple[list[str], list[Image.Image], ...]],
    tile: int = 128,
    labels: Sequence[str] = ("generated", "real render"),
) -> Image.Image:
    """One row per graph: its text, then one group of images per label (by default the generated image(s), then
    the real image(s) of the same views), each group under its label.

    Args:
        rows: (text lines, images of group 1, images of group 2, ...) per graph; images are resized to ``tile``.
        labels: the column header of each group.
    """
    text_width, header = 3 * tile, 18
    widths = [max(len(row[1 + g]) for row in rows) for g in range(len(labels))]
    grid = Image.new("RGB", (text_width + sum(widths) * tile, header + len(rows) * tile), "white")
    draw = ImageDraw.Draw(grid)
    font = _font(11)
    draw.text((4, 2), "scene graph", fill="black", font=font)
    starts = [text_width + tile * sum(widths[:g]) for g in range(len(labels))]
    for start, label in zip(starts, labels, strict=True):
        draw.text((start + 4, 2), label, fill="black", font=font)
    for r, (lines, *groups) in enumerate(rows):
        top = header + r * tile
        draw.line([(0, top), (grid.width, top)], fill=(200, 200, 200))
        for i, line in enumerate(lines):
            draw.text((4, top + 4 + 13 * i), line, fill="black", font=font)
        for start, images in zip(starts, groups, strict=True):
            for c, image in enumerate(images):
                grid.paste(
                    image.convert("RGB").resize((tile, tile), Image.Resampling.NEAREST),
                    (start + c * tile, top),
                )
    return grid


def save_image_atomic(image: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
