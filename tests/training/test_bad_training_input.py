"""``python -m or_synth.train`` as a careless user runs it: every bad option, a resume under another configuration,
a damaged latest checkpoint and bad data are refused before any work with one ``error:`` line (exit 2, no
traceback, nothing already written changed), or survived with nothing lost. In-process through the entry point's
``main()`` (:func:`tests.helpers.run_command`) on the tiny render and the smoke config's stage ``layout`` (the
quickest stage that checkpoints)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from or_synth.train import main
from tests.helpers import assert_refused, file_hashes, run_command, smoke_overrides, train_losses

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# Stage layout on a fresh graph encoder: 4 steps, checkpoints at 2 and 4.
LAYOUT = ["stage=layout", "layout.encoder_dir=null"]


def layout_args(root: Path, work: Path, *extra: str) -> list[str]:
    return [*smoke_overrides(root, work), *LAYOUT, *extra]


@pytest.fixture(scope="module")
def trained(tiny_render, tmp_path_factory) -> Path:
    """A finished 4-step layout run (checkpoints at steps 2 and 4); each test copies it."""
    work = tmp_path_factory.mktemp("trained")
    code, _, err = run_command(main, *layout_args(tiny_render, work))
    assert code == 0, err[-3000:]
    return work


@pytest.fixture
def work(trained, tmp_path) -> Path:
    """This test's copy of the trained run (its runs/, processed/ and label cache)."""
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    return tmp_path


def run_dir(work: Path) -> Path:
    return work / "runs/layout/smoke"


# --- options, refused before any work ----------------------------------------------------------------------------
BAD_OPTIONS = [
    ("ldm.batch_size=0", "ldm.batch_size"),
    ("ldm.steps=-5", "ldm.steps"),
    ("ldm.lr=nan", "ldm.lr"),
    ("ldm.ema.decay=1.0", "ldm.ema.decay"),
    ("ldm.cond_drop.graph=1.5", "ldm.cond_drop.graph"),
    ("ldm.lr_schedule=sideways", "ldm.lr_schedule"),
    ("vae.batch_size=0", "vae.batch_size"),
    ("vae.loss.kl_weight=-1", "vae.loss.kl_weight"),
    ("align.steps=0", "align.steps"),
    ("align.mask_prob=2", "align.mask_prob"),
    ("trainer.precision=fp8", "trainer.precision"),
    ("trainer.keep_checkpoints=0", "trainer.keep_checkpoints"),
    ("trainer.log_every=0", "trainer.log_every"),
    ("trainer.device=tpu", "trainer.device"),
    ("trainer.resume=maybe", "trainer.resume"),
    ("seed=-1", "seed"),
    ("vae.ckpt_every=0", "vae.ckpt_every"),
    ("ldm.sample.reference_pipeline=no_such_pipeline", "reference_pipeline"),
]
STAGE_OPTIONS = [
    ("stage=layout layout.loss.box=-1", "layout.loss.box"),
    ("stage=layout layout.mask_size=12", "layout.mask_size"),
    ("stage=classifier classifier.lr=inf", "classifier.lr"),
    ("stage=classifier classifier.cameras=[7]", "classifier.cameras"),
]


@pytest.mark.parametrize(
    ("option", "named"), BAD_OPTIONS + STAGE_OPTIONS, ids=[o for o, _ in BAD_OPTIONS + STAGE_OPTIONS]
)
def test_a_bad_option_is_refused_before_any_work(tiny_render, tmp_path, option, named):
    """stage=all checks every recipe stage's options first: nothing rendered, read or written."""
    result = run_command(main, *smoke_overrides(tiny_render, tmp_path), *option.split())
    assert_refused(result, named)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "processed").exists()


def test_cuda_without_a_gpu_is_refused(tiny_render, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert_refused(run_command(main, *smoke_overrides(tiny_render, tmp_path), "trainer.device=cuda"), "cuda")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["runs_root", "align.run_dir", "ldm.cache_dir", "dataset.processed_root"])
def test_a_folder_option_that_is_a_file_is_refused(tiny_render, tmp_path, option):
    (tmp_path / "f").write_text("not a folder")
    result = run_command(main, *smoke_overrides(tiny_render, tmp_path), f"{option}={tmp_path / 'f'}")
    assert_refused(result, option, "is a file")
    assert (tmp_path / "f").read_text() == "not a folder" and not (tmp_path / "runs").exists()


def test_pretrained_weights_that_cannot_load_are_one_line(tiny_render, tmp_path):
    result = run_command(
        main, *smoke_overrides(tiny_render, tmp_path), "stage=vae", f"autoencoder.pretrained={tmp_path}/x"
    )
    assert_refused(result, "autoencoder.pretrained", "not a folder")
    assert not (tmp_path / "runs/vae/smoke/config.yaml").exists()


def test_a_bad_option_of_a_later_stage_is_refused_before_the_first_trains(tiny_render, tmp_path):
    result = run_command(main, *smoke_overrides(tiny_render, tmp_path), "ldm.batch_size=0")
    assert_refused(result, "ldm.batch_size")
    assert not (tmp_path / "runs/vae").exists()


# --- resume under a changed configuration -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("layout.lr=0.5", "layout.lr: 0.001 -> 0.5"),
        ("seed=7", "seed: 0 -> 7"),
        ("layout.batch_size=2", "layout.batch_size: 4 -> 2"),
        ("encoder.graph.dim=48", "encoder.graph.dim: 32 -> 48"),  # another model size
        ("trainer.precision=bf16", "trainer.precision"),
    ],
    ids=["lr", "seed", "batch", "model", "precision"],
)
def test_resume_under_a_changed_configuration_is_refused(tiny_render, work, change, named):
    before = file_hashes(work / "runs")
    result = run_command(main, *layout_args(tiny_render, work, "layout.steps=6", change))
    line = assert_refused(result, named, "trainer.resume=false", "trainer.allow_config_change=true")
    assert "step_0000004" in line
    assert file_hashes(work / "runs") == before  # config.yaml, the record and the checkpoints untouched


def test_a_longer_run_with_other_cadences_resumes(tiny_render, work):
    """What does not change a step's computation may change: steps, cadences, checkpoints kept, the device."""
    config = (run_dir(work) / "config.yaml").read_bytes()
    free = ["layout.steps=6", "layout.ckpt_every=3", "layout.eval_every=5", "trainer.log_every=2",
            "trainer.keep_checkpoints=3", "trainer.device=cpu", "trainer.num_workers=0"]  # fmt: skip
    code, out, err = run_command(main, *layout_args(tiny_render, work, *free))
    assert code == 0, err[-3000:]
    assert "resumed from" in out + err and "step_0000004" in out + err
    assert len(train_losses(run_dir(work))) == 6
    assert (run_dir(work) / "config.yaml").read_bytes() == config  # the run's record is never rewritten
    resumed = run_dir(work) / "config_resumed_step_0000004.yaml"
    assert "steps: 6" in resumed.read_text()  # what it continued with, beside it


def test_an_allowed_change_resumes_and_is_recorded_beside_the_config(tiny_render, work):
    config = (run_dir(work) / "config.yaml").read_bytes()
    allowed = ["layout.steps=6", "layout.lr=0.002", "trainer.allow_config_change=true"]
    code, out, err = run_command(main, *layout_args(tiny_render, work, *allowed))
    assert code == 0, err[-3000:]
    assert "layout.lr: 0.001 -> 0.002" in out + err and len(train_losses(run_dir(work))) == 6
    assert (run_dir(work) / "config.yaml").read_bytes() == config
    assert "lr: 0.002" in (run_dir(work) / "config_resumed_step_0000004.yaml").read_text()
    lines = [json.loads(x) for x in (run_dir(work) / "config_record.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 4]
    assert lines[-1]["changed"] == {"layout.lr": {"before": 0.001, "now": 0.002}}
    # The change is now the record: resuming again with it needs no flag.
    code, _, err = run_command(main, *layout_args(tiny_render, work, "layout.steps=8", "layout.lr=0.002"))
    assert code == 0, err[-3000:]


def test_another_model_size_allowed_is_still_one_line(tiny_render, work):
    """With the check waived, a checkpoint that cannot fit the model is :class:`CheckpointRefused`: one line."""
    before = file_hashes(work / "runs")
    wider = ["layout.steps=6", "layout.hidden=48", "trainer.allow_config_change=true"]
    assert_refused(
        run_command(main, *layout_args(tiny_render, work, *wider)), "different model", "resume=false"
    )
    assert file_hashes(work / "runs") == before


def test_resume_false_starts_the_run_over(tiny_render, work):
    code, _, err = run_command(main, *layout_args(tiny_render, work, "trainer.resume=false", "layout.lr=0.5"))
    assert code == 0, err[-3000:]
    assert "lr: 0.5" in (run_dir(work) / "config.yaml").read_text()  # a new run, a new record
    lines = (run_dir(work) / "config_record.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["values"]["layout.lr"] == 0.5
    assert sorted(p.name for p in (run_dir(work) / "checkpoints").glob("step_*")) == [
        "step_0000002",
        "step_0000004",
    ]


# --- a damaged latest checkpoint ----------------------------------------------------------------------------------
def test_a_truncated_latest_checkpoint_falls_back_to_the_intact_one(tiny_render, work, tmp_path_factory):
    latest = run_dir(work) / "checkpoints/step_0000004"
    for path in latest.iterdir():
        path.write_bytes(path.read_bytes()[:64])
    code, out, err = run_command(main, *layout_args(tiny_render, work, "layout.steps=6"))
    assert code == 0, err[-3000:]
    said = out + err
    assert "step_0000004 cannot be read" in said and "state.pt" in said  # the damaged file, named
    assert "resumed from" in said and "step_0000002 at step 2" in said
    # Exact resume from step 2: the same losses as an uninterrupted 6-step run.
    straight = tmp_path_factory.mktemp("straight")
    code, _, err = run_command(main, *layout_args(tiny_render, straight, "layout.steps=6"))
    assert code == 0, err[-3000:]
    assert train_losses(run_dir(work)) == pytest.approx(train_losses(run_dir(straight)), rel=1e-6)
    assert sorted(p.name for p in (run_dir(work) / "checkpoints").glob("step_*")) == [
        "step_0000004",
        "step_0000006",
    ]


def test_a_deleted_weight_file_counts_as_damaged(tiny_render, work):
    (run_dir(work) / "checkpoints/step_0000004/model.safetensors").unlink()
    code, out, err = run_command(main, *layout_args(tiny_render, work, "layout.steps=6"))
    assert code == 0, err[-3000:]
    assert "model.safetensors (missing)" in out + err and "step_0000002 at step 2" in out + err


def test_no_intact_checkpoint_is_one_error_naming_each(tiny_render, work):
    for state in (run_dir(work) / "checkpoints").glob("step_*/state.pt"):
        state.write_bytes(state.read_bytes()[:64])
    before = file_hashes(work / "runs")
    result = run_command(main, *layout_args(tiny_render, work, "layout.steps=6"))
    assert_refused(
        result, "no intact checkpoint", "step_0000004/state.pt", "step_0000002/state.pt", "resume=false"
    )
    assert file_hashes(work / "runs") == before


# --- data errors while training -----------------------------------------------------------------------------------
@pytest.fixture
def copied_render(tiny_render, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_render, root, ignore=shutil.ignore_patterns("processed"))
    return root


def _first_image(root: Path) -> Path:
    return sorted((root / "export_holistic_take1_processed/colorimage").glob("camera01_*.jpg"))[0]


@pytest.mark.parametrize("damage", ["missing", "truncated", "not a jpeg"])
def test_a_bad_jpeg_is_one_line_naming_file_take_scan_and_camera(copied_render, tmp_path, damage):
    image = _first_image(copied_render)
    if damage == "missing":
        image.unlink()
    elif damage == "truncated":
        image.write_bytes(image.read_bytes()[:200])
    else:
        image.write_bytes(b"plain text")
    result = run_command(main, *smoke_overrides(copied_render, tmp_path), "stage=vae")
    assert_refused(result, image.name, "take 1", "scan ", "color_1")
    assert not (tmp_path / "runs/vae/smoke/config.yaml").exists()  # refused before the run was recorded


def test_4dor_without_the_download_says_how_to_get_it_and_the_default(tmp_path):
    code, _, err = run_command(
        main, "dataset=4dor", f"dataset.root={tmp_path / '4D-OR'}", f"runs_root={tmp_path / 'runs'}"
    )
    assert_refused((code, "", err), "relationships_train.json", str(tmp_path / "4D-OR"))
    assert "request access" in err and "python -m or_synth.train" in err and "dataset=synthetic_or" in err
    assert not (tmp_path / "runs").exists()


def test_an_incomplete_4dor_download_names_what_is_missing(copied_render, tmp_path):
    shutil.rmtree(copied_render / "export_holistic_take3_processed")
    result = run_command(main, *smoke_overrides(copied_render, tmp_path), "dataset=4dor", "dataset.cameras=[1,2]",
                         "dataset.image_size=[32,32]", "stage=vae")  # fmt: skip
    line = assert_refused(result, "take 3 is missing", str(copied_render / "export_holistic_take3_processed"))
    assert "incomplete" in line and "request access" in result[2] and "dataset=synthetic_or" in result[2]
    assert not (tmp_path / "runs").exists()


def test_a_grey_image_of_another_size_still_trains(copied_render):
    """Not an error: any decodable image is converted to RGB and resized (4D-OR's are 2048 x 1536)."""
    image = _first_image(copied_render)
    Image.new("L", (50, 40), 128).save(image)
    from or_synth.data.images import read_image

    assert read_image(image, (32, 32), take=1, scan="000000", camera=1).shape == (3, 32, 32)
