"""Generator cost: parameters of the named denoiser sizes, memory of a ``base`` training step, ``cpu`` step time.

    python -m benchmarks.generator_cost [--sizes tiny cpu base large] [--threads 1]

- Parameters of ``configs/denoiser/{tiny,cpu,base,large}.yaml``: the ``UNet2DConditionModel`` and the graph
  conditioner (scene-graph encoder + layout projection) it is paired with in the recipes (``PAIRING``; keys
  ``image_size``, ``latent_size``, ``layout_channels``, ``graph`` in a size's YAML override it). Label-embedding
  tables are buffers, not parameters; their width (the text tower's) is taken from the paired encoder config.
- Memory of one ``base`` training step at 256 px (latents from the paired autoencoder's downsampling factor),
  on CPU in fp32, as the ``ldm`` stage runs it: conditioner trained jointly, layout masks, CFG dropout, AdamW
  (state allocated before the step), gradient clipping, an EMA copy. Each measurement runs in a fresh
  subprocess; ``peak_rss_mib`` is its ``ru_maxrss`` (peak resident set, imports included), ``ready_rss_mib``
  its resident set just before the step (model, AdamW state, EMA, inputs), ``saved_for_backward_mib`` the
  tensors autograd saved in the forward pass (the activations; each storage once, weights excluded), at batch 1
  and 2. Batch 16 in bf16 is then PROJECTED (not measured): weights fp32 + grads + AdamW m, v (16 bytes/param)
  + EMA (4 bytes/param) + 8 x the batch-2 activations x 0.5 (activations ~linear in batch, halved by bf16).
- Seconds per training step of ``cpu`` at batch 16 on 16x16 latents (median of steps after one warm-up).

Writes ``benchmarks/results/generator_cost.json`` (``--out``) and prints a summary.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
RESULTS = ROOT / "benchmarks" / "results" / "generator_cost.json"
# What each denoiser size is trained with in the recipes: encoder config (the graph section of that file is
# merged over configs/encoder/clip.yaml's), autoencoder config, image size.
PAIRING = {
    "tiny": {"encoder": "debug/smoke.yaml", "autoencoder": "kl_tiny", "image_size": 32},
    "cpu": {"encoder": "experiment/cpu_demo.yaml", "autoencoder": "kl_cpu", "image_size": 64},
    "base": {"encoder": "encoder/clip.yaml", "autoencoder": "kl_base", "image_size": 256},
    "large": {"encoder": "encoder/clip.yaml", "autoencoder": "kl_base", "image_size": 256},
}
CLIP_TEXT_DIM = 512  # open_clip ViT-B-32's embedding width: the label embeddings of encoder=clip
SCENE = [  # one 9-node scene (4D-OR JSON form): every training graph of the measured batches
    "Patient anesthesia_equipment human_0 human_1 human_2 instrument instrument_table operating_table "
    "secondary_table",
    [(1, 8, "LyingOn"), (8, 1, "CloseTo"), (3, 1, "Sawing"), (1, 3, "CloseTo"), (4, 6, "Holding")],
]


def size_config(name: str, image_size: int | None = None) -> dict:
    """Denoiser arch, latent size, layout channels and encoder config of a named size."""
    cfg = {**PAIRING[name], **OmegaConf.to_container(OmegaConf.load(CONFIGS / "denoiser" / f"{name}.yaml"))}
    clip = OmegaConf.to_container(OmegaConf.load(CONFIGS / "encoder" / "clip.yaml"))
    source = OmegaConf.to_container(OmegaConf.load(CONFIGS / cfg["encoder"]))
    encoder = source.get("encoder", source)  # experiment / debug files are global packages
    graph = {**clip["graph"], **encoder.get("graph", {}), **cfg.get("graph", {})}
    arch = (encoder.get("towers") or {}).get("arch")
    text_dim = arch["embed_dim"] if arch else CLIP_TEXT_DIM
    autoencoder = OmegaConf.load(CONFIGS / "autoencoder" / f"{cfg['autoencoder']}.yaml")
    factor = 2 ** (len(autoencoder.arch.block_out_channels) - 1) if autoencoder.get("arch") else 8
    pixels = image_size or cfg["image_size"]
    latent = cfg.get("latent_size") if image_size is None and cfg.get("latent_size") else pixels // factor
    ldm = OmegaConf.load(CONFIGS / "ldm" / "default.yaml")
    layout = cfg.get("layout_channels", 4 if name == "tiny" else ldm.layout_channels)  # smoke uses 4
    towers = {  # a one-layer CLIP of the right embedding width: label embeddings are buffers, not counted
        "embed_dim": text_dim,
        "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
        "text_cfg": {"context_length": 64, "width": 32, "heads": 2, "layers": 1},
    }
    return {
        "arch": cfg["arch"],
        "image_size": pixels,
        "latent_size": latent,
        "downsampling": factor,
        "layout_channels": layout,
        "text_dim": text_dim,
        "graph": graph,
        "encoder_cfg": {
            "towers": {"backend": "open_clip", "model": None, "pretrained": None, "arch": towers, "seed": 0},
            "graph": graph,
            "cache_dir": None,
        },
    }


def build(cfg: dict, empty: bool = False):
    """(UNet, GraphConditioner); ``empty``: UNet weights on the meta device (counting only)."""
    from accelerate import init_empty_weights

    from or_synth.encoders import build_scene_graph_encoder
    from or_synth.generator import GraphConditioner, build_unet

    encoder = build_scene_graph_encoder(cfg["encoder_cfg"])
    conditioner = GraphConditioner.from_encoder(encoder, layout_channels=cfg["layout_channels"])
    kwargs = dict(latent_channels=4, sample_size=cfg["latent_size"], conditioner=conditioner)
    if empty:
        with init_empty_weights():
            return build_unet({"arch": cfg["arch"]}, **kwargs), conditioner
    return build_unet({"arch": cfg["arch"]}, **kwargs), conditioner


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure(name: str, batch: int, image_size: int, steps: int) -> dict:
    """Run ``steps`` training steps in this process; resident-set numbers and seconds per step."""
    from torch_geometric.data import Batch

    from or_synth.data import parse_scan, record_to_data
    from or_synth.data.vocabulary import PREDICATES, Vocabulary
    from or_synth.generator import GraphConditionedDenoiser

    cfg = size_config(name, image_size)
    unet, conditioner = build(cfg)
    model = GraphConditionedDenoiser(unet, conditioner).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    for p in params:  # allocate AdamW's m and v now, as after the first step of a run
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ema = [p.detach().clone() for p in params]
    objects, relations = SCENE
    entry = {
        "take_idx": 1,
        "scan": "000000",
        "objects": {str(i + 1): o for i, o in enumerate(objects.split())},
        "relationships": [[s, o, PREDICATES.index(p), p] for s, o, p in relations],
        "human_idx_to_name": {
            "human_0": "head-surgeon",
            "human_1": "assistant-surgeon",
            "human_2": "anaesthetist",
        },
    }
    vocabulary = Vocabulary()
    graphs = Batch.from_data_list([record_to_data(parse_scan(entry, vocabulary), vocabulary)] * batch)
    generator = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 10, (batch, image_size, image_size), generator=generator, dtype=torch.uint8)
    views = torch.arange(batch) % 6 + 1
    shape = (batch, 4, cfg["latent_size"], cfg["latent_size"])
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # return what building freed, so "ready" is what stays
    ready, peak_ready = current_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:  # count each storage saved for backward once
        key = tensor.untyped_storage().data_ptr()
        if key not in weights:
            saved[key] = tensor.untyped_storage().nbytes()
        return tensor

    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        noise = torch.randn(shape, generator=generator)
        drop_graph, drop_layout = conditioner.draw_dropout(batch, 0.1, 0.1, generator)
        timesteps = torch.randint(1000, (batch,), generator=generator)
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            prediction = model(
                torch.randn(shape, generator=generator), timesteps, graphs, views, masks=masks,
                drop_graph=drop_graph, drop_layout=drop_layout,
            )  # fmt: skip
        F.mse_loss(prediction, noise).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1 - 0.999)
        seconds.append(time.perf_counter() - start)
    return {
        "size": name,
        "batch": batch,
        "image_size": image_size,
        "latent_size": cfg["latent_size"],
        "parameters": count(model),
        "ready_rss_mib": round(ready, 1),
        "peak_rss_mib_before_step": round(peak_ready, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "saved_for_backward_mib": round(sum(saved.values()) / 2**20, 1),
        "seconds_per_step": [round(s, 3) for s in seconds],
        "torch_threads": torch.get_num_threads(),
    }


def in_subprocess(name: str, batch: int, image_size: int, steps: int, threads: int) -> dict:
    """:func:`measure` in a fresh interpreter, so that no earlier allocation hides its peak."""
    job = json.dumps({"name": name, "batch": batch, "image_size": image_size, "steps": steps})
    command = [sys.executable, "-m", "benchmarks.generator_cost", "--threads", str(threads), "--measure", job]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"measurement {job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    sizes = {}
    for name in args.sizes:
        cfg = size_config(name)
        unet, conditioner = build(cfg, empty=True)
        sizes[name] = {
            "unet_parameters": count(unet),
            "conditioner_parameters": count(conditioner),
            "total_parameters": count(unet) + count(conditioner),
            "image_size": cfg["image_size"],
            "latent": f"4 x {cfg['latent_size']} x {cfg['latent_size']} (f={cfg['downsampling']})",
            "graph": {k: cfg["graph"][k] for k in ("dim", "hidden", "layers")}
            | {"text_dim": cfg["text_dim"]},
            "layout_channels": cfg["layout_channels"],
        }
        print(f"{name:<6} UNet {count(unet) / 1e6:8.2f} M  conditioner {count(conditioner) / 1e6:6.2f} M")
    result = {"parameters": sizes}
    if args.memory:
        one, two = (in_subprocess("base", b, args.memory_size, 1, args.threads) for b in (1, 2))
        params, activations = two["parameters"], two["saved_for_backward_mib"]
        state = 20 * params / 2**20  # weights, grads, AdamW m and v (16 B/param) + EMA (4 B/param), MiB
        result["base_training_step"] = {
            "measured": {"batch_1_fp32": one, "batch_2_fp32": two},
            "step_peak_above_ready_mib_batch_2": round(two["peak_rss_mib"] - two["ready_rss_mib"], 1),
            "of_which_gradients_mib": round(4 * params / 2**20, 1),
            "projected_batch_16_bf16_mib": {
                "weights_grads_adamw_ema (20 B/param, fp32)": round(state, 1),
                "activations (saved for backward at batch 2, x 8, x 0.5)": round(4 * activations, 1),
                "total": round(state + 4 * activations, 1),
            },
            "note": "PROJECTED, not measured: the activations are the tensors autograd saves for backward "
            "(counted once per storage, weights excluded), assumed linear in batch (compare batch 1 and 2) and "
            "halved by bf16 autocast; add the runtime (CUDA context, allocator slack, kernel workspaces)",
        }
        print(
            f"base @ {args.memory_size} px: peak RSS b1 {one['peak_rss_mib']} MiB, b2 {two['peak_rss_mib']} MiB, "
            f"saved activations b1 {one['saved_for_backward_mib']} b2 {activations} MiB; "
            f"projected b16 bf16 {state + 4 * activations:.0f} MiB (+ runtime)"
        )
    if args.cpu_time:
        timing = in_subprocess("cpu", 16, 64, 4, args.threads)
        timing["seconds_per_step_median_after_warmup"] = round(
            statistics.median(timing["seconds_per_step"][1:]), 3
        )
        result["cpu_training_step"] = timing
        print(f"cpu @ batch 16, 16x16 latents: {timing['seconds_per_step_median_after_warmup']} s/step")
    result["setup"] = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": args.threads,
        "pairing": PAIRING,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(PAIRING), choices=list(PAIRING))
    parser.add_argument("--memory-size", type=int, default=256, help="image size of the base memory step")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the base memory step")
    parser.add_argument("--no-cpu-time", dest="cpu_time", action="store_false", help="skip the cpu timing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one measurement, JSON job
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        job = json.loads(args.measure)
        print(json.dumps(measure(job["name"], job["batch"], job["image_size"], job["steps"])))
        return
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
