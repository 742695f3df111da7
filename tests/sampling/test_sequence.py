"""``python -m or_synth.sequence`` with a tiny pipeline on real 4D-OR validation graphs (take 4, scans 204-210: the
assistant starts Assisting at 207, both surgeons start Preparing at 209): frames in 4D-OR's layout that the dataset
class reads as a take, an unchanged frame that is the previous frame again, a changed one regenerated only where
it changed, the independent control, resuming from the last complete frame, and bad input refused before any
sampling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from or_synth import sequence as sequence_command
from or_synth.data.dataset import FourDORDataset
from or_synth.generator.editing import keep_mask_for
from or_synth.sampling.sequence import (
    SequenceRefused,
    changed_region,
    latent_path,
    prepare_sequence,
    sequence,
)
from tests.helpers import REAL_VALIDATION, assert_refused, file_hashes, run_command, sampling_config

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not REAL_VALIDATION.is_file(), reason="needs ../shared/datasets/4d-or"),
]
CAMERAS = (1, 4)


def overrides(pipeline_dir, out, *extra):
    return [f"pipeline={pipeline_dir}", f"graphs={REAL_VALIDATION}", "take=4", "scans=204:211", f"out={out}",
            "steps=2", f"cameras=[{','.join(map(str, CAMERAS))}]", "progress=false", *extra]  # fmt: skip


def run(pipeline_dir, out, *extra) -> dict:
    return sequence(sampling_config("sequence", *overrides(pipeline_dir, out, *extra)))


@pytest.fixture(scope="module")
def coherent(pipeline_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequence") / "take4"
    return out, run(pipeline_dir, out)


def frame(out, scan: int, camera: int) -> np.ndarray:
    frame_id = f"{1000 + 3 * scan + camera + 30 * 4:06d}"
    path = (
        out / "export_holistic_take4_processed" / "colorimage" / f"camera0{camera}_colorimage-{frame_id}.jpg"
    )
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def annotation(out, scan: int) -> dict:
    return json.loads(
        (out / "export_holistic_take4_processed" / "or_synth_annotations" / f"{scan:06d}.json").read_text()
    )


def test_a_sequence_is_a_take_of_4dor_with_videos_strip_and_manifest(coherent, tmp_path):
    out, result = coherent
    assert result["complete"] and result["frames"] == 7
    dataset = FourDORDataset(
        out, "validation", cameras=CAMERAS, load_images=True, processed_root=tmp_path / "p"
    )
    assert [d.scan for d in dataset] == [f"{i:06d}" for i in range(204, 211)]
    assert dataset[0].images.shape[1] == len(CAMERAS)
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 7 * len(CAMERAS) and json.loads(lines[0])["layout"] == "rendered"
    for camera in CAMERAS:
        with Image.open(out / "videos" / f"camera0{camera}.webp") as video:
            # Pillow merges repeated frames into one shown longer: 204-206 are one frame
            assert video.is_animated and 2 <= video.n_frames <= 7
            video.seek(video.n_frames - 1)
            assert np.array_equal(np.asarray(video.convert("RGB"), np.int16), frame(out, 210, camera))
    assert Image.open(out / "strip.png").size[0] > 0


def test_unchanged_frames_repeat_and_changed_ones_regenerate_only_what_changed(coherent):
    out, _ = coherent
    # 204 -> 205 -> 206: the same graph and layout, so the same frame (and nothing regenerated)
    for camera in CAMERAS:
        assert np.array_equal(frame(out, 204, camera), frame(out, 205, camera))
        assert annotation(out, 205)["cameras"][str(camera)]["regenerated"] == 0.0
    # 208 -> 209: Preparing starts, the surgeons walk to the knee: part of the view, not all of it, is redrawn
    shares = [annotation(out, 209)["cameras"][str(c)]["regenerated"] for c in CAMERAS]
    assert all(0.0 < s < 1.0 for s in shares), shares
    # the kept latent cells are the previous frame's exactly
    before, after = (load_file(latent_path(out, f"{s:06d}"))["latents"] for s in (208, 209))
    plan = (
        prepare_sequence(sampling_config("sequence", *overrides(out.parent / "unused", out)).copy())
        if False
        else None
    )
    del plan
    kept = (before == after).all(dim=1)
    assert kept.any() and not kept.all()


def test_changed_region_follows_identity_not_node_numbers():
    from or_synth.data import load_scene_graphs
    from or_synth.data.vocabulary import Vocabulary
    from tests.helpers import SHARED_4DOR

    records = [
        r for r in load_scene_graphs(REAL_VALIDATION, Vocabulary.load(SHARED_4DOR)).records if r.take == 4
    ]
    a, b = records[205], records[206]  # same graph
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 3
    assert not changed_region(a, b, mask, mask.copy(), dilation=1).any()
    moved = np.roll(mask, 2, axis=1)
    region = changed_region(a, b, mask, moved, dilation=0)
    assert region.sum() == 8  # the pixels the node left and the ones it entered
    assert keep_mask_for(__import__("torch").from_numpy(region)[None], (4, 4)).min() == 0.0


def test_independent_sampling_redraws_every_frame(pipeline_dir, coherent, tmp_path):
    out = tmp_path / "independent"
    result = run(pipeline_dir, out, "temporal=independent")
    assert result["regenerated_share"] == {str(c): 1.0 for c in CAMERAS}
    assert not np.array_equal(frame(out, 204, 1), frame(out, 205, 1))
    # its first frame differs from the coherent one's (per-scan seed, not per-camera noise)
    assert (
        json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["seed"]
        != json.loads((coherent[0] / "manifest.jsonl").read_text().splitlines()[0])["seed"]
    )


def test_an_interrupted_sequence_resumes_from_the_last_complete_frame(pipeline_dir, coherent, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(coherent[0], out)
    (out / "or_synth_sequence.json").write_text(
        json.dumps(
            {
                "job": json.loads((coherent[0] / "or_synth_sequence.json").read_text())["job"],
                "complete": False,
            }
        )
    )
    for name in ("manifest.jsonl", "strip.png"):
        (out / name).unlink()
    last = out / "export_holistic_take4_processed" / "or_synth_annotations" / "000210.json"
    last.unlink()  # the last frame was cut short: its images may be there, its marker is not
    frames_before = {
        k: v for k, v in file_hashes(out / "export_holistic_take4_processed" / "colorimage").items()
    }
    result = run(pipeline_dir, out)
    assert result["complete"] and result["frames_drawn_this_run"] == 1
    assert file_hashes(out / "export_holistic_take4_processed" / "colorimage") == frames_before  # same bytes
    assert (out / "manifest.jsonl").read_text() == (coherent[0] / "manifest.jsonl").read_text()


def test_other_settings_are_refused_without_overwrite(pipeline_dir, coherent, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(coherent[0], out)
    before = file_hashes(out)
    with pytest.raises(SequenceRefused, match="dilation"):
        run(pipeline_dir, out, "dilation=3")
    assert file_hashes(out) == before
    assert run(pipeline_dir, out, "dilation=3", "overwrite=true")["complete"]


def write_graphs(path, scans):
    path.write_text(json.dumps({"scans": scans}))
    return path


@pytest.mark.parametrize(
    "case, extra, named",
    [
        ("shuffled", [], "out of order"),
        ("gap", [], "has no scan 000206"),
        ("camera", ["cameras=[1,7]"], "camera 7"),
        ("take", ["take=5"], "no scans of take 5"),
        ("scans", ["scans=210:204"], "scans="),
    ],
)
def test_bad_input_is_one_line_before_any_sampling(pipeline_dir, tmp_path, case, extra, named):
    scans = json.loads(REAL_VALIDATION.read_text())["scans"]
    take4 = [s for s in scans if s["take_idx"] == 4][204:211]
    if case == "shuffled":
        take4[1], take4[2] = take4[2], take4[1]
    if case == "gap":
        del take4[2]
    graphs = write_graphs(tmp_path / "relationships_validation.json", take4)
    shutil.copy(REAL_VALIDATION.parent / "relationships.txt", tmp_path)
    shutil.copy(REAL_VALIDATION.parent / "classes.txt", tmp_path)
    out = tmp_path / "out"
    args = [a for a in overrides(pipeline_dir, out) if not a.startswith("graphs=")] + [
        f"graphs={graphs}",
        *extra,
    ]
    assert_refused(run_command(sequence_command.main, *args), named)
    assert not out.exists()
