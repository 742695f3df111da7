"""Reliability sweep: every entry point tried with bad inputs and faults, as a careless or hostile user would.

    .venv/bin/python benchmarks/reliability.py [--work DIR] [--only SUBSTRING] [--out benchmarks/results/reliability.json]

Each case runs the real command (``python -m or_synth.<name> ...``) in a subprocess, on a tiny render, a tiny
random pipeline of the real architectures and a smoke-trained classifier and training run (made once under
``--work`` and reused), and is judged against what it should do:

- ``refused``: exit code 2, one ``error: ...`` line on stderr, no Python traceback, and every file that existed
  before the command is byte-identical after it;
- ``survived``: exit code 0, nothing that should stay lost, and the case's own check holds (a truncated image
  redrawn, a damaged checkpoint skipped for the intact one before it, a user's file kept).

The table (``reliability.json`` and ``reliability.md`` beside it) lists every case with its family, command,
exit code, the first line it printed and its verdict. The tests (``tests/**/test_*bad*``, ``tests/test_cli.py``)
hold one case per family; this sweep is the wide net.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
TIMEOUT = 600


@dataclass
class Case:
    """One bad input or fault: the command's arguments (``{W}`` is the work folder, ``{C}`` the case's own
    folder), a setup that prepares the case folder, and what must hold afterwards."""

    family: str
    name: str
    command: list[str]
    expect: str = "refused"  # refused | survived
    setup: Callable[[Path, Path], None] | None = None
    check: Callable[[Path, Path, subprocess.CompletedProcess], str | None] | None = None  # None: fine
    message: str | None = None  # a substring the error line must contain (what it names)
    protect: list[str] = field(
        default_factory=list
    )  # extra paths (under {C} or {W}) that must stay unchanged


# --- the shared inputs, made once --------------------------------------------------------------------------
def run(args: list[str], cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, env=env or child_env()
    )


def child_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("OR_SYNTH_DEBUG", None)
    return env


def must(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"setup failed: {what}\n{result.stderr[-3000:]}")


def make_inputs(work: Path) -> None:
    """A 6-take render (32 px), a tiny pipeline, samples, an export, an edit, a classifier, a training run."""
    work.mkdir(parents=True, exist_ok=True)
    data, pipe = work / "data", work / "pipe"
    if not (data / "relationships_test.json").is_file():
        must(run(["or_synth.render", f"root={data}", "takes=6", "scans_per_take=8", "image_size=[32,32]",
                  "progress=false"]), "render")  # fmt: skip
    if not (pipe / "model_index.json").is_file():
        import torch

        from tests.helpers import tiny_pipeline

        torch.manual_seed(0)
        tiny_pipeline(layout_channels=4).save_pretrained(pipe)
    common = [f"pipeline={pipe}", f"dataset_root={data}", "steps=2", "progress=false"]
    if not (work / "samples/manifest.jsonl").is_file():
        must(run(["or_synth.sample", *common, "graphs=validation", "cameras=[1,2]", "limit=2", "layout=render",
                  f"out={work / 'samples'}"]), "sample")  # fmt: skip
    if not (work / "export/or_synth_export.json").is_file():
        must(run(["or_synth.generate", *common, "graphs=train", "cameras=[1]", "limit=2",
                  f"out={work / 'export'}"]), "export")  # fmt: skip
    runs = work / "runs"
    train = ["or_synth.train", "debug=smoke", f"dataset.root={data}", f"runs_root={runs}",
             f"dataset.processed_root={work / 'processed'}", f"encoder.cache_dir={work / 'labels'}"]  # fmt: skip
    if not (runs / "classifier/smoke/classifier").is_dir():
        must(run([*train, "stage=classifier"]), "classifier")
    if not (runs / "ldm/smoke/pipeline/model_index.json").is_file():
        must(run(train), "training recipe")
    (work / "train_args.json").write_text(json.dumps(train[1:]))


# --- helpers for cases ------------------------------------------------------------------------------------------
def copy(src: str, dst: str = "") -> Callable[[Path, Path], None]:
    """A setup that copies ``{W}/src`` into ``{C}/dst`` (the case works on its own copy)."""

    def setup(work: Path, case: Path) -> None:
        target = case / (dst or Path(src).name)
        if (work / src).is_dir():
            shutil.copytree(work / src, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(work / src, target)

    return setup


def chain(*setups: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def setup(work: Path, case: Path) -> None:
        for step in setups:
            step(work, case)

    return setup


def write(relative: str, content: bytes | str) -> Callable[[Path, Path], None]:
    def setup(work: Path, case: Path) -> None:
        path = case / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def truncate(relative_glob: str, keep: int = 40) -> Callable[[Path, Path], None]:
    """Cut the first file matching ``{C}/relative_glob`` to ``keep`` bytes (a crash in the middle of a write)."""

    def setup(work: Path, case: Path) -> None:
        path = sorted(case.glob(relative_glob))[0]
        path.write_bytes(path.read_bytes()[:keep])

    return setup


def delete(relative_glob: str) -> Callable[[Path, Path], None]:
    def setup(work: Path, case: Path) -> None:
        sorted(case.glob(relative_glob))[0].unlink()

    return setup


def graphs_file(edit: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    """``{C}/relationships_validation.json``: the render's validation graphs with one change."""

    def setup(work: Path, case: Path) -> None:
        document = json.loads((work / "data/relationships_validation.json").read_text())
        edit(document)
        (case / "relationships_validation.json").write_text(json.dumps(document))

    return setup


def first_scan(key: str, value) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        document["scans"][0][key] = value

    return edit


def images_complete(
    folder: str, count: int
) -> Callable[[Path, Path, subprocess.CompletedProcess], str | None]:
    """After a resume: ``count`` images under ``{C}/folder``, every one of them decodable."""

    def check(work: Path, case: Path, result) -> str | None:
        from PIL import Image

        files = sorted(
            p for p in (case / folder).rglob("*") if p.suffix in (".png", ".jpg") and "mask" not in str(p)
        )
        broken = []
        for path in files:
            try:
                with Image.open(path) as image:
                    image.load()
            except OSError:
                broken.append(path.name)
        if broken:
            return f"still unreadable after the re-run: {broken[:3]}"
        return None if len(files) >= count else f"{len(files)} images, expected {count}"

    return check


def kept(relative: str, content: str) -> Callable[[Path, Path, subprocess.CompletedProcess], str | None]:
    def check(work: Path, case: Path, result) -> str | None:
        path = case / relative
        return (
            None if path.is_file() and path.read_text() == content else f"{relative} was removed or changed"
        )

    return check


# --- the cases ----------------------------------------------------------------------------------------------------
def cases() -> list[Case]:
    sample = ["or_synth.sample", "pipeline={W}/pipe", "dataset_root={W}/data", "graphs=validation", "limit=1",
              "cameras=[1]", "steps=2", "progress=false", "out={C}/out"]  # fmt: skip
    export = ["or_synth.generate", "pipeline={W}/pipe", "dataset_root={W}/data", "graphs=train", "limit=2",
              "cameras=[1]", "steps=2", "progress=false", "out={C}/out"]  # fmt: skip
    edit = ["or_synth.edit", "pipeline={W}/pipe", "dataset_root={W}/data", "graphs=validation", "scan=4/000001",
            "edit='remove circulating-nurse'", "cameras=[1]", "steps=2", "out={C}/out"]  # fmt: skip
    sequence = ["or_synth.sequence", "pipeline={W}/pipe", "dataset_root={W}/data", "graphs=validation", "take=4",
                "scans=0:3", "cameras=[1]", "steps=2", "progress=false", "out={C}/seq"]  # fmt: skip
    evaluate = ["or_synth.evaluate", "samples={W}/samples", "classifier={W}/runs/classifier/smoke/classifier",
                "dataset_root={W}/data", "metrics=[graph_consistency]", "out={C}/eval", "cache_dir={C}/cache",
                "progress=false"]  # fmt: skip
    train = ["or_synth.train", "debug=smoke", "dataset.root={W}/data", "runs_root={C}/runs",
             "dataset.processed_root={W}/processed", "encoder.cache_dir={W}/labels"]  # fmt: skip
    resume_ldm = [*train[:3], "runs_root={C}/runs", *train[4:], "stage=ldm", "ldm.autoencoder_dir={W}/runs/vae/smoke/autoencoder",
                  "ldm.encoder_dir={W}/runs/align/smoke/encoder", "ldm.steps=6"]  # fmt: skip
    report = ["or_synth.report"]
    readonly = "/proc/or_synth_cannot_write_here"
    c: list[Case] = []
    add = c.append

    # sample: option values
    for option in ("guidance_scale=nan", "guidance_scale=inf", "layout_guidance_scale=nan", "steps=0", "steps=-1",
                   "batch_size=0", "samples_per_graph=0", "limit=0", "limit=-1", "stride=0", "cameras=[7]",
                   "cameras=[0]", "cameras=[]", "cameras=abc", "sampler=euler", "layout=sketch", "seed=-1",
                   "device=cuda", "save_layouts=true layout=none", "layout=predicted"):  # fmt: skip
        add(
            Case(
                "sample: option", option, [*sample, *option.split()], message=option.split("=")[0].split()[0]
            )
        )
    add(Case("sample: paths", "pipeline missing", [*sample, "pipeline={C}/nowhere"], message="pipeline"))
    add(
        Case(
            "sample: paths",
            "pipeline is a file",
            [*sample, "pipeline={C}/f"],
            setup=write("f", "x"),
            message="pipeline",
        )
    )
    add(Case("sample: paths", "pipeline folder incomplete", [*sample, "pipeline={C}/p"],
             setup=chain(copy("pipe", "p"), delete("p/unet/*.safetensors")), message="unet"))  # fmt: skip
    add(Case("sample: paths", "shipped pipeline tampered", [*sample, "pipeline={C}/p"],
             setup=chain(copy("pipe", "p"), tamper_shipped), message="sha256"))  # fmt: skip
    add(Case("sample: paths", "out is a file", [*sample, "out={C}/f"], setup=write("f", "x"), message="out"))
    add(Case("sample: paths", "out on a read-only file system", [*sample, f"out={readonly}"], message="out"))
    add(Case("sample: paths", "graphs file missing", [*sample, "graphs={C}/none.json"], message="none.json"))
    add(Case("sample: graphs", "graphs file not JSON", [*sample, "graphs={C}/relationships_validation.json"],
             setup=write("relationships_validation.json", "{not json"), message="relationships_validation.json"))  # fmt: skip
    add(Case("sample: graphs", "take 99", [*sample, "graphs={C}/relationships_validation.json"],
             setup=graphs_file(first_scan("take_idx", 99)), message="take"))  # fmt: skip
    add(Case("sample: graphs", "unknown predicate", [*sample, "graphs={C}/relationships_validation.json"],
             setup=graphs_file(unknown_predicate), message="Flying"))  # fmt: skip
    add(Case("sample: resume", "truncated PNG is redrawn", [*sample[:-1], "limit=2", "cameras=[1,2]", "layout=render",
             "out={C}/samples"], expect="survived", setup=chain(copy("samples"), truncate("samples/images/*.png")),
             check=images_complete("samples/images", 4)))  # fmt: skip
    add(Case("sample: resume", "deleted PNG is redrawn", [*sample[:-1], "limit=2", "cameras=[1,2]", "layout=render",
             "out={C}/samples"], expect="survived", setup=chain(copy("samples"), delete("samples/images/*.png")),
             check=images_complete("samples/images", 4)))  # fmt: skip
    add(Case("sample: resume", "garbled manifest line is dropped and redrawn", [*sample[:-1], "limit=2",
             "cameras=[1,2]", "layout=render", "out={C}/samples"], expect="survived",
             setup=chain(copy("samples"), append_garbage("samples/manifest.jsonl")),
             check=images_complete("samples/images", 4)))  # fmt: skip
    add(Case("sample: overwrite", "other settings without overwrite", [*sample[:-1], "limit=2", "cameras=[1,2]",
             "layout=render", "steps=3", "out={C}/samples"], setup=copy("samples"), message="overwrite"))  # fmt: skip
    add(Case("sample: overwrite", "overwrite keeps a user's file", [*sample[:-1], "limit=2", "cameras=[1,2]",
             "layout=render", "steps=3", "overwrite=true", "out={C}/samples"], expect="survived",
             setup=chain(copy("samples"), write("samples/notes.txt", "mine")), check=kept("samples/notes.txt", "mine")))  # fmt: skip

    # export
    for option in ("steps=0", "samples_per_graph=0", "limit=-1", "guidance_scale=nan", "cameras=[9]",
                   "jpeg_quality=0", "jpeg_quality=101", "rebalance=sideways", "rebalance={Juggling:1}", "batch_size=0"):  # fmt: skip
        add(Case("export: option", option, [*export, option], message=option.split("=")[0]))
    add(
        Case(
            "export: graphs",
            "validation graphs refused",
            [*export, "graphs=validation"],
            message="validation",
        )
    )
    add(Case("export: graphs", "take 99", [*export, "graphs={C}/relationships_validation.json", "allow_eval_graphs=true"],
             setup=graphs_file(first_scan("take_idx", 99)), message="take"))  # fmt: skip
    add(Case("export: paths", "out is the source dataset", [*export, "out={W}/data"], message="source"))
    add(Case("export: paths", "out is a file", [*export, "out={C}/f"], setup=write("f", "x"), message="out"))
    add(Case("export: paths", "out on a read-only file system", [*export, f"out={readonly}"], message="out"))
    add(Case("export: overwrite", "overwrite keeps a user's file", [*export, "steps=3", "overwrite=true",
             "out={C}/export"], expect="survived", setup=chain(copy("export"), write("export/notes.txt", "mine")),
             check=kept("export/notes.txt", "mine")))  # fmt: skip
    add(Case("export: resume", "corrupted export manifest", [*export, "out={C}/export"],
             setup=chain(copy("export"), write("export/or_synth_export.json", "{oops")), message="or_synth_export.json"))  # fmt: skip
    add(Case("export: resume", "corrupted annotation of a finished scan", [*export, "out={C}/export"],
             expect="survived", setup=chain(copy("export"), write(
                 "export/export_holistic_take1_processed/or_synth_annotations/000000.json", "{oops")),
             check=json_readable("export/export_holistic_take1_processed/or_synth_annotations/000000.json")))  # fmt: skip
    add(Case("export: resume", "deleted JPEG of a finished export is redrawn", [*export, "out={C}/export"],
             expect="survived", setup=chain(copy("export"), delete("export/*/colorimage/*.jpg")),
             check=images_complete("export", 2)))  # fmt: skip
    add(Case("export: resume", "truncated JPEG of a finished export is redrawn", [*export, "out={C}/export"],
             expect="survived", setup=chain(copy("export"), truncate("export/*/colorimage/*.jpg")),
             check=images_complete("export", 2)))  # fmt: skip

    # edit
    for option in ("steps=0", "guidance_scale=nan", "dilation=-1", "cameras=[8]", "scan=4/999999",
                   "edit='predicate head-surgeon Patient Flying'", "edit=null"):  # fmt: skip
        add(Case("edit: option", option, [*edit, option], message=option.split("=")[0]))
    add(Case("edit: paths", "out is a file", [*edit, "out={C}/f"], setup=write("f", "x"), message="out"))
    add(Case("edit: overwrite", "a re-run with other settings", [*edit, "steps=3"], setup=prior_edit(edit),
             message="overwrite"))  # fmt: skip

    # sequence
    for option in ("steps=0", "cameras=[7]", "take=null", "take=11", "take=5", "scans=3:1", "scans=0:99",
                   "temporal=smooth", "layout=masks", "dilation=-1"):  # fmt: skip
        add(Case("sequence: option", option, [*sequence, option], message=option.split("=")[0].split(":")[0]))
    add(Case("sequence: overwrite", "a re-run with other settings", [*sequence, "steps=3"],
             setup=prior_run(sequence), message="overwrite"))  # fmt: skip
    add(Case("sequence: resume", "the last frame cut short (its marker deleted) is drawn again", sequence,
             expect="survived", setup=chain(prior_run(sequence), delete("seq/*/or_synth_annotations/000002.json")),
             check=images_complete("seq/export_holistic_take4_processed", 3)))  # fmt: skip

    # evaluate
    add(Case("evaluate: input", "samples missing", [*evaluate, "samples={C}/none"], message="none"))
    add(Case("evaluate: input", "manifest not JSON", [*evaluate, "samples={C}/s"],
             setup=chain(copy("samples", "s"), write("s/manifest.jsonl", "{oops\n")), message="manifest"))  # fmt: skip
    add(Case("evaluate: input", "manifest line without camera", [*evaluate, "samples={C}/s"],
             setup=chain(copy("samples", "s"), drop_field("s/manifest.jsonl", "camera")), message="camera"))  # fmt: skip
    add(Case("evaluate: input", "a listed image is missing", [*evaluate, "samples={C}/s"],
             setup=chain(copy("samples", "s"), delete("s/images/*.png")), message="missing"))  # fmt: skip
    add(Case("evaluate: input", "a listed image is truncated", [*evaluate, "samples={C}/s"],
             setup=chain(copy("samples", "s"), truncate("s/images/*.png")), message="png"))  # fmt: skip
    add(
        Case(
            "evaluate: input", "classifier missing", [*evaluate, "classifier={C}/none"], message="classifier"
        )
    )
    add(Case("evaluate: input", "classifier hash mismatch", [*evaluate, "classifier_hash=deadbeefdeadbeef"],
             message="hash"))  # fmt: skip
    add(Case("evaluate: input", "dataset root missing", [*evaluate, "dataset_root={C}/none"], message="none"))
    add(Case("evaluate: option", "unknown metric", [*evaluate, "metrics=[fidd]"], message="fidd"))
    add(Case("evaluate: option", "batch_size=0", [*evaluate, "batch_size=0"], message="batch_size"))
    add(Case("evaluate: option", "kid_subset_size=0", [*evaluate, "metrics=[classifier_fd]", "kid_subset_size=0"],
             message="kid_subset_size"))  # fmt: skip
    add(Case("evaluate: option", "reference_split=sideways", [*evaluate, "reference_split=sideways"],
             message="reference_split"))  # fmt: skip
    add(
        Case(
            "evaluate: paths", "out is a file", [*evaluate, "out={C}/f"], setup=write("f", "x"), message="out"
        )
    )

    # report
    add(Case("report: input", "run missing", [*report, "run={C}/none"], message="none"))
    add(Case("report: input", "run is a file", [*report, "run={C}/f"], setup=write("f", "x"), message="f"))
    add(Case("report: overwrite", "name is a samples folder", [*report, "run={W}/samples", "out={C}", "name=s"],
             setup=copy("samples", "s"), message="not a report"))  # fmt: skip
    add(Case("report: overwrite", "name is a file", [*report, "run={W}/samples", "out={C}", "name=f"],
             setup=write("f", "x"), message="file"))  # fmt: skip
    add(
        Case(
            "report: input", "compare with one folder", [*report, "compare", "{W}/samples"], message="compare"
        )
    )

    # render and the data summary
    for option in ("takes=abc", "takes=[1,11]", "scans_per_take=2", "image_size=[0,32]", "jpeg_quality=[90,200]",
                   "seed=-1", "from_json={C}/none.json"):  # fmt: skip
        add(Case("render: option", option, ["or_synth.render", "root={C}/r", option, "progress=false"],
                 message=option.split("=")[0]))  # fmt: skip
    add(Case("render: paths", "root is a file", ["or_synth.render", "root={C}/f", "progress=false"],
             setup=write("f", "x"), message="root"))  # fmt: skip
    add(Case("data.summary", "path missing", ["or_synth.data.summary", "{C}/none.json"], message="none.json"))
    add(Case("data.summary", "not JSON", ["or_synth.data.summary", "{C}/relationships_validation.json"],
             setup=write("relationships_validation.json", "{oops"), message="line"))  # fmt: skip

    # train
    add(Case("train: data", "dataset=4dor without the download", ["or_synth.train", "dataset=4dor",
             "dataset.root={C}/4D-OR"], message="4D-OR"))  # fmt: skip
    for option in ("trainer.device=cuda", "trainer.precision=fp8", "ldm.batch_size=0", "ldm.steps=-5", "ldm.lr=nan",
                   "vae.batch_size=0", "align.steps=0", "stage=sideways", "ldm.stepz=3"):  # fmt: skip
        add(Case("train: option", option, [*train, option], message=option.split("=")[0].split(".")[-1]))
    add(Case("train: data", "a missing JPEG", [*train, "dataset.root={C}/data", "stage=vae"],
             setup=chain(copy("data"), delete("data/export_holistic_take1_processed/colorimage/camera01_*.jpg")),
             message="jpg"))  # fmt: skip
    add(Case("train: data", "a corrupt JPEG", [*train, "dataset.root={C}/data", "stage=vae"],
             setup=chain(copy("data"), truncate("data/export_holistic_take1_processed/colorimage/camera01_*.jpg")),
             message="jpg"))  # fmt: skip
    add(Case("train: resume", "another learning rate", [*resume_ldm, "ldm.lr=0.5"], setup=prior_ldm(resume_ldm),
             message="lr"))  # fmt: skip
    add(
        Case(
            "train: resume",
            "another seed",
            [*resume_ldm, "seed=7"],
            setup=prior_ldm(resume_ldm),
            message="seed",
        )
    )
    add(Case("train: resume", "another batch size", [*resume_ldm, "ldm.batch_size=2"], setup=prior_ldm(resume_ldm),
             message="batch_size"))  # fmt: skip
    add(Case("train: resume", "another model size", [*resume_ldm, "denoiser=cpu"], setup=prior_ldm(resume_ldm),
             message="denoiser"))  # fmt: skip
    add(Case("train: resume", "a truncated latest checkpoint falls back to the intact one", resume_ldm,
             expect="survived", setup=chain(prior_ldm(resume_ldm), damage_latest_checkpoint),
             check=resumed_from_older))  # fmt: skip
    add(Case("train: paths", "runs_root is a file", [*train, "runs_root={C}/f", "stage=vae"], setup=write("f", "x"),
             message="f"))  # fmt: skip
    return c


def tamper_shipped(work: Path, case: Path) -> None:
    """Make ``{C}/p`` a shipped pipeline (``shipped.json`` with its hashes), then alter one file after the fact."""
    from or_synth.data.io import file_sha256

    folder = case / "p"
    files = {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / "shipped.json").write_text(json.dumps({"name": "p", "pipeline_hash": "x", "files": files}))
    weights = sorted((folder / "unet").glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


def unknown_predicate(document: dict) -> None:
    document["scans"][0]["relationships"][0][3] = "Flying"


def append_garbage(relative: str) -> Callable[[Path, Path], None]:
    def setup(work: Path, case: Path) -> None:
        path = case / relative
        lines = path.read_text().splitlines()
        path.write_text("\n".join([*lines[:-1], "{garbage"]) + "\n")

    return setup


def drop_field(relative: str, key: str) -> Callable[[Path, Path], None]:
    def setup(work: Path, case: Path) -> None:
        path = case / relative
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        lines[0].pop(key)
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))

    return setup


def json_readable(relative: str) -> Callable[[Path, Path, subprocess.CompletedProcess], str | None]:
    def check(work: Path, case: Path, result) -> str | None:
        try:
            json.loads((case / relative).read_text())
        except (OSError, json.JSONDecodeError):
            return f"{relative} is still unreadable"
        return None

    return check


def substitute(args: list[str], work: Path, case: Path) -> list[str]:
    return [a.replace("{W}", str(work)).replace("{C}", str(case)) for a in args]


def prior_edit(edit: list[str]) -> Callable[[Path, Path], None]:
    def setup(work: Path, case: Path) -> None:
        must(run(substitute(edit, work, case)), "the first edit")

    return setup


def prior_run(command: list[str]) -> Callable[[Path, Path], None]:
    """The same command run once first, in the case's folder (the case then re-runs or resumes it)."""

    def setup(work: Path, case: Path) -> None:
        must(run(substitute(command, work, case)), "the first run")

    return setup


def prior_ldm(command: list[str]) -> Callable[[Path, Path], None]:
    """A 4-step ldm run with checkpoints at steps 2 and 4 in ``{C}/runs`` (the case then resumes it)."""

    def setup(work: Path, case: Path) -> None:
        must(run(substitute([*command, "ldm.steps=4"], work, case)), "the first ldm run")

    return setup


def damage_latest_checkpoint(work: Path, case: Path) -> None:
    folder = case / "runs/ldm/smoke/checkpoints"
    latest = folder / (folder / "latest").read_text().strip()
    for path in latest.glob("*"):
        path.write_bytes(path.read_bytes()[:64])


def resumed_from_older(work: Path, case: Path, result) -> str | None:
    metrics = json.loads((case / "runs/ldm/smoke/metrics.json").read_text())
    if metrics.get("step") != 6:
        return f"the run ended at step {metrics.get('step')}, expected 6"
    return (
        None if "step_0000002" in result.stderr + result.stdout else "the fallback checkpoint was not named"
    )


# --- judging ------------------------------------------------------------------------------------------------------
def snapshot(*folders: Path) -> dict[str, str]:
    files = {}
    for folder in folders:
        if folder.is_file():
            files[str(folder)] = hashlib.sha256(folder.read_bytes()).hexdigest()
        elif folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file() and "processed" not in path.parts and "labels" not in path.parts:
                    files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def judge(case: Case, work: Path, base: Path) -> dict:
    folder = base / f"{len(list(base.iterdir())):03d}"
    folder.mkdir(parents=True)
    if case.setup is not None:
        case.setup(work, folder)
    args = substitute(case.command, work, folder)
    shared = [work / "data", work / "pipe", work / "samples", work / "export", work / "runs"]
    before = snapshot(folder, *shared)
    started = time.perf_counter()
    result = run(args)
    seconds = time.perf_counter() - started
    after = snapshot(folder, *shared)
    changed = sorted(p for p in before if before[p] != after.get(p))
    stderr = result.stderr.strip()
    traceback = "Traceback (most recent call last)" in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    problems = []
    if case.expect == "refused":
        if result.returncode != 2:
            problems.append(f"exit {result.returncode}, expected 2")
        if traceback:
            problems.append("printed a traceback")
        if len(errors) != 1:
            problems.append(f"{len(errors)} 'error:' lines")
        elif case.message and case.message.strip("'").lower() not in errors[0].lower():
            problems.append(f"the message does not name {case.message!r}")
        if changed:
            problems.append(f"changed {len(changed)} existing file(s), e.g. {changed[0]}")
    else:
        if result.returncode != 0:
            problems.append(f"exit {result.returncode}, expected 0")
        if traceback:
            problems.append("printed a traceback")
        if case.check is not None and result.returncode == 0:
            why = case.check(work, folder, result)
            if why:
                problems.append(why)
    first = (errors[0] if errors else (stderr.splitlines() or [""])[-1])[:300]
    shown = " ".join(a.replace(str(folder), "{case}").replace(str(work), "{work}") for a in args)
    return {
        "family": case.family,
        "case": case.name,
        "expect": case.expect,
        "command": f"python -m {shown}",
        "exit": result.returncode,
        "traceback": traceback,
        "said": first.replace(str(folder), "{case}").replace(str(work), "{work}"),
        "seconds": round(seconds, 1),
        "verdict": "ok" if not problems else "FAIL: " + "; ".join(problems),
    }


def markdown(rows: list[dict]) -> str:
    ok = sum(r["verdict"] == "ok" for r in rows)
    lines = [f"# Reliability sweep: {ok} of {len(rows)} cases hold", "",
             "Written by `benchmarks/reliability.py`; `refused` = exit 2, one `error:` line naming the input, no "
             "traceback, nothing existing changed; `survived` = exit 0 and nothing lost.", "",
             "| family | case | expected | exit | said | verdict |", "|---|---|---|---:|---|---|"]  # fmt: skip
    for r in rows:
        said = r["said"].replace("|", "/")[:160]
        lines.append(
            f"| {r['family']} | {r['case']} | {r['expect']} | {r['exit']} | {said} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs/benchmarks/reliability")
    parser.add_argument(
        "--only", default=None, help="comma-separated substrings: run the cases whose family or name has one"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reliability.json")
    args = parser.parse_args(argv)
    make_inputs(args.work)
    base = args.work / "cases"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    wanted = [w for w in (args.only or "").split(",") if w]
    selected = [c for c in cases() if not wanted or any(w in c.family or w in c.name for w in wanted)]
    rows = []
    for case in selected:
        row = judge(case, args.work, base)
        rows.append(row)
        print(f"{row['verdict'][:60]:60s} {case.family}: {case.name}", flush=True)
    if not args.only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cases": rows}, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(rows))
    failed = [r for r in rows if r["verdict"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} cases hold")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
