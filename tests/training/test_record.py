"""A run's record (:mod:`or_synth.training.record`): which options count as changing what a stage computes, how a
resume is compared (a legacy run folder against its ``config.yaml``, paths as absolute paths), and that nothing
the record holds is ever replaced; and the option check's split of the global batch over processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from or_synth.training.options import OptionError, check_options
from or_synth.training.record import CONFIG, ConfigChanged, computation_values, open_run
from tests.helpers import compose_smoke_cfg


def _cfg(tmp_path: Path, *overrides: str):
    return compose_smoke_cfg(tmp_path / "data", tmp_path, list(overrides))


def test_only_what_a_step_computes_from_is_a_computation_value(tmp_path):
    ldm = computation_values(_cfg(tmp_path), "ldm")
    assert {
        "seed",
        "ldm.lr",
        "ldm.batch_size",
        "trainer.precision",
        "denoiser.name",
        "scheduler.beta_schedule",
    } <= set(ldm)
    free = ("ldm.steps", "ldm.time_budget_s", "ldm.ckpt_every", "ldm.sample_every", "ldm.sample.steps", "ldm.run_dir",
            "ldm.cache_dir", "trainer.device", "trainer.log_every", "trainer.num_workers", "dataset.processed_root")  # fmt: skip
    assert not set(free) & set(ldm)
    assert not any(k.startswith("encoder.") for k in ldm)  # ldm loads align's encoder: its config is not used
    fresh = computation_values(_cfg(tmp_path, "ldm.encoder_dir=null"), "ldm")
    assert "encoder.graph.dim" in fresh and "encoder.cache_dir" not in fresh
    assert "trainer.precision" not in computation_values(_cfg(tmp_path), "classifier")  # it trains in fp32


def test_a_relative_path_is_the_same_run_as_its_absolute_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = computation_values(compose_smoke_cfg(Path("data"), tmp_path), "align")
    absolute = computation_values(compose_smoke_cfg(tmp_path / "data", tmp_path), "align")
    assert relative == absolute and relative["dataset.root"] == str(tmp_path / "data")


def _checkpointed(cfg, stage: str) -> Path:
    """A run folder of ``stage`` with a step folder in it (what open_run looks for)."""
    run_dir = Path(cfg[stage].run_dir)
    (run_dir / "checkpoints" / "step_0000002").mkdir(parents=True)
    return run_dir


def test_a_run_folder_without_a_record_is_checked_against_its_config_yaml(tmp_path):
    old = _cfg(tmp_path, "stage=align")
    run_dir = _checkpointed(old, "align")
    recorded = OmegaConf.to_container(old, resolve=True)
    del recorded["align"]["mask_prob"]  # an older config without a newer key: not a change
    (run_dir / CONFIG).write_text(OmegaConf.to_yaml(recorded))
    assert open_run(_cfg(tmp_path, "stage=align", "align.steps=9"), "align").resuming
    with pytest.raises(ConfigChanged, match=r"align.lr: 0.0003 -> 0.1.*trainer.resume=false"):
        open_run(_cfg(tmp_path, "stage=align", "align.lr=0.1"), "align")


def test_checkpoints_without_any_readable_record_need_a_decision(tmp_path):
    _checkpointed(_cfg(tmp_path), "align")
    with pytest.raises(ConfigChanged, match="no readable record.*trainer.allow_config_change=true"):
        open_run(_cfg(tmp_path), "align")
    assert open_run(_cfg(tmp_path, "trainer.allow_config_change=true"), "align").resuming
    assert not open_run(_cfg(tmp_path, "trainer.resume=false"), "align").resuming


def test_resumes_at_one_step_never_replace_each_other_s_record(tmp_path):
    open_run(_cfg(tmp_path), "align").write(0)  # the run starts: config.yaml and the record's first line
    run_dir = _checkpointed(_cfg(tmp_path), "align")
    for steps in (6, 8):
        open_run(_cfg(tmp_path, f"align.steps={steps}"), "align").write(2)
    assert sorted(p.name for p in run_dir.glob("config*.yaml")) == [
        "config.yaml",
        "config_resumed_step_0000002-2.yaml",
        "config_resumed_step_0000002.yaml",
    ]
    assert "steps: 4" in (run_dir / "config.yaml").read_text()
    assert "steps: 8" in (run_dir / "config_resumed_step_0000002-2.yaml").read_text()
    assert len((run_dir / "config_record.jsonl").read_text().splitlines()) == 3


def test_the_global_batch_must_split_over_the_processes(tmp_path):
    cfg = _cfg(tmp_path, "ldm.batch_size=6")
    check_options(cfg, ["ldm"], world=2)
    with pytest.raises(OptionError, match=r"ldm.batch_size=6 must divide evenly over the 4 processes"):
        check_options(cfg, ["ldm"], world=4)
    check_options(_cfg(tmp_path, "align.batch_size=3"), ["align"], world=4)  # align runs on one process


def test_an_earlier_stage_s_result_counts_by_content_not_by_path(tmp_path):
    """ldm.autoencoder_dir moved with its runs folder is the same run; retrained (other bytes) it is not; not
    there yet (stage=all trains it first) it is no change either."""
    first, moved = tmp_path / "a" / "autoencoder", tmp_path / "b" / "autoencoder"
    for folder in (first, moved):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"scaling_factor": 1.0}')

    def value(folder: Path) -> str:
        return computation_values(_cfg(tmp_path, f"ldm.autoencoder_dir={folder}"), "ldm")[
            "ldm.autoencoder_dir"
        ]

    assert value(first) == value(moved) and value(first).startswith("content ")
    (moved / "config.json").write_text('{"scaling_factor": 2.0}')
    assert value(first) != value(moved)
    assert value(tmp_path / "nowhere") == "(not there yet)"
