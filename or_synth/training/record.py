"""A run's record of what it was started with, and the check that a resume continues the same computation.

When a run starts (no checkpoint to resume), its folder gets ``config.yaml`` (the whole resolved config) and the
first line of ``config_record.jsonl``: the step, a fingerprint and the values of every option that changes what the
stage computes (:func:`computation_values`). A resume compares the values now with the record's last line:

- only options that change nothing a step computes differ (``steps``, ``time_budget_s``, the log, sample and
  checkpoint cadences, ``trainer.device``, ``num_workers``, where files go): it resumes;
- anything else differs (model, optimiser, seed, batch, data): it is refused, the keys listed ``before -> now``,
  with the two ways out (``trainer.resume=false`` starts over; ``trainer.allow_config_change=true`` continues).

Neither file is ever rewritten by a resume: a resume under another configuration writes the config it continues
with beside them (``config_resumed_step_NNNNNNN.yaml``) and appends a line naming it and what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from or_synth.data.errors import UserError
from or_synth.data.io import atomic_path
from or_synth.training.checkpoints import step_folders

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
RECORD = "config_record.jsonl"

# What each stage computes from, besides SHARED: whole config groups. The graph encoder's config counts where the
# stage builds a fresh encoder from it (align always; ldm and layout when their encoder_dir is null).
STAGE_GROUPS = {
    "vae": ("vae", "autoencoder"),
    "align": ("align", "encoder"),
    "ldm": ("ldm", "denoiser", "scheduler"),
    "layout": ("layout",),
    "classifier": ("classifier",),
}
SHARED = ("seed", "dataset", "trainer.precision")
# Shared options a stage does not read (the classifier trains in fp32 whatever trainer.precision says).
UNUSED = {"classifier": ("trainer.precision",)}
# Options that change when, how long or where a run works, never what one of its steps computes: a resume may
# change them (a longer run, another cadence, another machine). A key matches itself and everything under it.
FREE = (
    "steps",
    "time_budget_s",
    "ckpt_every",
    "sample_every",
    "eval_every",
    "run_dir",
    "cache_dir",
    "vae.eval_images",
    "align.eval_max_graphs",
    "ldm.sample",
    "classifier.eval_max_scans",
    "dataset.processed_root",
    "dataset.image_cache",  # a lossless cache of the same resized pixels
    "dataset.render",
    "encoder.cache_dir",
)
# Options that name a folder: compared as absolute paths (a run resumed from another working folder, or with a
# relative path for an absolute one, is the same run).
PATHS = ("dataset.root",)
# Options that name an earlier stage's result: compared by content (a moved runs folder is the same run; an
# autoencoder trained further since is not). One that is not there yet (stage=all makes it first) is no change:
# the stage that loads it says so if it is still missing then.
COMPONENTS = ("ldm.autoencoder_dir", "ldm.encoder_dir", "layout.encoder_dir")
NOT_THERE = "(not there yet)"
# How many differing keys a refusal lists before "and N more".
SHOWN = 8


class ConfigChanged(UserError, ValueError):
    """A resume under a configuration that changes what the run computes; the message lists the differing keys
    and the two ways out."""


def computation_values(cfg: DictConfig, stage: str) -> dict:
    """Every option ``stage`` computes from, as ``{dotted key: value}`` (JSON values, paths absolute)."""
    groups = [g for g in (*SHARED, *STAGE_GROUPS[stage]) if g not in UNUSED.get(stage, ())]
    if stage in ("ldm", "layout") and cfg[stage].get("encoder_dir") is None:
        groups.append("encoder")
    values = {}
    for group in groups:
        node = OmegaConf.select(cfg, group)
        container = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        values.update(_flatten(group, container))
    for key in PATHS:
        if isinstance(values.get(key), str):
            values[key] = os.path.abspath(values[key])
    for key in COMPONENTS:
        if isinstance(values.get(key), str):
            values[key] = _content(Path(values[key]))
    return {k: _json_value(v) for k, v in sorted(values.items()) if not _free(k, stage)}


def _content(folder: Path) -> str:
    """A saved component folder by its content hash (:func:`or_synth.generator.pipeline_hash`)."""
    from or_synth.generator import pipeline_hash

    return f"content {pipeline_hash(folder)}" if folder.is_dir() and any(folder.iterdir()) else NOT_THERE


def fingerprint(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _free(key: str, stage: str) -> bool:
    for free in FREE:
        name = free if "." in free else f"{stage}.{free}"
        if key == name or key.startswith(name + "."):
            return True
    return False


def _flatten(prefix: str, value) -> dict:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(f"{prefix}.{key}", item))
        return flat if flat else {prefix: {}}
    return {prefix: value}


def _json_value(value):
    """Config values as JSON: a non-finite float as its text (the record is JSON; NaN is not)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


@dataclass
class RunRecord:
    """What :func:`open_run` found in a stage's run folder, and what :meth:`write` adds to it.

    Attributes:
        resuming: the run folder has checkpoints and ``trainer.resume`` is on.
        changes: the computation keys that differ from the record, ``{key: (before, now)}`` (only with
            ``trainer.allow_config_change=true``; otherwise :func:`open_run` refused).
    """

    cfg: DictConfig
    stage: str
    run_dir: Path
    resuming: bool
    values: dict
    changes: dict = field(default_factory=dict)

    def write(self, start: int) -> None:
        """Record the run once its start is known (the step resumed, or 0): a fresh start writes ``config.yaml``
        and a new record (:meth:`_start_over`); a resume under another config (a changed one allowed, or only
        free options changed) writes ``config_resumed_step_NNNNNNN.yaml`` beside them and appends a line naming
        it. Call on the main process."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        line = {"step": start, "fingerprint": fingerprint(self.values), "values": self.values}
        record = self.run_dir / RECORD
        if not self.resuming:  # a fresh start (a first stage without a loop "resumes" at 0: kept as a resume)
            self._start_over()
            _write_config(self.run_dir / CONFIG, self.cfg)
            with atomic_path(record) as tmp:
                tmp.write_text(json.dumps({**line, "config": CONFIG}, allow_nan=False) + "\n")
            return
        now = OmegaConf.to_container(self.cfg, resolve=True)
        if not record.is_file() or _config_differs(self.run_dir, now):
            name = _unused_name(self.run_dir, f"config_resumed_step_{start:07d}")
            _write_config(self.run_dir / name, self.cfg)
            entry = {**line, "config": name}
            if self.changes:
                entry["changed"] = {k: {"before": b, "now": n} for k, (b, n) in self.changes.items()}
                log.warning(
                    "%s: continuing %s at step %d with a changed configuration (trainer.allow_config_change=true;"
                    " recorded in %s): %s",
                    self.stage,
                    self.run_dir,
                    start,
                    name,
                    _listed(self.changes),
                )
            with record.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, allow_nan=False) + "\n")

    def _start_over(self) -> None:
        """A run starting at step 0 in a folder that holds an earlier one (``trainer.resume=false``, or no
        checkpoint to resume): the earlier run's checkpoints, its resume records and its ``metrics.json`` go, so
        nothing of it is resumed, counted complete or read as this run's record; its result folder (encoder,
        pipeline, ...) stays until this run writes its own."""
        stale = [
            *step_folders(self.run_dir),
            *sorted(self.run_dir.glob("config_resumed_step_*.yaml")),
            *[
                p
                for p in (self.run_dir / "metrics.json", self.run_dir / "checkpoints" / "latest")
                if p.exists()
            ],
        ]
        checkpoints = len(step_folders(self.run_dir))
        if checkpoints:
            log.warning(
                "%s: starting the run in %s over: removing the earlier run's %d checkpoint(s) and records",
                self.stage,
                self.run_dir,
                checkpoints,
            )
        for path in stale:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def open_run(cfg: DictConfig, stage: str) -> RunRecord:
    """Read ``stage``'s run folder before any work: whether it resumes, and whether its record allows it.

    Reads only; :meth:`RunRecord.write` records the run once the stage knows its start step.

    Raises:
        ConfigChanged: a resume under a configuration that changes what the run computes (without
            ``trainer.allow_config_change=true``), or a run whose record cannot be read.
    """
    run_dir = Path(str(cfg[stage].run_dir))
    values = computation_values(cfg, stage)
    checkpoints = step_folders(run_dir)
    resuming = bool(cfg.trainer.resume) and bool(checkpoints)
    run = RunRecord(cfg, stage, run_dir, resuming, values)
    if not resuming:
        return run
    allowed = bool(cfg.trainer.get("allow_config_change", False))
    before = _recorded_values(run_dir, stage)
    if before is None:
        if not allowed:
            raise ConfigChanged(
                f"{stage}.run_dir={run_dir} has checkpoints but no readable record of the configuration it was "
                f"started with ({RECORD} or {CONFIG}), so a resume cannot be checked: start the run over with "
                "trainer.resume=false, or resume without the check with trainer.allow_config_change=true"
            )
        return run
    recorded, legacy = before
    # The keys both have: an option added (or dropped) by a newer version of the code is no change of the run's
    # (a switch that brings keys along, such as ldm.encoder_dir=null, changes a key both have). A legacy
    # config.yaml names the earlier stages' results by path only, so those are not compared.
    keys = sorted(set(values) & set(recorded) - (set(COMPONENTS) if legacy else set()))
    run.changes = {
        k: (recorded[k], values[k]) for k in keys if recorded[k] != values[k] and values[k] != NOT_THERE
    }
    if run.changes and not allowed:
        newest = checkpoints[-1].name
        raise ConfigChanged(
            f"{stage}.run_dir={run_dir} holds a run (checkpoint {newest}) started with another configuration: "
            f"{_listed(run.changes)}. Resuming would continue its checkpoint under these changes. Start the run "
            "over with trainer.resume=false, or continue with the changes (recorded beside its config.yaml) "
            "with trainer.allow_config_change=true"
        )
    return run


def _recorded_values(run_dir: Path, stage: str) -> tuple[dict, bool] | None:
    """The values of the record's last line (and False), or, for a run folder written before the record existed,
    those of its ``config.yaml`` (and True: a legacy record); None when neither can be read."""
    record = run_dir / RECORD
    if record.is_file():
        lines = []
        try:
            for text in record.read_text(encoding="utf-8").splitlines():
                try:
                    lines.append(json.loads(text))
                except ValueError:
                    continue  # a line cut by a crash in the middle of an append: the one before it stands
        except OSError:
            lines = []
        values = [line.get("values") for line in lines if isinstance(line, dict)]
        values = [v for v in values if isinstance(v, dict)]
        if values:
            return values[-1], False
    config = run_dir / CONFIG
    if config.is_file():
        try:
            legacy = OmegaConf.load(config)
            return computation_values(legacy, stage), True
        except Exception as error:  # noqa: BLE001 - a hand-edited or truncated YAML raises many kinds
            log.warning("%s cannot be read (%s)", config, error)
    return None


def _config_differs(run_dir: Path, now: dict) -> bool:
    """Whether ``now`` (the whole config) differs from the config the record's last line names."""
    name = CONFIG
    try:
        for text in (run_dir / RECORD).read_text(encoding="utf-8").splitlines():
            try:
                name = json.loads(text).get("config", name)
            except ValueError:
                continue
        before = OmegaConf.to_container(OmegaConf.load(run_dir / name), resolve=True)
    except Exception:  # noqa: BLE001 - an unreadable earlier config: record this one
        return True
    return before != now


def _unused_name(run_dir: Path, stem: str) -> str:
    """``stem.yaml``, or ``stem-2.yaml``, ... when an earlier resume at the same step wrote that one (a record
    file is never replaced)."""
    name, count = f"{stem}.yaml", 1
    while (run_dir / name).exists():
        count += 1
        name = f"{stem}-{count}.yaml"
    return name


def _write_config(path: Path, cfg: DictConfig) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))


def _listed(changes: dict) -> str:
    shown = [f"{k}: {_short(b)} -> {_short(n)}" for k, (b, n) in list(changes.items())[:SHOWN]]
    more = len(changes) - SHOWN
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
