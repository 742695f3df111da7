"""Draw a placed scene into each camera: flat-shaded boxes and balls, painter's algorithm, numpy + Pillow.

Every surface is a quad (boxes are split into tiles of at most :data:`TILE` metres, so sorting quads by
distance behaves like a depth buffer for this room) or a ball (heads, hands) drawn as a disc. Pillow fills
each quad with its *id* in one 32-bit image; colours and instance labels are then looked up per pixel from
the id, so the mask and the colour come from the very same raster and always agree.

Label map values: ``node index + 1`` for graph nodes, 0 for room (floor, walls), :data:`CLUTTER` for
clutter (lamps, carts, bins, poles) that belongs to no node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from or_synth.render.layout import Layout, Placement
from or_synth.render.room import KNEE, ROOM_HEIGHT, ROOM_X, ROOM_Y, TABLE_TOP, Camera

CLUTTER = 255
ROOM = 0
TILE = 0.6
NEAR = 0.05

# Gown / cap / glove colours by role, the way an OR tells people apart (sterile gowns for the surgeons,
# scrubs and coloured caps for the others).
ROLE_COLOURS: dict[str, dict[str, tuple[int, int, int]]] = {
    "head-surgeon": {"gown": (30, 55, 140), "cap": (40, 180, 80), "glove": (235, 215, 170)},
    "assistant-surgeon": {"gown": (95, 160, 225), "cap": (25, 40, 120), "glove": (235, 215, 170)},
    "circulating-nurse": {"gown": (30, 140, 120), "cap": (235, 80, 165), "glove": (230, 185, 150)},
    "anaesthetist": {"gown": (75, 95, 45), "cap": (245, 205, 30), "glove": (230, 185, 150)},
    "unknown": {"gown": (125, 125, 130), "cap": (245, 245, 245), "glove": (230, 185, 150)},
    "Patient": {"gown": (215, 222, 238), "cap": (95, 65, 40), "glove": (225, 180, 145)},
}
SKIN = (225, 180, 145)
TOOL_COLOURS = {
    "drill": (255, 135, 0),
    "bit": (215, 215, 225),
    "saw": (150, 50, 210),
    "blade": (230, 230, 240),
    "hammer_handle": (125, 70, 25),
    "hammer_head": (40, 40, 50),
    "impactor": (200, 200, 210),
    "scalpel": (225, 25, 30),
    "needle_holder": (245, 215, 30),
    "forceps": (205, 205, 215),
    "cement_gun": (250, 250, 245),
    "cartridge": (250, 225, 50),
    "sponge": (255, 95, 185),
    "drape": (110, 195, 240),
    "instrument": (175, 185, 195),
    "grip": (0, 215, 200),
}


@dataclass
class Style:
    """Per-scan lighting and sensor settings (drawn from the scan's generator)."""

    light: np.ndarray  # (3,) unit vector towards the light
    ambient: float
    tint: np.ndarray  # (3,) per-channel gain
    noise: float  # sensor noise sigma (grey levels)
    spot: float  # surgical-lamp brightness on the table
    exposure: dict[int, float] = field(default_factory=dict)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Style:
        light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0])
        return cls(
            light=light / np.linalg.norm(light),
            ambient=float(rng.uniform(0.45, 0.7)),
            tint=rng.uniform(0.92, 1.08, 3),
            noise=float(rng.uniform(2.0, 9.0)),
            spot=float(rng.uniform(0.05, 0.35)),
            exposure={c: float(rng.uniform(0.8, 1.15)) for c in range(1, 7)},
        )


class SceneMesh:
    """World-space boxes, tiles and balls with colour and label, collected while building a scene."""

    def __init__(self) -> None:
        self.boxes: list[np.ndarray] = []  # (8, 3) corners of untiled boxes
        self.box_colour: list[tuple] = []
        self.box_label: list[int] = []
        self.quads: list[np.ndarray] = []  # (T, 4, 3) tiles of large boxes
        self.quad_colour: list[tuple] = []
        self.quad_label: list[int] = []
        self.balls: list[tuple[np.ndarray, float, tuple, int]] = []

    def box(self, corners: np.ndarray, colour, label: int, tile: bool = False) -> None:
        """A cuboid from its 8 corners (index bits i, j, k along its three axes)."""
        if not tile:
            self.boxes.append(corners)
            self.box_colour.append(colour)
            self.box_label.append(label)
            return
        for face in _FACE_INDEX:
            tiles = _subdivide(corners[face])
            self.quads.append(tiles)
            self.quad_colour.extend([colour] * len(tiles))
            self.quad_label.extend([label] * len(tiles))

    def faces(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All quads (F, 4, 3) with colours (F, 3) and labels (F,)."""
        parts, colours, labels = [], [], []
        if self.boxes:
            parts.append(np.stack(self.boxes)[:, _FACE_INDEX].reshape(-1, 4, 3))  # (6B, 4, 3)
            colours.append(np.repeat(np.asarray(self.box_colour, float), 6, axis=0))
            labels.append(np.repeat(np.asarray(self.box_label, np.uint8), 6))
        if self.quads:
            parts.append(np.concatenate(self.quads))
            colours.append(np.asarray(self.quad_colour, float))
            labels.append(np.asarray(self.quad_label, np.uint8))
        if not parts:
            return np.zeros((0, 4, 3)), np.zeros((0, 3)), np.zeros((0,), np.uint8)
        return np.concatenate(parts), np.concatenate(colours), np.concatenate(labels)

    def cuboid(self, centre, size, colour, label: int, yaw: float = 0.0, tile: bool = False) -> None:
        r = math.radians(yaw)
        ax = np.array([math.cos(r), math.sin(r), 0.0]) * size[0]
        ay = np.array([-math.sin(r), math.cos(r), 0.0]) * size[1]
        az = np.array([0.0, 0.0, size[2]])
        origin = np.asarray(centre, dtype=float) - (ax + ay + az) / 2
        self.box(_corners(origin, ax, ay, az), colour, label, tile=tile or max(size) > TILE)

    def beam(self, p0, p1, width: float, colour, label: int, thickness: float | None = None) -> None:
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        d = p1 - p0
        length = math.sqrt(d @ d)
        if length < 1e-6:
            return
        u = np.array([d[1], -d[0], 0.0])  # d x z
        norm = math.sqrt(u @ u)
        u = u / norm if norm > 1e-6 else np.array([1.0, 0.0, 0.0])
        v = np.cross(d / length, u) * (thickness if thickness is not None else width)
        u = u * width
        origin = p0 - u / 2 - v / 2
        self.box(_corners(origin, d, u, v), colour, label, tile=length > TILE * 1.5)

    def ball(self, centre, radius: float, colour, label: int) -> None:
        self.balls.append((np.asarray(centre, float), radius, colour, label))


_FACES = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3))
_FACE_INDEX = np.array(_FACES)
_BITS = np.array([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)


def _corners(origin, ax, ay, az) -> np.ndarray:
    return origin + _BITS @ np.stack([ax, ay, az])


def _subdivide(quad: np.ndarray) -> np.ndarray:
    """Split a quad into a grid of tiles no longer than :data:`TILE`: (T, 4, 3)."""
    a, b, _, d = quad  # a->b->c->d around the face
    ab, ad = b - a, d - a
    n = max(1, math.ceil(math.sqrt(ab @ ab) / TILE))
    m = max(1, math.ceil(math.sqrt(ad @ ad) / TILE))
    if n == 1 and m == 1:
        return quad[None]
    return np.einsum("tkc,cx->tkx", _tile_weights(n, m), quad)


@lru_cache(maxsize=64)
def _tile_weights(n: int, m: int) -> np.ndarray:
    """Bilinear weights of the corners of every tile of an n x m grid: (n*m, 4 corners, 4 quad corners)."""
    s, t = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, m + 1), indexing="ij")
    w = np.stack([(1 - s) * (1 - t), s * (1 - t), s * t, (1 - s) * t], -1)  # (n+1, m+1, 4)
    return np.stack([w[:-1, :-1], w[1:, :-1], w[1:, 1:], w[:-1, 1:]], 2).reshape(n * m, 4, 4)


# --- building the scene -----------------------------------------------------------------------------------
def build_mesh(
    layout: Layout,
    rng: np.random.Generator,
    *,
    clutter_rng: np.random.Generator | None = None,
    clutter_avoids_people: bool = True,
) -> SceneMesh:
    """All surfaces of a placed scene; ``rng`` draws appearance jitter and clutter (``clutter_rng``, when given,
    the clutter, so that it does not move when the furniture drawn before it changes). With
    ``clutter_avoids_people=False`` clutter keeps clear of furniture only (a take's clutter stays put while people
    walk)."""
    mesh = SceneMesh()
    names = layout.record.object_names
    jitter = rng.integers(-10, 11, 3)
    for node, place in sorted(layout.placements.items()):
        label = node + 1
        name = names[node]
        if place.kind == "furniture":
            _furniture(mesh, name, place, label, rng)
        elif place.kind == "patient_lying":
            _patient_lying(mesh, place, label)
        elif place.kind == "person":
            role = layout.record.roles[node]
            colours = {
                k: _shift(v, jitter) for k, v in ROLE_COLOURS.get(role, ROLE_COLOURS["unknown"]).items()
            }
            _person(mesh, place, colours, label, layout.knee(), patient=(name == "Patient"))
    _clutter(mesh, layout, rng if clutter_rng is None else clutter_rng, clutter_avoids_people)
    return mesh


def _shift(colour, jitter) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter, strict=True))


def _furniture(mesh: SceneMesh, name: str, p: Placement, label: int, rng) -> None:
    sx, sy, h = p.size
    x, y = p.x, p.y
    if name == "operating_table":
        mesh.cuboid((x, y, h - 0.06), (sx, sy, 0.12), (55, 60, 72), label, tile=True)
        mesh.cuboid((x, y, (h - 0.12) / 2 + 0.06), (0.3, 0.3, h - 0.18), (150, 155, 160), label)
        mesh.cuboid((x, y, 0.05), (0.9, 0.5, 0.1), (120, 125, 130), label)
        control = (70, 255, 90) if p.glow else (50, 50, 55)
        for side in (-1, 1):
            mesh.cuboid((x - 0.55, y + side * (sy / 2 + 0.05), h + 0.02), (0.24, 0.08, 0.3), control, label)
    elif name == "anesthesia_equipment":
        mesh.cuboid((x, y, 0.6), (sx, sy, 1.2), (175, 185, 200), label, tile=True)
        mesh.cuboid((x, y, 0.06), (sx + 0.1, sy + 0.1, 0.12), (90, 95, 105), label)
        face = 1.0 if x < 0 else -1.0  # the screen faces the operating table
        mesh.cuboid((x + face * 0.05, y, 1.42), (0.08, 0.5, 0.36), (60, 60, 70), label)
        screen = (90, 255, 210) if p.glow else (25, 35, 90)
        mesh.cuboid((x + face * 0.1, y, 1.42), (0.02, 0.44, 0.3), screen, label)
        # A status light on top, in the screen colour, that the ceiling cameras can see.
        mesh.cuboid((x, y, 1.62), (0.3, 0.3, 0.04), screen, label)
        for k in range(3):
            mesh.cuboid(
                (x + face * (sx / 2 + 0.01), y - 0.15 + 0.15 * k, 0.9),
                (0.02, 0.08, 0.08),
                (200, 60, 60),
                label,
            )
    else:
        top = (70, 120, 175) if name == "instrument_table" else (205, 205, 195)
        mesh.cuboid((x, y, h - 0.03), (sx, sy, 0.06), top, label, tile=True)
        for dx in (-1, 1):
            for dy in (-1, 1):
                leg = (x + dx * (sx / 2 - 0.05), y + dy * (sy / 2 - 0.05))
                mesh.beam((*leg, 0.0), (*leg, h - 0.06), 0.04, (160, 165, 170), label)
        items = 5 if name == "instrument_table" else 3
        for _ in range(items):
            cx, cy = (
                x + rng.uniform(-sx / 2 + 0.1, sx / 2 - 0.1),
                y + rng.uniform(-sy / 2 + 0.1, sy / 2 - 0.1),
            )
            colour = (
                (200, 205, 215)
                if name == "instrument_table"
                else tuple(int(c) for c in rng.integers(60, 240, 3))
            )
            size = (rng.uniform(0.08, 0.25), rng.uniform(0.05, 0.15), rng.uniform(0.02, 0.12))
            mesh.cuboid((cx, cy, h + size[2] / 2), size, colour, label, yaw=float(rng.uniform(0, 90)))


def _patient_lying(mesh: SceneMesh, p: Placement, label: int) -> None:
    x, y, z = p.x, p.y, TABLE_TOP
    colours = ROLE_COLOURS["Patient"]
    mesh.cuboid((x - 0.42, y, z + 0.1), (0.85, 0.46, 0.2), colours["gown"], label, tile=True)
    mesh.ball((x - 0.93, y, z + 0.12), 0.12, SKIN, label)
    mesh.ball((x - 0.98, y, z + 0.16), 0.1, colours["cap"], label)
    hip = np.array([x, y, z + 0.1])
    mesh.beam(hip + [0, -0.12, 0], hip + [0.85, -0.12, -0.02], 0.16, (150, 200, 190), label)  # draped leg
    knee = np.array([x + KNEE[0], y + KNEE[1], KNEE[2]])
    prepped = (205, 120, 55)  # iodine-prepped skin of the operated leg
    mesh.beam(hip + [0, 0.12, 0], knee, 0.16, prepped, label)
    mesh.beam(knee, np.array([x + 0.78, y + KNEE[1], z + 0.08]), 0.14, prepped, label)


def _person(mesh: SceneMesh, p: Placement, colours, label: int, knee: np.ndarray, patient: bool) -> None:
    r = math.radians(p.yaw)
    f = np.array([math.cos(r), math.sin(r), 0.0])
    s = np.array([-f[1], f[0], 0.0])
    base = np.array([p.x, p.y, 0.0])
    gown = colours["gown"]
    trousers = tuple(int(c * 0.75) for c in gown)
    mesh.cuboid(base + [0, 0, 0.42], (0.24, 0.36, 0.84), trousers, label, yaw=p.yaw)
    torso = base + p.lean * f
    mesh.cuboid(torso + [0, 0, 1.13], (0.27, 0.46, 0.58), gown, label, yaw=p.yaw)
    head = base + (1.5 * p.lean + 0.02) * f + [0, 0, 1.57 - 0.4 * p.lean]
    mesh.ball(head, 0.11, SKIN, label)
    mesh.ball(head + [0, 0, 0.05] - 0.02 * f, 0.095, colours["cap"], label)
    glove = colours["glove"]
    for side, hand in ((-1.0, p.right), (1.0, p.left)):
        shoulder = torso + side * 0.2 * s + [0, 0, 1.38]
        point = hand.point if hand is not None else base + side * 0.29 * s + 0.06 * f + [0, 0, 0.88]
        mesh.beam(shoulder, point, 0.1, gown, label)
        mesh.ball(point, 0.055, glove, label)
        if hand is not None and hand.tool is not None:
            _tool(mesh, hand.tool, point, p, knee, hand.tool_node + 1)


def _tool(mesh: SceneMesh, tool: str, hand: np.ndarray, p: Placement, knee: np.ndarray, label: int) -> None:
    c = TOOL_COLOURS
    to_knee = knee - hand
    dist = np.linalg.norm(to_knee) or 1.0
    d = to_knee / dist
    r = math.radians(p.yaw)
    f = np.array([math.cos(r), math.sin(r), 0.0])
    other = p.left.point if p.left is not None else hand
    if tool == "drill":
        mesh.beam(hand + [0, 0, 0.04] - 0.1 * d, hand + 0.14 * d + [0, 0, 0.04], 0.15, c["drill"], label)
        mesh.beam(hand, hand - [0, 0, 0.16], 0.08, c["drill"], label)
        mesh.beam(hand + 0.14 * d, knee, 0.04, c["bit"], label)
    elif tool == "saw":
        mid = (hand + other) / 2
        mesh.beam(hand, other, 0.15, c["saw"], label)
        mesh.beam(mid, knee + [0, 0, 0.02], 0.16, c["blade"], label, thickness=0.02)
    elif tool == "hammer":
        top = hand + [0, 0, 0.3] - 0.05 * f
        mesh.beam(hand - [0, 0, 0.05], top, 0.05, c["hammer_handle"], label)
        mesh.beam(top - 0.11 * f, top + 0.11 * f, 0.09, c["hammer_head"], label)
    elif tool == "impactor":
        mesh.beam(hand + [0, 0, 0.08], knee, 0.04, c["impactor"], label)
    elif tool == "scalpel":
        mesh.beam(hand - 0.14 * d, hand + 0.12 * d, 0.1, c["scalpel"], label)
        mesh.beam(hand + 0.12 * d, hand + 0.22 * d, 0.05, c["blade"], label)
    elif tool == "needle_holder":
        mesh.beam(hand - 0.1 * d, hand + 0.18 * d, 0.07, c["needle_holder"], label)
        mesh.beam(hand + 0.18 * d, knee, 0.012, (20, 20, 20), label)  # the thread
    elif tool == "forceps":
        mesh.beam(hand, hand + 0.16 * d, 0.035, c["forceps"], label)
    elif tool == "cement_gun":
        mesh.beam(hand - 0.12 * d, knee + [0, 0, 0.04], 0.13, c["cement_gun"], label)
        mesh.beam(hand - 0.18 * d, hand + 0.06 * d, 0.16, c["cartridge"], label)
    elif tool == "sponge":
        mesh.cuboid(hand - [0, 0, 0.03], (0.2, 0.17, 0.08), c["sponge"], label, yaw=p.yaw)
    elif tool == "drape":
        mid = (hand + other) / 2 + 0.12 * d
        span = np.linalg.norm(hand - other) + 0.15
        mesh.cuboid(mid, (0.55, span, 0.015), c["drape"], label, yaw=p.yaw)
    elif tool == "instrument":
        mesh.beam(hand - 0.05 * f, hand + 0.3 * f + [0, 0, 0.06], 0.07, c["instrument"], label)
        mesh.beam(hand - 0.1 * f + [0, 0, 0.02], hand + 0.06 * f + [0, 0, 0.02], 0.11, c["grip"], label)


def _clutter(mesh: SceneMesh, layout: Layout, rng: np.random.Generator, avoid_people: bool = True) -> None:
    """Things that belong to no node: surgical lamps (they occlude), carts, bins, poles, wall cabinets."""
    t = layout.table
    for _ in range(int(rng.integers(1, 3))):
        centre = np.array(
            [t[0] + rng.uniform(-1.3, 1.3), t[1] + rng.uniform(-1.0, 1.0), rng.uniform(1.95, 2.25)]
        )
        mesh.cuboid(centre, (0.5, 0.5, 0.1), (230, 230, 225), CLUTTER, yaw=float(rng.uniform(0, 90)))
        mesh.beam(
            centre + [0, 0, 0.05], [centre[0] + 0.3, centre[1], ROOM_HEIGHT], 0.06, (170, 170, 175), CLUTTER
        )
    occupied = [
        (p.x, p.y)
        for p in layout.placements.values()
        if p.kind != "instrument" and (avoid_people or p.kind == "furniture")
    ]
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(10):
            x, y = (
                rng.uniform(ROOM_X[0] + 0.4, ROOM_X[1] - 0.4),
                rng.uniform(ROOM_Y[0] + 0.4, ROOM_Y[1] - 0.4),
            )
            if all(math.hypot(x - a, y - b) > 1.0 for a, b in occupied):
                break
        else:
            continue
        occupied.append((x, y))
        kind = int(rng.integers(3))
        colour = tuple(int(v) for v in rng.integers(40, 220, 3))
        if kind == 0:  # bin
            mesh.cuboid((x, y, 0.25), (0.35, 0.35, 0.5), colour, CLUTTER)
        elif kind == 1:  # cart
            mesh.cuboid((x, y, 0.45), (0.6, 0.4, 0.9), colour, CLUTTER, yaw=float(rng.uniform(0, 90)))
        else:  # infusion pole with a bag
            mesh.beam((x, y, 0.0), (x, y, 1.8), 0.03, (190, 190, 195), CLUTTER)
            mesh.cuboid((x + 0.05, y, 1.65), (0.1, 0.06, 0.18), (235, 240, 250), CLUTTER)
    for _ in range(int(rng.integers(1, 4))):
        wall = int(rng.integers(4))
        along = rng.uniform(-2.0, 2.0)
        width, height = rng.uniform(0.6, 1.4), rng.uniform(0.8, 1.9)
        colour = tuple(int(v) for v in rng.integers(120, 230, 3))
        if wall < 2:
            x = ROOM_X[0] + 0.2 if wall == 0 else ROOM_X[1] - 0.2
            mesh.cuboid((x, along, height / 2), (0.4, width, height), colour, CLUTTER)
        else:
            y = ROOM_Y[0] + 0.2 if wall == 2 else ROOM_Y[1] - 0.2
            mesh.cuboid((along * 1.3, y, height / 2), (width, 0.4, height), colour, CLUTTER)


# --- drawing ------------------------------------------------------------------------------------------
@dataclass
class Shaded:
    """A mesh lit once per scan: arrays shared by the six cameras."""

    quads: np.ndarray  # (F, 4, 3)
    centres: np.ndarray  # (F, 3)
    normals: np.ndarray  # (F, 3)
    colours: np.ndarray  # (F, 3) float
    labels: np.ndarray  # (F,)
    ball_centres: np.ndarray  # (B, 3)
    ball_radii: np.ndarray  # (B,)
    ball_colours: np.ndarray  # (B, 3)
    ball_labels: np.ndarray  # (B,)
    knee: np.ndarray
    walls: tuple[tuple[int, int, int], tuple[int, int, int]]


def shade(
    mesh: SceneMesh, style: Style, knee: np.ndarray, walls=((176, 192, 186), (118, 128, 124))
) -> Shaded:
    quads, face_colours, face_labels = mesh.faces()
    centres = quads.mean(1)
    normals = np.cross(quads[:, 1] - quads[:, 0], quads[:, 3] - quads[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = np.clip(normals @ style.light, 0, None)
    light = style.ambient + (1 - style.ambient) * light
    colours = face_colours * light[:, None] * style.tint
    balls = mesh.balls
    return Shaded(
        quads=quads,
        centres=centres,
        normals=normals,
        colours=colours,
        labels=face_labels,
        ball_centres=np.array([b[0] for b in balls]).reshape(-1, 3),
        ball_radii=np.array([b[1] for b in balls]),
        ball_colours=np.array([b[2] for b in balls], float).reshape(-1, 3) * (0.9 * style.tint),
        ball_labels=np.array([b[3] for b in balls], np.uint8),
        knee=knee,
        walls=(tuple(np.asarray(walls[0]) * style.tint), tuple(np.asarray(walls[1]) * style.tint)),
    )


def render_view(
    scene: Shaded, camera: Camera, style: Style, rng: np.random.Generator, *, noise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """One camera's image and label map.

    Returns:
        ``(rgb, labels)``: (H, W, 3) uint8 and (H, W) uint8 (node index + 1, 0 room, 255 clutter).
    """
    w, h = camera.width, camera.height
    canvas = Image.new("I", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    palette = [np.asarray(scene.walls[0], float)]
    labels = [ROOM]
    # The floor first (clipped at the near plane: it reaches behind the camera), then the scene far to near.
    floor = np.array(
        [
            [ROOM_X[0], ROOM_Y[0], 0],
            [ROOM_X[1], ROOM_Y[0], 0],
            [ROOM_X[1], ROOM_Y[1], 0],
            [ROOM_X[0], ROOM_Y[1], 0],
        ]
    )
    floor_px = _clip_project(floor, camera)
    if floor_px is not None:
        draw.polygon(floor_px, fill=1)
    palette.append(np.asarray(scene.walls[1], float))
    labels.append(ROOM)

    facing = ((scene.centres - camera.position) * scene.normals).sum(1) < 0
    quads = scene.quads[facing]
    uv, z = camera.project(quads)  # (F, 4, 2), (F, 4)
    in_front = (z > NEAR).all(1)
    uv = uv[in_front]
    q_depth = np.linalg.norm(scene.centres[facing][in_front] - camera.position, axis=1)
    q_colour = scene.colours[facing][in_front]
    q_label = scene.labels[facing][in_front]

    b_uv, b_z = camera.project(scene.ball_centres)
    b_keep = b_z > NEAR
    b_uv, b_z = b_uv[b_keep], b_z[b_keep]
    b_r = camera.intrinsics[0, 0] * scene.ball_radii[b_keep] / b_z
    b_depth = (
        np.linalg.norm(scene.ball_centres[b_keep] - camera.position, axis=1) - 0.5 * scene.ball_radii[b_keep]
    )

    n_quads = len(uv)
    depth = np.concatenate([q_depth, b_depth])
    order = np.argsort(-depth, kind="stable")
    base = len(palette)
    palette = np.concatenate([np.stack(palette), q_colour, scene.ball_colours[b_keep]])
    labels = np.concatenate([np.asarray(labels, np.uint8), q_label, scene.ball_labels[b_keep]])
    uv_list = uv.reshape(-1, 8).tolist()  # flat [u0, v0, ..., u3, v3] per quad, as Pillow takes them
    for item in order.tolist():
        if item < n_quads:
            draw.polygon(uv_list[item], fill=base + item)
        else:
            k = item - n_quads
            (u, v), rad = b_uv[k], b_r[k]
            draw.ellipse((u - rad, v - rad, u + rad, v + rad), fill=base + item)
    ids = np.asarray(canvas)
    rgb = palette[ids]  # (H, W, 3)
    rgb *= _light_field(camera, scene.knee, style)[..., None]
    if noise:
        rgb += _noise_tile(h, w, rng) * style.noise
    return np.clip(rgb, 0, 255).astype(np.uint8), labels[ids]


def _light_field(camera: Camera, knee: np.ndarray, style: Style) -> np.ndarray:
    """Exposure x vignette + the surgical lamp's bright spot on the table."""
    (u, v), _ = camera.project(knee)
    yy, xx = _grid(camera.height, camera.width)
    spot = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * (0.18 * camera.width) ** 2))
    return (
        style.exposure.get(camera.camera_id, 1.0) * _vignette(camera.height, camera.width) + style.spot * spot
    )


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


@lru_cache(maxsize=8)
def _vignette(h: int, w: int) -> np.ndarray:
    yy, xx = _grid(h, w)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    return (1.0 - 0.18 * r2).astype(np.float32)


@lru_cache(maxsize=1)
def _noise_source() -> np.ndarray:
    return np.random.default_rng(12345).standard_normal((1024 + 64, 1024 + 64, 3)).astype(np.float32)


def _noise_tile(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise: a random crop of one fixed noise field (fast, and deterministic per seed)."""
    source = _noise_source()
    if h > source.shape[0] - 64 or w > source.shape[1] - 64:
        return rng.standard_normal((h, w, 3)).astype(np.float32)
    y0, x0 = int(rng.integers(0, source.shape[0] - h)), int(rng.integers(0, source.shape[1] - w))
    return source[y0 : y0 + h, x0 : x0 + w]


def _clip_project(polygon: np.ndarray, camera: Camera) -> list[tuple[float, float]] | None:
    """Clip a world polygon at the near plane (Sutherland-Hodgman, one plane) and project it."""
    cam = camera.to_camera(polygon)
    out = []
    for i in range(len(cam)):
        a, b = cam[i], cam[(i + 1) % len(cam)]
        a_in, b_in = a[2] > NEAR, b[2] > NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    if len(out) < 3:
        return None
    pts = np.stack(out)
    k = camera.intrinsics
    u = k[0, 0] * pts[:, 0] / pts[:, 2] + k[0, 2]
    v = k[1, 1] * pts[:, 1] / pts[:, 2] + k[1, 2]
    return list(zip(u.tolist(), v.tolist(), strict=True))
