"""Training throughput of the ``cpu`` denoiser with the latent cache against encoding every batch.

    python -m benchmarks.latent_cache [--steps 30] [--threads 2]

Runs the real ``ldm`` stage (``experiment=cpu_demo``: 64 px, ``kl_cpu`` f=4 autoencoder, ``cpu`` UNet, batch
16) twice in one process on the embedded dataset (rendered on first use): ``ldm.latent_cache=true`` (latents
encoded once, read from safetensors shards) and ``ldm.latent_cache=false`` (every batch goes through the
autoencoder's encoder, the usual way of training without a cache). The autoencoder is a freshly initialised
``kl_cpu``: its weights do not change the cost. Images/s per arm is the batch size over the median
step-to-step wall time from ``train_log.jsonl`` (the first ``--warmup`` steps dropped); the one-off cost of
building the cache is reported separately. Arms alternate in ``--rounds`` chunks, so machine noise hits both.

Writes ``benchmarks/results/latent_cache.json`` (``--out``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from or_synth.data.views import load_views
from or_synth.generator import build_autoencoder, load_pretrained_autoencoder
from or_synth.generator.latents import cached_latents, dataset_identity
from or_synth.train import CONFIG_DIR
from or_synth.training import ldm
from or_synth.training.batches import build_dataset, ensure_rendered

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "latent_cache.json"


def config(work: Path, arm: str, steps: int, extra: list[str]):
    overrides = [
        "experiment=cpu_demo",
        "stage=ldm",
        f"runs_root={work / 'runs'}",
        f"name={arm}",
        f"ldm.autoencoder_dir={work / 'autoencoder'}",
        "ldm.encoder_dir=null",
        f"ldm.latent_cache={arm == 'cache'}",
        f"ldm.steps={steps}",
        f"ldm.ckpt_every={steps}",
        "ldm.sample_every=1000000",
        "ldm.sample.graphs=1",
        "ldm.sample.cameras=[1]",
        "ldm.sample.steps=2",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def step_seconds(run_dir: Path, chunk: int, warmup: int) -> list[float]:
    """Wall time between consecutive steps, from the step log; the first ``warmup`` steps of each ``chunk``
    (which include the other arm's run and this one's start-up) are dropped."""
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    gaps = []
    for before, after in zip(records, records[1:], strict=False):
        if after["step"] == before["step"] + 1 and after["step"] % chunk > warmup:
            gaps.append(after["time"] - before["time"])
    return gaps


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = config(work, "cache", args.steps, args.overrides)
        ensure_rendered(base.dataset)
        torch.manual_seed(0)
        build_autoencoder(OmegaConf.to_container(base.autoencoder, resolve=True)).save_pretrained(
            work / "autoencoder"
        )

        # One-off cost of the cache: encode every training view once (the ldm stage then only reads it).
        train_set = build_dataset(base.dataset, base.dataset.train_split)
        views = load_views(train_set, masks=False)
        started = time.perf_counter()
        cached_latents(
            load_pretrained_autoencoder(work / "autoencoder").eval(),
            views.images,
            base.ldm.cache_dir,
            dataset_identity(train_set, len(views)),
        )
        build_seconds = time.perf_counter() - started

        for round_index in range(1, args.rounds + 1):
            for arm in ("cache", "encode"):
                ldm.train_ldm(config(work, arm, round_index * args.steps, args.overrides))
        gaps = {
            arm: step_seconds(work / "runs" / "ldm" / arm, args.steps, args.warmup)
            for arm in ("cache", "encode")
        }

    batch = int(base.ldm.batch_size)
    arms = {
        arm: {
            "median_step_s": round(statistics.median(g), 4),
            "images_per_s": round(batch / statistics.median(g), 2),
            "steps_timed": len(g),
        }
        for arm, g in gaps.items()
    }
    return {
        "suite": "latent_cache",
        "command": "python -m benchmarks.latent_cache " + " ".join(args.argv),
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
        "setup": {
            "experiment": "cpu_demo",
            "denoiser": base.denoiser.name,
            "autoencoder": base.autoencoder.name,
            "image_size": list(base.dataset.image_size),
            "batch_size": batch,
            "training_views": len(views),
            "steps_per_round": args.steps,
            "rounds": args.rounds,
        },
        "cache_build_s": round(build_seconds, 2),
        "arms": arms,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "speedup": round(arms["cache"]["images_per_s"] / arms["encode"]["images_per_s"], 2),
        "target_speedup": 2.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=15, help="steps per arm per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of each chunk")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (e.g. dataset.root=...)")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for arm, numbers in result["arms"].items():
        print(f"{arm:>7}: {numbers['images_per_s']} images/s ({numbers['median_step_s']} s/step)")
    print(f"speedup {result['speedup']}x (target >= 2x); cache built once in {result['cache_build_s']} s")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
