"""A contact sheet of a rendered dataset: one tile per predicate and per role, with the graph beside it.

    python -m or_synth.render.contact_sheet [ROOT] [OUT]     (defaults: datasets/synthetic_or, and
                                                               datasets/synthetic_or_contact_sheet.png)

Each tile zooms on the camera that sees the relation best (subject box yellow, object box cyan); beside it the scan's
non-CloseTo triples, with roles, so a person can check that what the graph says is what was drawn.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from or_synth.data.annotations import read_scan_annotation
from or_synth.data.images import color_image_path, take_dir
from or_synth.data.scene_graph import SceneGraphRecord, load_scene_graphs
from or_synth.data.vocabulary import PREDICATES, ROLES

TILE = 256
TEXT_WIDTH = 250
CANDIDATES = 60


def contact_sheet(root: str | Path, out: str | Path, columns: int = 4) -> Path:
    """Write the sheet for the dataset at ``root`` to ``out`` (JPEG or PNG by suffix)."""
    root, out = Path(root), Path(out)
    records = [r for f in sorted(root.glob("relationships_*.json")) for r in load_scene_graphs(f).records]
    records.sort(key=lambda r: r.key)
    tiles = [
        _tile(root, records, f"predicate {name}", lambda r, name=name: _predicate_nodes(r, name))
        for name in PREDICATES
    ]
    tiles += [
        _tile(root, records, f"role {role}", lambda r, role=role: _role_nodes(r, role))
        for role in ROLES
        if role != "not-a-person"
    ]
    width = TILE + TEXT_WIDTH
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * width, rows * (TILE + 8)), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * width, (i // columns) * (TILE + 8)))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=88) if out.suffix.lower() in (".jpg", ".jpeg") else sheet.save(out)
    return out


def _predicate_nodes(record: SceneGraphRecord, name: str) -> tuple[int, int] | None:
    # Prefer a relation between two drawn things (the instrument is only drawn when held).
    for s, o, p in record.triples:
        if p == name and (
            name != "CloseTo" or "instrument" not in (record.object_names[s], record.object_names[o])
        ):
            return s, o
    return None


def _role_nodes(record: SceneGraphRecord, role: str) -> tuple[int, int] | None:
    for i, r in enumerate(record.roles):
        if r == role:
            partner = next((o for s, o, p in record.triples if s == i and p != "CloseTo"), None)
            return (i, partner) if partner is not None else (i, i)
    return None


def _tile(root: Path, records: list[SceneGraphRecord], title: str, pick) -> Image.Image:
    best, examined = None, 0
    for record in records:
        nodes = pick(record)
        if nodes is None:
            continue
        examined += 1
        annotation = read_scan_annotation(root, record.take, record.scan)
        for camera, view in annotation.views.items():
            score = min(view.pixels.get(nodes[0], 0), view.pixels.get(nodes[1], 0))
            if nodes[0] != nodes[1]:
                # A person filling the view is usually seen from behind, hiding the hands: prefer a farther one.
                score /= 1.0 + view.pixels.get(nodes[0], 0) / 600.0
            if not _inside(view.boxes.get(nodes[0]), record, root):
                score *= 0.2  # cut off by the image border: show another camera if one sees it whole
            if best is None or score > best[0]:
                best = (score, record, nodes, camera, view)
        if examined >= CANDIDATES and best[0] > 0:
            break
    tile = Image.new("RGB", (TILE + TEXT_WIDTH, TILE), (255, 255, 255))
    draw = ImageDraw.Draw(tile)
    font = _font(12)
    if best is None:
        draw.text((TILE + 6, 4), f"{title}: not in this dataset", fill=(200, 0, 0), font=font)
        return tile
    _, record, nodes, camera, view = best
    image = Image.open(color_image_path(root, record.take, camera, view.frame_id)).convert("RGB")
    # Zoom on the relation: the union of the two boxes with a margin, square, at least a third of the image.
    boxes = [view.boxes[n] for n in set(nodes) if n in view.boxes]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    side = max(x1 - x0, y1 - y0, min(image.size) // 3) * 1.25
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    crop = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    scale = TILE / (crop[2] - crop[0])
    tile.paste(image.crop(crop).resize((TILE, TILE), Image.NEAREST), (0, 0))
    for node, colour in ((nodes[1], (0, 230, 255)), (nodes[0], (255, 230, 0))):
        if node in view.boxes:
            bx0, by0, bx1, by1 = view.boxes[node]
            box = (
                (bx0 - crop[0]) * scale,
                (by0 - crop[1]) * scale,
                (bx1 - crop[0]) * scale - 1,
                (by1 - crop[1]) * scale - 1,
            )
            draw.rectangle(box, outline=colour, width=2)
    lines = [title, f"take {record.take} scan {record.scan} cam {camera}", ""]
    label = [_node_label(record, i) for i in range(record.num_nodes)]
    for s, o, p in record.triples:
        if p != "CloseTo":
            lines.append(f"{label[s]} {p} {label[o]}")
    close = sum(1 for *_, p in record.triples if p == "CloseTo")
    lines.append(f"+ {close} CloseTo")
    y = 4
    for i, line in enumerate(lines):
        colour, size = ((180, 0, 0), 13) if i == 0 else ((0, 0, 0), 12)
        while line and y < TILE - 12:  # wrap long triples onto indented lines
            draw.text((TILE + 6, y), line[:40], fill=colour, font=_font(size))
            line = ("   " + line[40:]) if len(line) > 40 else ""
            y += 15
    return tile


ROLE_SHORT = {
    "head-surgeon": "head-surgeon",
    "assistant-surgeon": "assistant",
    "circulating-nurse": "nurse",
    "anaesthetist": "anaesthetist",
    "unknown": "unknown",
}


def _inside(box, record: SceneGraphRecord, root: Path) -> bool:
    if box is None:
        return False
    width, height = _image_size(root, record.take)
    return box[0] > 0 and box[1] > 0 and box[2] < width and box[3] < height


def _image_size(root: Path, take: int) -> tuple[int, int]:
    calibration = json.loads((take_dir(root, take) / "camera01.json").read_text())["value0"][
        "color_parameters"
    ]
    return int(calibration["width"]), int(calibration["height"])


def _node_label(record: SceneGraphRecord, index: int) -> str:
    name, role = record.object_names[index], record.roles[index]
    return f"h{name[6:]}:{ROLE_SHORT.get(role, role)}" if name.startswith("human_") else name


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path("datasets/synthetic_or")
    out = Path(argv[1]) if len(argv) > 1 else Path("datasets/synthetic_or_contact_sheet.png")
    manifest = root / "or_synth_render.json"
    if not manifest.is_file() or not json.loads(manifest.read_text()).get("complete"):
        print(f"error: {root} is not a complete render; run python -m or_synth.render first", file=sys.stderr)
        return 2
    print(f"wrote {contact_sheet(root, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
