"""The GPU recipe (``experiment=4dor``) on CUDA for a few hundred steps: step time, images/s, peak memory, and
whether the loss falls, with ``torch.compile`` off and on (issue 24).

    bash scripts/gpu_check.sh            # = python -m benchmarks.gpu_check
    python -m benchmarks.gpu_check --device cpu --steps 4 --extra debug=smoke trainer.device=cpu --compile false

1. A stand-in for 4D-OR in the real download's format at native size (``python -m or_synth.render
   preset=4dor_native``, 32 scans per take), unless ``--root`` names real 4D-OR.
2. ``stage=vae``: the recipe's f=8 autoencoder architecture (``autoencoder=kl_base``, the SD VAE's) for a few
   steps; a GPU machine here reaches no model hub, so the pretrained SD VAE and CLIP weights are replaced by
   random weights of the same architectures (``encoder.towers.pretrained=null``). Step cost does not depend on
   the weights' values.
3. ``stage=ldm`` of the recipe (``base`` UNet, bf16, batch 64, 256 px) for ``--steps`` steps, compile off and on.

Reads each run's ``train_log.jsonl`` (wall time and ``cuda_peak_gib`` per step) and writes
``benchmarks/results/gpu_check.json``: median step time after the warm-up tenth, images/s, peak memory, and the
loss's first-tenth vs last-tenth mean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.evidence import run  # noqa: E402
from or_synth.data.io import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.json"


def summarise(log: Path, batch_size: int) -> dict:
    """Median step time past the warm-up tenth (compilation, cache fill), images/s, peak memory, loss trend."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    times = np.array([line["time"] for line in lines])
    losses = np.array([line["loss"] for line in lines if line["loss"] is not None])
    tenth = max(len(lines) // 10, 1)
    steps = np.array([line["step"] for line in lines])
    per_step = np.diff(times[tenth:]) / np.maximum(np.diff(steps[tenth:]), 1)
    step_s = float(np.median(per_step)) if len(per_step) else None
    peak = [line.get("cuda_peak_gib") for line in lines if line.get("cuda_peak_gib") is not None]
    first, last = float(losses[:tenth].mean()), float(losses[-tenth:].mean())
    return {
        "steps": int(steps[-1]),
        "step_s_median": round(step_s, 4) if step_s else None,
        "images_per_s": round(batch_size / step_s, 2) if step_s else None,
        "warmup_s": round(float(times[tenth] - times[0]), 2),
        "peak_gib": max(peak) if peak else None,
        "loss_first_tenth": round(first, 4),
        "loss_last_tenth": round(last, 4),
        "loss_falls": bool(last < first),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--vae-steps", type=int, default=20)
    parser.add_argument("--root", type=Path, default=None, help="a 4D-OR root (default: render the stand-in)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu_check")
    parser.add_argument(
        "--compile", nargs="+", default=["false", "true"], help="torch.compile settings to run"
    )
    parser.add_argument(
        "--extra", nargs="*", default=[], help="further training overrides (after the recipe's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = args.work.resolve()
    root = args.root or work / "standin"
    if args.root is None:
        run(["or_synth.render", "preset=4dor_native", f"root={root}", "scans_per_take=32", "workers=0",
             "progress=false"], work / "logs" / "render.log")  # fmt: skip
    common = ["or_synth.train", "dataset=4dor", f"dataset.root={root}", "experiment=4dor", f"runs_root={work / 'runs'}",
              f"dataset.processed_root={work / 'processed'}", "autoencoder=kl_base", "encoder.towers.pretrained=null",
              f"trainer.device={args.device}", *args.extra]  # fmt: skip
    run([*common, "stage=vae", "name=gpu_check", f"vae.steps={args.vae_steps}", f"vae.ckpt_every={args.vae_steps}",
         f"vae.sample_every={args.vae_steps}"], work / "logs" / "vae.log")  # fmt: skip
    from or_synth.cli import load_config

    cfg = load_config("train", [*common[1:], "stage=ldm"])
    batch_size = int(cfg.ldm.batch_size)
    runs = {}
    for compiled in args.compile:
        name = f"gpu_check_compile_{compiled}"
        seconds = run([*common, "stage=ldm", f"name={name}", "ldm.encoder_dir=null",
                       f"ldm.autoencoder_dir={work / 'runs' / 'vae' / 'gpu_check' / 'autoencoder'}",
                       f"ldm.steps={args.steps}", f"ldm.ckpt_every={args.steps}", f"ldm.sample_every={10 * args.steps}",
                       f"ldm.warmup_steps={max(args.steps // 10, 1)}", f"trainer.compile={compiled}", "trainer.log_every=1",
                       "trainer.resume=false"], work / "logs" / f"{name}.log")  # fmt: skip
        runs[f"compile_{compiled}"] = {
            "wall_s": round(seconds, 1),
            **summarise(work / "runs" / "ldm" / name / "train_log.jsonl", batch_size),
        }
    import torch

    document = {
        "what": "experiment=4dor's ldm stage (base UNet, bf16, 256 px) on the 4D-OR stand-in at native size; random "
        "weights of the recipe's architectures (no model hub on the GPU machine)",
        "command": "bash scripts/gpu_check.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device,
        "torch": torch.__version__,
        "batch_size": batch_size,
        "image_size": list(cfg.dataset.image_size),
        "runs": runs,
    }
    atomic_write_json(args.out, document, indent=2)
    print(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
