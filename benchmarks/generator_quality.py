"""Does the generator draw the graph? And what does each sampler cost against quality?

    python -m benchmarks.generator_quality --pipeline runs/ldm/cpu/pipeline [--samplers]

A TinyCNN (:mod:`benchmarks.learnability`) is trained on the REAL train-split renders at the pipeline's image
size to predict a scan's predicate multi-hot from one camera image. The same classifier then scores, on
``--max-graphs`` validation scans x ``--cameras`` (macro F1 per image, and per scan with the probabilities
averaged over the views):

- ceiling: the real validation renders of those scans;
- vae: the same renders encoded and decoded by the pipeline's autoencoder (the first stage's ceiling);
- model: images the pipeline generates from those graphs and cameras (same per-image seeds everywhere);
- floor: images generated from the graph of ANOTHER scan (a fixed derangement, with that scan's masks when
  ``--layout masks``; predicted ones with ``--layout predicted``) but scored against the scan's own labels: what
  images that ignore their graph get;
- chance: a random guesser at the prevalence, and "always present".

``model / ceiling`` and ``(model - floor) / (ceiling - floor)`` summarise it. Sampling speed: images/s of one
batch of 8 at 20 DPM-Solver++ steps with guidance; memory is the process's peak resident set (``ru_maxrss``, a
high-water mark) before and after that batch, measured before anything else runs, so the delta is what
sampling needs on top of the loaded pipeline. ``--samplers``: on a fixed set of graph-views (same initial noise),
DDPM at 1000 steps is the reference and DDIM / DPM-Solver++ at 10, 20, 50 steps are compared with it (pixel
MSE, SSIM in [0, 1] images) and scored by the classifier (macro F1 per image), with seconds per image.

Writes ``benchmarks/results/generator_quality.json`` (``--out``) and prints the tables.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import SSIMMetric

from benchmarks.learnability import TinyCNN, evaluate, f1_scores, predict, train
from or_synth.data import PREDICATES, FourDORDataset
from or_synth.data.views import load_views
from or_synth.evaluation.consistency import derangement
from or_synth.generator import (
    ORScenePipeline,
    make_scheduler,
    pipeline_hash,
    reconstruct,
)
from or_synth.generator.shipped import resolve_pipeline

RESULTS = Path(__file__).resolve().parent / "results" / "generator_quality.json"


def peak_rss_mib() -> float:
    """The process's peak resident set so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def views_of(
    dataset, scans: np.ndarray | None = None
) -> tuple[list, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Graphs (one per scan), images (S, V, 3, H, W) uint8, labels (S, 14), masks (S, V, H, W) or None."""
    vs = load_views(dataset, progress=False)
    scans = np.arange(len(vs.graphs)) if scans is None else scans
    v, (h, w) = len(dataset.cameras), vs.images.shape[-2:]
    images = vs.images.view(-1, v, 3, h, w)[scans]
    masks = None if vs.masks is None else vs.masks.view(-1, v, h, w)[scans]
    graphs = [vs.graphs[i] for i in scans]
    return graphs, images, torch.cat([g.predicate_multi_hot for g in graphs]), masks


def cached_classifier(images: torch.Tensor, labels: torch.Tensor, seconds: float, args) -> tuple:
    """:func:`benchmarks.learnability.train`; with a fixed ``--classifier-steps`` it is deterministic, so it is
    trained once per (training images, labels, steps, seed) and reloaded from ``--classifier-cache`` after that:
    every pipeline of a lever table is scored by the same classifier, and each score costs minutes less."""
    if args.classifier_steps is None or not args.classifier_cache:
        return train(images, labels, seconds, args.seed, args.classifier_steps)
    from safetensors.torch import load_file, save_file

    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    digest.update(f"{args.classifier_steps}/{args.seed}".encode())
    path = Path(args.classifier_cache).expanduser() / f"tinycnn-{digest.hexdigest()[:16]}.safetensors"
    if path.is_file():
        model = TinyCNN()
        model.load_state_dict(load_file(str(path)))
        return model.eval(), args.classifier_steps
    model, steps = train(images, labels, seconds, args.seed, args.classifier_steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return model, steps


def generate(
    pipe, graphs, views, masks, seeds, args, steps: int | None = None, batch: int = 8
) -> torch.Tensor:
    """(N, 3, size, size) uint8: one image per (graph, view), image i from its own generator seeded seeds[i]."""
    guidance = {"guidance_scale": args.guidance_scale, "layout_guidance_scale": args.layout_guidance_scale}
    out = []
    for s in range(0, len(graphs), batch):
        part = slice(s, s + batch)
        images = pipe(
            graphs[part],
            views[part],
            masks=None if masks is None else masks[part],
            num_inference_steps=steps or args.steps,
            generator=[torch.Generator().manual_seed(int(seed)) for seed in seeds[part]],
            output_type="pt",
            **guidance,
        ).images
        if images.shape[-1] != args.size:
            images = F.interpolate(images, size=(args.size, args.size), mode="bilinear", antialias=True)
        out.append((images * 255).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def predicted_masks(pipe, graphs, views, args) -> torch.Tensor:
    """``--layout predicted``: each graph-view's label map from the trained layout predictor, as
    ``or_synth.sample layout=predicted`` draws it."""
    from or_synth.sampling import load_layout_predictor

    if not pipe.has_layout_input:
        raise SystemExit("--layout predicted needs a pipeline with a layout input")
    predictor = load_layout_predictor(args.layout_predictor, pipe, args.pipeline)
    with torch.no_grad():
        maps = [
            predictor.label_maps([g], [int(c)], pipe.image_size)
            for g, c in zip(graphs, views.tolist(), strict=True)
        ]
    return torch.cat(maps)


def speed(pipe, graphs, views, masks, args) -> dict:
    """Images/s and peak-RSS growth of one batch of 8, 20 DPM-Solver++ steps with guidance (3 if it is off)."""
    pipe.scheduler = make_scheduler("dpmsolver++", args.scheduler_config)
    args = argparse.Namespace(
        **{**vars(args), "guidance_scale": args.guidance_scale if args.guidance_scale != 1 else 3.0}
    )
    seeds = np.arange(8)
    masks = None if masks is None else masks[:8]
    generate(pipe, graphs[:8], views[:8], masks, seeds, args, steps=1)  # warm-up (allocator, kernels)
    before = peak_rss_mib()
    start = time.perf_counter()
    generate(pipe, graphs[:8], views[:8], masks, seeds, args, steps=20)
    seconds = time.perf_counter() - start
    return {
        "images_per_second": round(8 / seconds, 3),
        "seconds_per_image": round(seconds / 8, 3),
        "guidance_scale": args.guidance_scale,
        "peak_rss_mib_before": round(before, 1),
        "peak_rss_mib_after": round(peak_rss_mib(), 1),
    }


def compare_samplers(pipe, classifier, graphs, views, masks, labels, seeds, args) -> dict:
    """DDIM / DPM-Solver++ at 10, 20, 50 steps against DDPM at 1000 steps, same initial noise per image."""
    runs = {}
    for name, steps in [("ddpm", 1000)] + [(s, n) for s in ("ddim", "dpmsolver++") for n in (10, 20, 50)]:
        pipe.scheduler = make_scheduler(name, args.scheduler_config)
        start = time.perf_counter()
        images = generate(pipe, graphs, views, masks, seeds, args, steps=min(steps, args.train_timesteps))
        runs[f"{name}_{steps}"] = (images, (time.perf_counter() - start) / len(images))
    reference = runs["ddpm_1000"][0].float() / 255
    truth = labels.numpy().astype(bool)
    table = {}
    for key, (images, seconds) in runs.items():
        x = images.float() / 255
        ssim = SSIMMetric(spatial_dims=2, data_range=1.0)
        ssim(y_pred=x, y=reference)
        f1 = f1_scores(predict(classifier, images[:, None])[:, 0].numpy(), truth)
        table[key] = {
            "mse_to_ddpm1000": round(float((x - reference).square().mean()), 5),
            "ssim_to_ddpm1000": round(float(ssim.aggregate()), 4),
            "macro_f1_per_image": round(float(np.nanmean(f1)), 3),
            "seconds_per_image": round(seconds, 3),
        }
    return {"images": len(graphs), "guidance_scale": args.guidance_scale, "runs": table}


def write_grid(path: Path, graphs, generated: torch.Tensor, real: torch.Tensor, args) -> None:
    """The first ``--grid-graphs`` scored validation scans: graph text, generated views, real renders (the
    scored images themselves: same seeds, same layouts)."""
    from PIL import Image

    from or_synth.reports.grids import describe_graph, sample_grid, save_image_atomic

    def tiles(images: torch.Tensor) -> list:
        return [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]

    rows = []
    for i, graph in enumerate(graphs[: args.grid_graphs]):
        head = f"take {int(graph.take)} scan {graph.scan}, cameras {', '.join(map(str, args.cameras))}"
        rows.append(([head, *describe_graph(graph)], tiles(generated[i]), tiles(real[i])))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image_atomic(sample_grid(rows), path)


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    timings, start = {}, time.perf_counter()
    args.pipeline = resolve_pipeline(args.pipeline)
    pipe = ORScenePipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.graph_encoder):
        module.eval()
    args.scheduler_config = pipe.scheduler.config
    args.train_timesteps = int(pipe.scheduler.config.num_train_timesteps)
    native = pipe.image_size[0]
    args.size = args.size or native
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(load_images=True, image_size=args.size, processed_root=Path(tmp) / "processed")
        val = FourDORDataset(args.dataset_root, "validation", cameras=args.cameras, **common)
        scans = np.unique(np.linspace(0, len(val) - 1, min(args.max_graphs, len(val))).round().astype(int))
        graphs, real, labels, masks = views_of(val, scans)
        if args.layout == "masks" and (masks is None or not pipe.has_layout_input):
            raise SystemExit("--layout masks needs a pipeline with a layout input and a dataset with masks")
        masks = masks.flatten(0, 1) if args.layout == "masks" else None
        v = len(args.cameras)
        flat_graphs = [g for g in graphs for _ in range(v)]
        flat_views = torch.tensor(args.cameras * len(graphs))
        if args.layout == "predicted":
            masks = predicted_masks(pipe, flat_graphs, flat_views, args)
        seeds = args.seed * 1_000_000 + np.arange(len(flat_graphs))
        result = {"speed": speed(pipe, flat_graphs, flat_views, masks, args)}
        train_graphs, train_images, train_labels, _ = views_of(
            FourDORDataset(args.dataset_root, "train", **common)
        )
    timings["load_and_speed"] = time.perf_counter() - start

    def timed(key: str, fn, *fn_args, **kwargs):
        begin = time.perf_counter()
        out = fn(*fn_args, **kwargs)
        timings[key] = time.perf_counter() - begin
        return out

    classifier, steps = timed(
        "classifier", cached_classifier, train_images, train_labels, args.classifier_seconds, args
    )
    pipe.scheduler = make_scheduler(args.sampler, args.scheduler_config)
    generated = timed("generate_model", generate, pipe, flat_graphs, flat_views, masks, seeds, args)
    perm = torch.as_tensor(derangement(len(graphs), args.seed))
    donor = perm.repeat_interleave(v) * v + torch.arange(v).repeat(len(graphs))  # same camera, other scan
    donor_masks = None if masks is None else masks[donor]
    donor_graphs = [flat_graphs[i] for i in donor]
    shuffled = timed("generate_floor", generate, pipe, donor_graphs, flat_views, donor_masks, seeds, args)
    recon = reconstruct(pipe.vae, real.flatten(0, 1)).view(real.shape)
    sources = {
        "ceiling": real,
        "vae": recon,
        "model": generated.view(real.shape),
        "floor": shuffled.view(real.shape),
    }
    scores = {name: evaluate(classifier, images, labels) for name, images in sources.items()}
    summary = {}
    for unit in ("per_scan", "per_image"):
        c, m, f = (scores[k][f"macro_f1_{unit}"] for k in ("ceiling", "model", "floor"))
        summary[f"macro_f1_{unit}"] = {k: scores[k][f"macro_f1_{unit}"] for k in sources}
        summary[f"model_over_ceiling_{unit}"] = round(m / c, 3) if c else None
        summary[f"model_above_floor_fraction_{unit}"] = round((m - f) / (c - f), 3) if c != f else None
    summary["chance_random"] = scores["ceiling"]["macro_chance_f1_random"]
    summary["chance_always"] = scores["ceiling"]["macro_chance_f1_always"]
    table = {p: {"prevalence": scores["ceiling"]["predicates"][p]["prevalence"]} for p in PREDICATES}
    for p, k, unit in itertools.product(PREDICATES, sources, ("scan", "image")):
        table[p][f"{k}_{unit}"] = scores[k]["predicates"][p][f"f1_per_{unit}"]
    result.update(summary=summary, predicates=table)
    if args.grid:
        write_grid(args.grid, graphs, sources["model"], real, args)
    if args.samplers:
        pick = np.unique(np.linspace(0, len(flat_graphs) - 1, args.sampler_images).round().astype(int))
        subset = ([flat_graphs[i] for i in pick], flat_views[pick], None if masks is None else masks[pick])
        truth = labels.repeat_interleave(v, 0)[pick]
        result["samplers"] = timed(
            "samplers", compare_samplers, pipe, classifier, *subset, truth, seeds[pick], args
        )
    result["setup"] = {
        "pipeline": str(args.pipeline),
        "pipeline_hash": pipeline_hash(args.pipeline),
        "dataset_root": str(args.dataset_root),
        "size": f"{args.size} px (the pipeline decodes {native} px)",
        "classifier": f"TinyCNN on {len(train_graphs)} train scans x 6 real views, {steps} steps",
        "validation": f"{len(graphs)} scans x cameras {args.cameras} = {len(flat_graphs)} images",
        "sampling": f"{args.sampler}, {args.steps} steps, guidance {args.guidance_scale}, layout {args.layout} "
        f"(layout guidance {args.layout_guidance_scale}); speed: batch 8, dpmsolver++ 20 steps",
        "floor": "each image generated from the graph (and masks) of another validation scan (Sattolo "
        f"derangement, seed {args.seed}), scored against its own scan's labels",
        "seeds": f"image i of the flattened (scan, camera) list: Generator().manual_seed({args.seed} * 10**6 + i)",
        "seconds": {k: round(t, 1) for k, t in timings.items()},
        "generate_seconds_per_image": round(timings["generate_model"] / len(flat_graphs), 3),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    if args.layout == "predicted":
        result["setup"]["layout_predictor"] = str(args.layout_predictor)
        result["setup"]["layout_predictor_hash"] = pipeline_hash(args.layout_predictor)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True, help="a saved ORScenePipeline folder, or a shipped name")
    parser.add_argument("--dataset-root", type=Path, default=Path("datasets/synthetic_or"))
    parser.add_argument("--size", type=int, default=None, help="default: the pipeline's decoded size")
    parser.add_argument("--classifier-seconds", type=float, default=200.0)
    parser.add_argument("--classifier-steps", type=int, default=None, help="fixed steps instead of seconds")
    parser.add_argument(
        "--classifier-cache",
        default="~/.cache/or_synth/quality_classifier",
        help="with --classifier-steps: reuse the classifier trained on the same data (empty: never)",
    )
    parser.add_argument("--max-graphs", type=int, default=80, help="validation scans scored")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sampler", default="dpmsolver++", choices=["ddpm", "ddim", "dpmsolver++"])
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--layout", default="none", choices=["none", "masks", "predicted"])
    parser.add_argument(
        "--layout-predictor", default=None, help="--layout predicted: a stage=layout predictor folder"
    )
    parser.add_argument("--layout-guidance-scale", type=float, default=1.0)
    parser.add_argument("--samplers", action="store_true", help="also compare samplers against DDPM-1000")
    parser.add_argument("--sampler-images", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--grid", type=Path, default=None, help="also write a sample grid (PNG) of scored scans"
    )
    parser.add_argument("--grid-graphs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    names = ("ceiling", "vae", "model", "floor")
    print(f"{'predicate':<10} {'prev':>5} " + " ".join(f"{n:>8}" for n in names) + "   (F1 per scan)")
    for name, row in result["predicates"].items():
        print(f"{name:<10} {row['prevalence']:>5} " + " ".join(f"{row[f'{n}_scan']:>8}" for n in names))
    s = result["summary"]
    for unit in ("per_scan", "per_image"):
        print(
            f"macro F1 {unit}: {s[f'macro_f1_{unit}']}, model/ceiling {s[f'model_over_ceiling_{unit}']}, "
            f"(model-floor)/(ceiling-floor) {s[f'model_above_floor_fraction_{unit}']}"
        )
    print(f"chance: random {s['chance_random']}, always {s['chance_always']}; speed {result['speed']}")
    for key, row in result.get("samplers", {}).get("runs", {}).items():
        print(f"{key:<16} " + "  ".join(f"{k} {v}" for k, v in row.items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
