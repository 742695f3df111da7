"""The 14 named joints of each drawn person (4D-OR's pose annotation order), from the placement the painter
draws: the stand-in's ``annotations/{scan}.json`` and, projected, its ``2D_keypoint_annotations.json``.

The joints follow the painter's body (``painter._person``, ``painter._patient_lying``): feet on the floor under the
placement, the torso leaning toward the work, hands at the hand points the relations put them.
"""

from __future__ import annotations

import math

import numpy as np

from or_synth.data.poses import JOINTS
from or_synth.render.layout import Layout, Placement
from or_synth.render.room import KNEE, TABLE_TOP


def standing_joints(p: Placement) -> np.ndarray:
    """(14, 3) world metres of a standing person."""
    r = math.radians(p.yaw)
    f = np.array([math.cos(r), math.sin(r), 0.0])
    s = np.array([-f[1], f[0], 0.0])  # the person's left
    base = np.array([p.x, p.y, 0.0])
    torso = base + p.lean * f
    up = np.array([0.0, 0.0, 1.0])
    joint = {
        "head": base + (1.5 * p.lean + 0.02) * f + up * (1.57 - 0.4 * p.lean),
        "neck": torso + up * 1.45,
    }
    for side, name, hand in ((1.0, "left", p.left), (-1.0, "right", p.right)):
        shoulder = torso + side * 0.2 * s + up * 1.38
        wrist = hand.point if hand is not None else base + side * 0.29 * s + 0.06 * f + up * 0.88
        joint[f"{name}shoulder"] = shoulder
        joint[f"{name}elbow"] = (shoulder + wrist) / 2 + side * 0.05 * s - up * 0.05
        joint[f"{name}wrist"] = wrist
        joint[f"{name}hip"] = base + side * 0.1 * s + up * 0.9
        joint[f"{name}knee"] = base + side * 0.1 * s + up * 0.48
        joint[f"{name}foot"] = base + side * 0.1 * s + up * 0.05
    return np.stack([joint[name] for name in JOINTS])


def lying_joints(p: Placement) -> np.ndarray:
    """(14, 3) world metres of the patient lying on the table (head toward -x, the operated knee at ``KNEE``)."""
    x, y, z = p.x, p.y, TABLE_TOP + 0.1
    joint = {
        "head": np.array([x - 0.93, y, z + 0.02]),
        "neck": np.array([x - 0.8, y, z]),
        "lefthip": np.array([x, y + 0.12, z]),
        "righthip": np.array([x, y - 0.12, z]),
        "leftknee": np.array([x + KNEE[0], y + KNEE[1], KNEE[2]]),
        "leftfoot": np.array([x + 0.78, y + KNEE[1], TABLE_TOP + 0.08]),
        "rightknee": np.array([x + 0.42, y - 0.12, z]),
        "rightfoot": np.array([x + 0.85, y - 0.12, z - 0.02]),
    }
    for side, name in ((1.0, "left"), (-1.0, "right")):
        joint[f"{name}shoulder"] = np.array([x - 0.7, y + side * 0.2, z])
        joint[f"{name}elbow"] = np.array([x - 0.45, y + side * 0.25, z])
        joint[f"{name}wrist"] = np.array([x - 0.2, y + side * 0.27, z])
    return np.stack([joint[name] for name in JOINTS])


def layout_people(layout: Layout) -> dict[str, np.ndarray]:
    """Each drawn person's pose-annotation name -> (14, 3) world millimetres.

    Names sort into the graph's ``human_k`` order (``person_0`` < ``person_1`` ...; 4D-OR sorts ``humanName`` to
    number its humans), and the Patient is ``Patient``, as in the real annotation."""
    names = layout.record.object_names
    people = {}
    for node, place in sorted(layout.placements.items()):
        name = names[node]
        if place.kind == "patient_lying":
            people["Patient"] = lying_joints(place) * 1000
        elif place.kind == "person":
            key = "Patient" if name == "Patient" else f"person_{name.removeprefix('human_')}"
            people[key] = standing_joints(place) * 1000
    return people
