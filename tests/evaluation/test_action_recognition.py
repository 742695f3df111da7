"""The downstream action-recognition study on tiny inputs: result shapes, determinism, the CI, a learnable toy
task against its label-shuffled copy, and the refusals (held-out takes, too few synthetic images, sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from or_synth.data import MAIN_ACTIONS
from or_synth.evaluation.action_recognition import (
    LabelledImages,
    bootstrap_ci,
    downstream_study,
    stratified_scans,
    train_and_score,
)

SIZE = 32
# Colours far apart: a class is its image's colour, so any working classifier separates them.
PALETTE = torch.tensor([[230, 30, 30], [30, 200, 40], [40, 60, 230], [230, 220, 40]], dtype=torch.uint8)


def colour_images(
    scans: int,
    views: int = 2,
    classes: int = 4,
    takes: tuple[int, ...] = (1,),
    seed: int = 0,
    size: int = SIZE,
) -> LabelledImages:
    """``scans`` scans x ``views`` noisy flat-colour images; the colour encodes the class (scan i: class
    i % classes), ``takes`` are assigned round-robin."""
    generator = torch.Generator().manual_seed(seed)
    scan_labels = torch.arange(scans) % classes
    labels = scan_labels.repeat_interleave(views)
    noise = torch.randint(-25, 26, (len(labels), 3, size, size), generator=generator)
    images = (PALETTE[labels][:, :, None, None].int() + noise).clamp(0, 255).to(torch.uint8)
    groups = torch.arange(scans).repeat_interleave(views)
    scan_takes = torch.tensor([takes[i % len(takes)] for i in range(scans)])
    return LabelledImages(images, labels, groups, scan_takes.repeat_interleave(views))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_labelled_images_validates_and_subsets():
    images = colour_images(6)
    part = images.subset([0, 1, 4])
    assert len(part) == 3 and part.images.shape == (3, 3, SIZE, SIZE)
    assert part.groups.tolist() == [0, 0, 2] and part.labels.dtype == torch.int64
    with pytest.raises(ValueError, match="labels must have shape"):
        LabelledImages(images.images, images.labels[:-1], images.groups, images.takes)
    with pytest.raises(ValueError, match="uint8"):
        LabelledImages(images.images.float(), images.labels, images.groups, images.takes)
    with pytest.raises(ValueError, match="MAIN_ACTIONS"):
        LabelledImages(images.images, images.labels + len(MAIN_ACTIONS), images.groups, images.takes)


def test_train_and_score_keys_and_determinism():
    train, test = colour_images(12, seed=0), colour_images(8, seed=1, takes=(2,))
    first = train_and_score(train, test, steps=3, batch_size=8, seed=5, lr=3e-3)
    again = train_and_score(train, test, steps=3, batch_size=8, seed=5, lr=3e-3)
    assert {"macro_f1", "accuracy", "macro_f1_per_image", "per_class", "scans", "images", "seconds"} <= set(
        first
    )
    assert first["scans"] == 8 and first["images"] == 16 and first["classes_scored"] == 4
    assert set(first["per_class"]) == set(MAIN_ACTIONS)
    assert set(first["per_class"]["none"]) == {"support", "f1", "precision", "recall"}
    assert first["per_class"][MAIN_ACTIONS[0]]["support"] == 2  # per scan: 8 scans over 4 classes
    assert first["per_class"][MAIN_ACTIONS[5]]["f1"] is None  # absent from the test set: not scored
    drop = {"seconds"}
    assert {k: v for k, v in first.items() if k not in drop} == {
        k: v for k, v in again.items() if k not in drop
    }


def test_a_learnable_task_scores_high_and_its_shuffled_copy_does_not():
    """Class = colour: the classifier must learn it; with the training labels shuffled across scans the same
    run must fall to chance, so this test can fail."""
    train, test = colour_images(32, seed=0), colour_images(16, seed=1, takes=(2,))
    learned = train_and_score(train, test, steps=40, batch_size=16, seed=0, lr=3e-3)
    permutation = torch.from_numpy(np.random.default_rng(0).permutation(32))
    scan_labels = (torch.arange(32) % 4)[permutation]
    shuffled = LabelledImages(train.images, scan_labels.repeat_interleave(2), train.groups, train.takes)
    chance = train_and_score(shuffled, test, steps=40, batch_size=16, seed=0, lr=3e-3)
    assert learned["macro_f1"] >= 0.9, learned["macro_f1"]
    assert chance["macro_f1"] <= 0.6, chance["macro_f1"]


def test_bootstrap_ci_contains_the_mean():
    values = [0.41, 0.47, 0.52]
    low, high = bootstrap_ci(values)
    assert low <= np.mean(values) <= high and low >= min(values) and high <= max(values)
    assert bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)
    assert bootstrap_ci(values) == bootstrap_ci(values)  # seeded


def test_stratified_scans_keep_every_action_when_they_can():
    labels = np.array([0] * 40 + [1] * 8 + [2] * 2)
    rows = stratified_scans(labels, 10, np.random.default_rng(0))
    assert len(rows) == 10 and len(set(rows)) == 10
    assert set(labels[rows]) == {0, 1, 2}
    assert len(stratified_scans(labels, 2, np.random.default_rng(0))) == 2


def tiny_study(**changes):
    real_train = colour_images(16, takes=(1, 3), seed=0)
    synthetic = colour_images(24, takes=(1,), seed=2)
    extra_real = colour_images(24, takes=(3,), seed=3)
    real_test = colour_images(8, takes=(2, 4), seed=1)
    kwargs = dict(
        real_train=real_train,
        synthetic=synthetic,
        real_test=real_test,
        extra_real=extra_real,
        seeds=(0, 1),
        ratios=(0.0, 1.0),
        fractions=(1.0, 0.5),
        steps=2,
        batch_size=8,
    )
    return downstream_study(**{**kwargs, **changes})


def test_downstream_study_rows_controls_and_gains():
    result = tiny_study()
    arms = [(r["fraction"], r["arm"], r["ratio"], r["steps"]) for r in result["rows"]]
    assert arms == [
        (1.0, "real_only", 0.0, 2),
        (1.0, "synthetic", 1.0, 4),
        (1.0, "oracle", 1.0, 4),
        (1.0, "matched_compute", 0.0, 4),
        (0.5, "real_only", 0.0, 2),
        (0.5, "synthetic", 1.0, 4),
        (0.5, "oracle", 1.0, 4),
        (0.5, "matched_compute", 0.0, 4),
    ]
    first, synthetic = result["rows"][0], result["rows"][1]
    assert first["real_images"] == 32 and first["added_images"] == 0 and synthetic["added_images"] == 32
    assert result["rows"][4]["real_scans"] == 8
    for row in result["rows"]:
        assert len(row["macro_f1"]) == 2 and row["ci95"][0] <= row["mean"] <= row["ci95"][1]
        assert set(row["per_class"]) == set(MAIN_ACTIONS)
    gain = synthetic["gain_over_real_only"]
    assert gain["per_seed"] == pytest.approx(
        [a - b for a, b in zip(synthetic["macro_f1"], first["macro_f1"], strict=True)], abs=1e-3
    )
    assert (
        "matched_compute" in result["definitions"] and result["best_synthetic_ratio"]["1.0"]["ratio"] == 1.0
    )


def test_downstream_study_refuses_held_out_takes_missing_images_and_size_mismatch():
    leaked = colour_images(24, takes=(1, 2), seed=2)  # take 2 is a test take here
    with pytest.raises(ValueError, match=r"synthetic has images of take\(s\) \[2\]"):
        tiny_study(synthetic=leaked)
    with pytest.raises(ValueError, match=r"extra_real has images of take\(s\) \[2\]"):
        tiny_study(extra_real=leaked)
    with pytest.raises(ValueError, match="not enough synthetic images: ratio 2.0 .* needs 64, got 48"):
        tiny_study(ratios=(0.0, 2.0))
    with pytest.raises(ValueError, match="different sizes"):
        tiny_study(synthetic=colour_images(24, takes=(1,), size=16))
    with pytest.raises(ValueError, match="synthetic is empty"):
        tiny_study(synthetic=colour_images(24).subset([]))


def test_benchmark_runs_end_to_end_on_a_tiny_render(tiny_render, tmp_path):
    """``benchmarks.action_recognition.run`` without the shipped generator: the "synthetic" manifest lists
    copies of real take-1 renders (the sampler's manifest format), everything else is the real code path."""
    import json

    from PIL import Image

    from benchmarks import action_recognition as bench
    from or_synth.data import FourDORDataset

    root = tiny_render
    dataset = FourDORDataset(
        root, "train", load_images=True, cameras=(1, 2), processed_root=tmp_path / "processed"
    )
    out = tmp_path / "samples"
    (out / "images").mkdir(parents=True)
    lines = []
    for index in range(len(dataset)):
        graph = dataset[index]
        if int(graph.take) != 1:  # the "synthetic" graphs: take 1, as the benchmark samples them
            continue
        for camera, image in zip((1, 2), graph.images[0], strict=True):
            name = f"images/take{int(graph.take)}_scan{graph.scan}_cam{camera}_s0.png"
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(out / name)
            source = str(root / "relationships_train.json")
            lines.append(
                {
                    "image": name,
                    "take": int(graph.take),
                    "scan": graph.scan,
                    "camera": camera,
                    "source": source,
                }
            )
    (out / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = bench.parse_args(
        [
            f"--dataset-root={root}",
            f"--manifest={out / 'manifest.jsonl'}",
            f"--extra-root={tmp_path / 'extra'}",
            "--real-scans=4",
            "--cameras",
            "1",
            "2",
            "--size=32",
            "--steps=1",
            "--batch-size=4",
            "--seeds",
            "0",
            "--fractions",
            "1.0",
            "--ratios",
            "0",
            "1",
        ]
    )
    result = bench.run(args)
    arms = [(row["arm"], row["ratio"], row["real_images"], row["added_images"]) for row in result["summary"]]
    assert arms == [
        ("real_only", 0.0, 8, 0),
        ("synthetic", 1.0, 8, 8),
        ("oracle", 1.0, 8, 8),
        ("matched_compute", 0.0, 8, 0),
    ]
    assert result["setup"]["test"].startswith("takes [2, 4, 6, 8]")
    assert result["study"]["settings"]["sizes"] == {
        "real_train": 8,
        "synthetic": 16,
        "real_test": 64,
        "extra_real": 16,
    }
    assert (tmp_path / "extra" / "or_synth_render.json").is_file() and "generate" not in result["timings"]
