"""Shared test helpers: where the real 4D-OR files are, and a writer for tiny datasets in 4D-OR's layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

# Tests never download: the Hugging Face libraries answer from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_4DOR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "4d-or"
REAL_VALIDATION = SHARED_4DOR / "relationships_validation.json"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread beats two on a busy 2-core machine (no spin-waiting threads). Modules
    that train or sample tiny models opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def real_validation_file() -> Path:
    if not REAL_VALIDATION.is_file():
        pytest.skip(f"real 4D-OR annotations not found at {REAL_VALIDATION} (../shared is absent)")
    return REAL_VALIDATION


def scan_entry(take: int, scan: str, objects: list[str], relations: list, roles: dict | None = None) -> dict:
    """A scan in 4D-OR's JSON form; ``relations`` are (sub_key, obj_key, pred_name) with 1-based keys."""
    from or_synth.data.vocabulary import PREDICATES

    return {
        "take_idx": take,
        "scan": scan,
        "objects": {str(i + 1): name for i, name in enumerate(objects)},
        "relationships": [[s, o, PREDICATES.index(p), p] for s, o, p in relations],
        "human_idx_to_name": roles or {},
    }


def write_layout_dataset(
    root: Path,
    scans: dict[str, list[dict]],
    *,
    image_hw: tuple[int, int] = (24, 32),
    frame_offset: int = 1000,
) -> Path:
    """Write a tiny dataset in 4D-OR's on-disk layout.

    Frame ids are deliberately not scan ids (``frame_offset + 7 * scan``, zero-padded to 6), as in 4D-OR.
    Each image is a flat colour that encodes (take, scan, camera), so tests can check which file was read.
    """
    root.mkdir(parents=True, exist_ok=True)
    for split, entries in scans.items():
        (root / f"relationships_{split}.json").write_text(json.dumps({"scans": entries}))
        for take in sorted({e["take_idx"] for e in entries}):
            take_scans = sorted(int(e["scan"]) for e in entries if e["take_idx"] == take)
            folder = root / f"export_holistic_take{take}_processed"
            (folder / "colorimage").mkdir(parents=True, exist_ok=True)
            frames = []
            for index in range(max(take_scans) + 1):
                ids = {f"color_{c}": f"{frame_offset + 7 * index:06d}" for c in range(1, 7)}
                frames.append([f"{index * 1000}", {"pcd": f"{index:06d}", **ids}])
                for c in range(1, 7):
                    colour = (take * 20, index * 10 % 250, c * 40)
                    Image.new("RGB", image_hw[::-1], colour).save(
                        folder / "colorimage" / f"camera0{c}_colorimage-{ids[f'color_{c}']}.jpg", quality=100
                    )
            (folder / "timestamp_to_pcd_and_frames_list.json").write_text(json.dumps(frames))
    return root


def small_scene(take: int, scan: str) -> dict:
    """A plausible knee-surgery scan: patient on the table, head surgeon drilling, assistant holding."""
    return scan_entry(
        take,
        scan,
        ["Patient", "human_0", "human_1", "instrument", "instrument_table", "operating_table"],
        [
            (1, 6, "LyingOn"),
            (6, 1, "CloseTo"),
            (2, 1, "Drilling"),
            (1, 2, "CloseTo"),
            (3, 4, "Holding"),
            (4, 3, "CloseTo"),
        ],
        {"human_0": "head-surgeon", "human_1": "assistant-surgeon"},
    )


def render_tiny_dataset(root, size: int):
    """The embedded dataset at its smallest: 6 takes (train 1, 3 / validation 4, 8 / test 2, 6) x 8 scans."""
    from or_synth.render import load_config, render

    render(
        load_config(
            [f"root={root}", "takes=6", "scans_per_take=8", f"image_size=[{size},{size}]", "progress=false"]
        )
    )
    return root
