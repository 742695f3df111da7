"""A tiny dataset in 4D-OR's layout whose images depend on the scene graph and the camera.

Flat colours per (take, scan, camera) (``tests/conftest.py``) carry no graph content, so nothing could be
aligned. Here every node label draws a block of its own colour at a label-specific place, every non-CloseTo
triple draws a bar in the predicate's colour between its ends, and the camera shifts and mirrors the
layout: graph(+view) -> image retrieval is learnable, yet not trivially from one pixel.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from or_synth.data.vocabulary import PREDICATES, ROLES

PEOPLE = ("head-surgeon", "assistant-surgeon", "circulating-nurse", "anaesthetist")
ACTIONS = ("Drilling", "Sawing", "Hammering", "Cutting", "Preparing", "Cleaning", "Suturing", "Cementing")


def random_scene(rng: random.Random, take: int, scan: str) -> dict:
    """A plausible random OR scan in 4D-OR's JSON form (roles, actions, mirrored CloseTo)."""
    objects = ["Patient", "instrument", "instrument_table", "operating_table"]
    objects += [o for o in ("anesthesia_equipment", "secondary_table") if rng.random() < 0.6]
    num_people = rng.randint(1, 3)
    objects += [f"human_{k}" for k in range(num_people)]
    objects.sort()
    key = {name: i + 1 for i, name in enumerate(objects)}
    roles = {f"human_{k}": role for k, role in enumerate(rng.sample(PEOPLE, num_people))}
    relations = []

    def relate(sub: str, obj: str, predicate: str) -> None:
        relations.append((key[sub], key[obj], predicate))
        relations.append((key[obj], key[sub], "CloseTo"))

    if rng.random() < 0.7:
        relate("Patient", "operating_table", "LyingOn")
    for k in range(num_people):
        choice = rng.random()
        if choice < 0.5:
            relate(f"human_{k}", "Patient", rng.choice(ACTIONS))
        elif choice < 0.75:
            relate(f"human_{k}", "instrument", "Holding")
        elif choice < 0.9:
            relate(f"human_{k}", "instrument_table", "Touching")
    return {
        "take_idx": take,
        "scan": scan,
        "objects": {str(i): name for name, i in key.items()},
        "relationships": [[s, o, PREDICATES.index(p), p] for s, o, p in relations],
        "human_idx_to_name": roles,
    }


def _palette(name: str, salt: int) -> tuple[int, int, int]:
    r = random.Random(f"{name}:{salt}")
    return (r.randint(30, 255), r.randint(30, 255), r.randint(30, 255))


def draw_scene(entry: dict, camera: int, size: int = 48) -> Image.Image:
    """Blocks per node label, bars per non-CloseTo triple; camera c shifts the layout and mirrors odd ones."""
    image = Image.new("RGB", (size, size), (40, 40, 40))
    draw = ImageDraw.Draw(image)
    objects = entry["objects"]
    roles = entry["human_idx_to_name"]
    centres = {}
    for key, name in objects.items():
        label = roles.get(name, "unknown") if name.startswith("human_") else name
        slot = random.Random(label).randint(0, 15)
        x, y = (slot % 4) * size // 4, (slot // 4) * size // 4
        x = (x + camera * size // 8) % (size - size // 6)
        if camera % 2:
            x = size - size // 6 - x
        centres[key] = (x + size // 12, y + size // 12)
        draw.rectangle([x, y, x + size // 6, y + size // 6], fill=_palette(label, 0))
    for s, o, _, predicate in entry["relationships"]:
        if predicate != "CloseTo":
            draw.line([centres[str(s)], centres[str(o)]], fill=_palette(predicate, 1), width=3)
    return image


def write_graph_image_dataset(
    root: Path, takes: dict[str, tuple[int, ...]], scans_per_take: int, *, seed: int = 0, size: int = 48
) -> Path:
    """Write ``relationships_{split}.json``, frame lists and camera 1..6 images for random scenes."""
    rng = random.Random(seed)
    assert ROLES  # the roles used above are 4D-OR's
    for split, split_takes in takes.items():
        entries = []
        for take in split_takes:
            folder = root / f"export_holistic_take{take}_processed"
            (folder / "colorimage").mkdir(parents=True, exist_ok=True)
            frames = []
            for index in range(scans_per_take):
                entry = random_scene(rng, take, f"{index:06d}")
                entries.append(entry)
                ids = {f"color_{c}": f"{5000 + index:06d}" for c in range(1, 7)}
                frames.append([str(index), {"pcd": f"{index:06d}", **ids}])
                for c in range(1, 7):
                    draw_scene(entry, c, size).save(
                        folder / "colorimage" / f"camera0{c}_colorimage-{ids[f'color_{c}']}.jpg", quality=95
                    )
            (folder / "timestamp_to_pcd_and_frames_list.json").write_text(json.dumps(frames))
        (root / f"relationships_{split}.json").write_text(json.dumps({"scans": entries}))
    return root
