"""Helpers the tests share (one module; conftest files hold fixtures only): tiny datasets in 4D-OR's layout,
tiny models of the real architectures, and short calls of the real commands.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler
from hydra import compose, initialize_config_dir
from PIL import Image, ImageDraw

from or_synth.cli import CONFIG_DIR, load_config
from or_synth.data import load_scene_graphs
from or_synth.data.annotations import mask_path, read_scan_annotation
from or_synth.data.images import frame_index
from or_synth.data.manifest import MANIFEST, ManifestLine, write_manifest
from or_synth.data.vocabulary import PREDICATES, ROLES, SPLIT_TAKES, Vocabulary
from or_synth.encoders import build_scene_graph_encoder
from or_synth.generator import GraphConditioner, ORScenePipeline, build_unet, downsampling_factor
from or_synth.generator.layout_predictor import LayoutPredictor
from or_synth.train import train

# The cameras copy_as_samples lists: two of six keep the evaluation tests fast.
COPY_CAMERAS = (1, 2)
SENSITIVITY_EDIT = "predicate head-surgeon Patient Sawing"


# --- tiny datasets in 4D-OR's layout, and where the real 4D-OR files are ----------
SHARED_4DOR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "4d-or"


REAL_VALIDATION = SHARED_4DOR / "relationships_validation.json"


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


# --- tiny label-embedding towers of the real architectures, and graphs ----------
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
    "text_cfg": {"context_length": 32, "width": 32, "heads": 2, "layers": 2},
}


TINY_D2V_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


TINY_D2V_VISION = {**TINY_D2V_TEXT, "image_size": 32, "patch_size": 8}


def tiny_clip_cfg(cache_dir: Path | None, **graph) -> dict:
    return {
        "towers": {"backend": "open_clip", "model": None, "pretrained": None, "arch": TINY_CLIP, "seed": 0},
        "image_tower": {"trainable_blocks": 0},
        "graph": {"dim": 32, "hidden": 64, "layers": 2, **graph},
        "cache_dir": str(cache_dir) if cache_dir else None,
    }


def knee_graphs():
    """Four graphs of different sizes: the small knee scene, one without edges, one with an isolated node,
    a bigger one."""
    from or_synth.data import parse_scan, record_to_data
    from or_synth.data.vocabulary import Vocabulary

    vocab = Vocabulary()
    entries = [
        small_scene(1, "000000"),
        scan_entry(1, "000001", ["Patient", "instrument", "operating_table"], []),
        scan_entry(
            1,
            "000002",
            ["Patient", "human_0", "instrument", "secondary_table"],
            [(2, 1, "Preparing"), (1, 2, "CloseTo")],
            {"human_0": "circulating-nurse"},
        ),
        scan_entry(
            1,
            "000003",
            [
                "Patient",
                "anesthesia_equipment",
                "human_0",
                "human_1",
                "human_2",
                "instrument",
                "instrument_table",
                "operating_table",
                "secondary_table",
            ],
            [
                (1, 8, "LyingOn"),
                (8, 1, "CloseTo"),
                (3, 1, "Sawing"),
                (1, 3, "CloseTo"),
                (4, 6, "Holding"),
                (6, 4, "CloseTo"),
                (5, 2, "Operating"),
                (2, 5, "CloseTo"),
                (4, 3, "Assisting"),
                (3, 4, "CloseTo"),
            ],
            {"human_0": "head-surgeon", "human_1": "assistant-surgeon", "human_2": "anaesthetist"},
        ),
    ]
    return [record_to_data(parse_scan(e, vocab), vocab) for e in entries]


# --- a tiny dataset whose images depend on the scene graph and the camera: every node label draws a block of its
# own colour at a label-specific place, every non-CloseTo triple a bar in the predicate's colour between its ends, and
# the camera shifts and mirrors the layout, so graph(+view) -> image retrieval is learnable, yet not from one pixel --------------------------------------------------------
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


# --- tiny generator components of the real architectures (AutoencoderKL, UNet2DConditionModel) ----------
TINY_UNET = {
    "arch": {
        "block_out_channels": [16, 32],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    }
}


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )


def tiny_pipeline(layout_channels: int = 4, vae=None) -> ORScenePipeline:
    """A pipeline drawing 16 px images through ``vae`` (default: :func:`tiny_vae`, f=2, 4 latent channels)."""
    torch.manual_seed(0)
    conditioner = GraphConditioner.from_encoder(
        build_scene_graph_encoder(tiny_clip_cfg(None)), layout_channels
    )
    channels, factor = (4, 2) if vae is None else (vae.config.latent_channels, downsampling_factor(vae))
    unet = build_unet(TINY_UNET, latent_channels=channels, sample_size=16 // factor, conditioner=conditioner)
    vae = tiny_vae() if vae is None else vae  # built after the UNet: the seeded weights stay as they were
    return ORScenePipeline(unet=unet, vae=vae, scheduler=DDPMScheduler(), graph_encoder=conditioner)


def saved_tiny_pipeline(tmp_path_factory, layout_channels: int = 4, name: str = "pipe"):
    """:func:`tiny_pipeline` saved as a pipeline folder (for the commands that take ``pipeline=DIR``)."""
    path = tmp_path_factory.mktemp("pipeline") / name
    tiny_pipeline(layout_channels=layout_channels).save_pretrained(path)
    return path


# --- small renders ----------
SMALL = ["takes=3", "scans_per_take=8", "image_size=[48,64]", "progress=false"]


def render_small(root: Path, *extra: str) -> dict:
    from or_synth.render import load_config, render

    return render(load_config([*SMALL, f"root={root}", *extra]))


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "processed"
    }


# --- training configs and runs ----------
def smoke_overrides(dataset_root: Path, work: Path) -> list[str]:
    """``debug=smoke`` on a test dataset, writing only under ``work`` (runs, processed files, label cache)."""
    return [
        "debug=smoke",
        f"dataset.root={dataset_root}",
        f"dataset.processed_root={work / 'processed'}",
        f"runs_root={work / 'runs'}",
        f"encoder.cache_dir={work / 'label_cache'}",
    ]


def compose_smoke_cfg(dataset_root: Path, work: Path, overrides: Sequence[str] = ()):
    """The smoke recipe (``stage=all`` unless an override says otherwise) on a test dataset; runs in ``work/runs``."""
    return load_config("train", [*smoke_overrides(dataset_root, work), *overrides])


def compose_train_cfg(dataset_root: Path, tmp_path: Path, overrides: Sequence[str] = ()):
    """Stage ``align`` of the smoke config on a dataset in 4D-OR's layout, its run in ``tmp_path / "run"``."""
    align = ["stage=align", "dataset=4dor", f"align.run_dir={tmp_path / 'run'}"]
    return compose_smoke_cfg(dataset_root, tmp_path, [*align, *overrides])


def smoke_command(dataset_root: Path, work: Path, *overrides: str) -> list[str]:
    """``python -m or_synth.train`` with :func:`smoke_overrides` and ``overrides``."""
    return [sys.executable, "-m", "or_synth.train", *smoke_overrides(dataset_root, work), *overrides]


def train_losses(run_dir: Path) -> list[float]:
    """The ``loss`` of every line of a run's ``train_log.jsonl``."""
    lines = (Path(run_dir) / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def latest_step(run_dir: Path) -> int:
    """The step of the checkpoint ``<run_dir>/checkpoints/latest`` names."""
    return int((Path(run_dir) / "checkpoints" / "latest").read_text().strip().removeprefix("step_"))


def one_thread_env() -> dict[str, str]:
    """The environment for a command whose numbers must match an in-process run under ``one_thread``."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def kill_after_checkpoint(command: list[str], run_dir: Path, step: int, cwd: Path, env=None) -> None:
    """Run ``command`` and SIGKILL it as soon as its latest checkpoint reaches ``step`` (the run must still be
    going then: otherwise the test proves nothing)."""
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    pointer, deadline = Path(run_dir) / "checkpoints" / "latest", time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if pointer.is_file() and latest_step(run_dir) >= step:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def interrupt_after_steps(command: list[str], run_dir: Path, steps: int, cwd: Path) -> tuple[int, str]:
    """Run ``command``, send SIGINT (Ctrl-C) once its ``train_log.jsonl`` has ``steps`` lines; (exit code,
    stderr)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log, deadline = Path(run_dir) / "train_log.jsonl", time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= steps:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


# --- evaluation inputs and calls ----------
def train_classifier(root: Path, work: Path, *extra: str) -> Path:
    overrides = [
        "stage=classifier",
        "debug=smoke",
        f"dataset.root={root}",
        f"dataset.processed_root={work / 'processed'}",
        f"runs_root={work / 'runs'}",
        "classifier.steps=6",
        *extra,
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        result = train(compose(config_name="train", overrides=overrides))
    return Path(result["classifier_dir"])


def copy_as_samples(
    root: Path, split: str, out: Path, *, shuffle_graphs: bool = False, layout: str | None = None
) -> Path:
    """A samples folder whose "generated" images are PNG copies of the split's real views (the manifest written
    by the data layer's writer, as or_synth.sample writes it). ``shuffle_graphs`` lists each image under the next
    scan's graph instead. ``layout="given"`` marks them as drawn from the dataset's masks (``layout=masks``);
    ``layout="saved"`` also copies each view's instance mask as its ``layout_image`` (``save_layouts=true``)."""
    source = root / f"relationships_{split}.json"
    records = load_scene_graphs(source, takes=SPLIT_TAKES[split]).records
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, record in enumerate(records):
        shown = records[(i + 1) % len(records)] if shuffle_graphs else record
        for camera in COPY_CAMERAS:
            real = frame_index(root, shown.take).image_path(shown.scan, camera)
            name = f"images/take{record.take}_scan{record.scan}_cam{camera}_s0.png"
            Image.open(real).convert("RGB").save(out / name)
            layout_image = None
            if layout == "saved":
                (out / "layouts").mkdir(exist_ok=True)
                frame = read_scan_annotation(root, shown.take, shown.scan).views[camera].frame_id
                layout_image = f"layouts/take{record.take}_scan{record.scan}_cam{camera}.png"
                shutil.copy(mask_path(root, shown.take, camera, frame), out / layout_image)
            recorded = None if layout is None else "given" if layout == "given" else "rendered"
            lines.append(
                ManifestLine(
                    image=name, take=record.take, scan=record.scan, camera=camera, graphs=str(source), seed=i,
                    layout=recorded, pipeline_hash="copies", layout_image=layout_image,
                )
            )  # fmt: skip
    write_manifest(out / MANIFEST, lines)
    return out / MANIFEST


def run_evaluate(samples: Path, classifier: Path, root: Path, out: Path, *extra: str, metrics=None) -> dict:
    """``or_synth.evaluate`` on a samples folder, with a reference cache beside ``out`` and KID subsets small
    enough for a few dozen images; ``metrics`` is the registry (default: the suite's own)."""
    overrides = [
        f"samples={samples}",
        f"classifier={classifier}",
        f"dataset_root={root}",
        f"out={out}",
        f"cache_dir={out.parent / 'cache'}",
        "kid_subset_size=8",
        "kid_subsets=5",
        "progress=false",
        *extra,
    ]
    from or_synth.cli import load_config
    from or_synth.evaluation import METRICS, evaluate

    return evaluate(load_config("evaluate", overrides), METRICS if metrics is None else metrics)


def write_random_inception_weights(path: Path) -> None:
    """A random-weights state dict of torch-fidelity's FeatureExtractorInceptionV3, built without a download.

    The constructor always loads weights, so the load is stubbed out while the module is built; He-initialised
    convolutions keep the 2048-d features away from zero so the tests see real numbers.
    """
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    extractor = tf_inception.FeatureExtractorInceptionV3
    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: {}),
        mock.patch.object(extractor, "load_state_dict", lambda self, *args, **kwargs: None),
    ):
        torch.manual_seed(0)
        module = extractor("inception-v3-compat", ["2048"])
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    torch.save(module.state_dict(), path)


# --- edit folders as or_synth.edit writes them ----------
def write_edit_folder(
    folder: Path, before, after, *, full_follows_edit: bool, null_follows_edit: bool | None = False, edit=None
) -> None:
    """One edit's folder as or_synth.edit writes it, its images telling GraphReader which graph they show
    (``null_follows_edit=None``: no null edit, as an edit without a layout region)."""
    folder.mkdir(parents=True)
    vocabulary = Vocabulary()
    (folder / "graphs.json").write_text(
        json.dumps({"before": before.to_json(vocabulary), "after": after.to_json(vocabulary)})
    )
    (folder / "edit.json").write_text(
        json.dumps({"edit": edit or SENSITIVITY_EDIT, "cameras": {"1": {}, "5": {}}})
    )
    kinds = [("before", False), ("after", True), ("full", full_follows_edit)]
    if null_follows_edit is not None:
        kinds.append(("null", null_follows_edit))
    for camera in (1, 5):
        for kind, shows_after in kinds:
            Image.new("RGB", (8, 8), (255 if shows_after else 0, 0, 0)).save(
                folder / f"{kind}_cam{camera}.png"
            )


# --- a tiny layout predictor ----------
def tiny_predictor() -> LayoutPredictor:
    torch.manual_seed(1)
    encoder = build_scene_graph_encoder(tiny_clip_cfg(None))
    predictor = LayoutPredictor.from_encoder(encoder, mask_size=8, hidden=16, mask_channels=8)
    with torch.no_grad():  # draw every node, with full masks, wherever its random box lands
        predictor.visibility_head[-1].bias.fill_(5.0)
        predictor.mask_head[-1].bias.fill_(5.0)
    return predictor


# --- sampling calls ----------
SAMPLE_SCANS = [small_scene(4, "000001"), small_scene(4, "000002"), small_scene(8, "000005")]


def sampling_config(command: str, *overrides: str):
    """The config of ``command`` (sample, export or edit) with command-line style overrides."""
    from or_synth.cli import load_config

    return load_config(command, list(overrides))


def run_sample(pipeline_dir: Path, graphs: Path, out: Path, *extra: str) -> dict:
    """``or_synth.sample`` at 2 steps without a progress bar."""
    from or_synth.sampling import sample

    overrides = [f"pipeline={pipeline_dir}", f"graphs={graphs}", f"out={out}", "steps=2", "progress=false"]
    return sample(sampling_config("sample", *overrides, *extra))


def run_export(pipeline_dir: Path, dataset_root: Path, out: Path, *extra: str) -> dict:
    """``or_synth.export`` of cameras 1 and 4 at 2 steps, without guidance or a progress bar."""
    from or_synth.sampling import export

    overrides = [f"pipeline={pipeline_dir}", f"dataset_root={dataset_root}", f"out={out}", "steps=2",
                 "guidance_scale=1", "cameras=[1,4]", "progress=false"]  # fmt: skip
    return export(sampling_config("export", *overrides, *extra))


def run_edit(pipeline_dir: Path, graphs: Path, out: Path, *extra: str) -> dict:
    """``or_synth.edit`` at 2 steps without guidance."""
    from or_synth.sampling import edit

    overrides = [f"pipeline={pipeline_dir}", f"graphs={graphs}", f"out={out}", "steps=2", "guidance_scale=1"]
    return edit(sampling_config("edit", *overrides, *extra))


def manifest_lines(out: Path) -> list[dict]:
    """The manifest's lines as written (JSON objects)."""
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def sample_images(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "images").glob("*.png"))}


def mtimes(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(out.rglob("*"))}


# --- entry points in-process: the user-error contract, tested without a subprocess's start-up ----------
def run_command(main, *args: str) -> tuple[int, str, str]:
    """Run an entry point's ``main()`` (``or_synth.sample.main``, ...) with ``args`` as its command line, in this
    process; returns (exit code, stdout, stderr). Hydra's global state is cleared afterwards, so calls can follow
    each other; ``OR_SYNTH_DEBUG`` is unset for the call, so the contract is what a user sees."""
    import contextlib
    import io

    from hydra.core.global_hydra import GlobalHydra

    out, err, saved, debug = io.StringIO(), io.StringIO(), sys.argv, os.environ.pop("OR_SYNTH_DEBUG", None)
    sys.argv, code = ["or_synth", *args], 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
        if debug is not None:
            os.environ["OR_SYNTH_DEBUG"] = debug
    return code, out.getvalue(), err.getvalue()


def assert_refused(result: tuple[int, str, str], *names: str) -> str:
    """A user error as the contract says: exit 2, exactly one ``error:`` line naming each of ``names``, no
    traceback. Returns the line."""
    code, _, err = result
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, (code, err[-2000:])
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    for name in names:
        assert name.lower() in lines[0].lower(), (name, lines[0])
    return lines[0]


def file_hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (to show that nothing already written changed)."""
    import hashlib

    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


# --- the official 4D-OR code's way of finding files ----------
def official_4dor_images(root: Path, scan_id: str) -> tuple[list[Path], list[Image.Image]]:
    """The six colour images of ``TAKE_SCAN`` found the way the official 4D-OR scene-graph code finds them
    (egeozsoy/4D-OR, ``scene_graph_prediction/scene_graph_helpers/dataset/data_preparation_utils.py``,
    ``load_full_image_data``; ../shared/docs/4dor_format.md §1.1): the scan number is a POSITION in the take's
    ``timestamp_to_pcd_and_frames_list.json``, whose ``color_{c}`` frame id names
    ``colorimage/camera0{c}_colorimage-{id}.jpg`` for cameras 1..6. Written from that description, not copied."""
    take, scan = scan_id.split("_")
    take_root = root / f"export_holistic_take{take}_processed"
    frames = json.loads((take_root / "timestamp_to_pcd_and_frames_list.json").read_text())
    channels = frames[int(scan)][1]
    paths = [
        take_root / "colorimage" / f"camera0{c}_colorimage-{channels[f'color_{c}']}.jpg" for c in range(1, 7)
    ]
    return paths, [Image.open(path).convert("RGB") for path in paths]
