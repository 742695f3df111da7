"""Can the data path keep a GPU fed with real 4D-OR? Images/s of decoding and of the training loader at native
size (issue 24), beside the images/s the ``base`` UNet consumes.

    python -m benchmarks.loader [--root runs/gpu_check/standin] [--scans 16]

On the 4D-OR stand-in at native size (2048 x 1536 JPEGs; rendered if absent, as the GPU check does), one core:

- decoding one image for 256 px: Pillow's full decode + antialiased resize, Pillow's JPEG draft mode (DCT-domain
  1/2..1/8 scaling, what ``read_image`` does for large JPEGs) + resize, ``torchvision.io.decode_jpeg`` + resize,
  and reading the resized-image cache's entry;
- the training loader: a ``torch.utils.data.DataLoader`` over ``FourDORDataset(load_images=True,
  image_size=256)`` with ``num_workers`` 0, 1, 2: cold (no cache: every image decoded, the cache written), cached
  (every image from the resized-image cache) and uncached (draft decode every epoch);
- the graph cache's first full pass (PyG ``separate`` per item) against the naive JSON parse, same run.

The GPU side is projected, not measured, unless ``benchmarks/results/gpu_check.json`` holds a CUDA run: the
``base`` UNet's forward FLOPs per 256 px image (``torch.utils.flop_counter``) x 3 for a training step, at an
assumed 40 % of an H100's 989 dense bf16 TFLOP/s. Writes ``benchmarks/results/loader.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from or_synth.data.io import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "loader.json"
SIZE = (256, 256)
H100_BF16_TFLOPS, ASSUMED_MFU = 989.0, 0.40


def rate(fn, items) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return round(len(items) / (time.perf_counter() - started), 2)


def decode_rates(paths: list[Path], cache_dir: Path) -> dict:
    import numpy as np
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    import or_synth.data.images as images
    from or_synth.data.images import ResizedImageCache, read_image

    def full(path):
        with Image.open(path) as handle:
            image = torch.from_numpy(np.asarray(handle.convert("RGB")).copy()).permute(2, 0, 1)
        return F.resize(image, list(SIZE), antialias=True)

    out = {
        "pillow_full_decode_resize": rate(full, paths),
        "pillow_draft_resize": rate(lambda p: read_image(p, SIZE), paths),
    }
    try:
        from torchvision.io import decode_jpeg, read_file

        out["torchvision_decode_jpeg_resize"] = rate(
            lambda p: F.resize(decode_jpeg(read_file(str(p))), list(SIZE), antialias=True), paths
        )
    except Exception as exc:  # deprecated / absent in this torchvision: say so in the record
        out["torchvision_decode_jpeg_resize"] = f"unavailable: {exc}"
    cache = ResizedImageCache(cache_dir)
    for path in paths:
        cache.read(path, SIZE)
    out["resized_cache_entry"] = rate(lambda p: cache.read(p, SIZE), paths)
    assert images.DRAFT_MIN_REDUCTION <= 6  # 1536 / 256: the stand-in is read in draft mode
    return out


def loader_rates(root: Path, work: Path, workers: list[int]) -> dict:
    from torch.utils.data import DataLoader

    from or_synth.data import FourDORDataset

    def epoch(dataset, num_workers: int) -> float:
        loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers)
        started, images = time.perf_counter(), 0
        for data in loader:
            images += int(data.images.shape[1])
        return round(images / (time.perf_counter() - started), 2)

    out = {}
    for n in workers:
        processed = work / f"processed_w{n}"
        shutil.rmtree(processed, ignore_errors=True)
        cached = FourDORDataset(
            root, "train", load_images=True, image_size=SIZE, processed_root=processed, image_cache=True
        )
        uncached = FourDORDataset(
            root, "train", load_images=True, image_size=SIZE, processed_root=processed, image_cache=False
        )
        out[f"num_workers_{n}"] = {
            "cold": epoch(cached, n),
            "cached": epoch(cached, n),
            "uncached_draft": epoch(uncached, n),
        }
    return out


def graph_pass(shared: Path, work: Path, repeats: int = 5) -> dict:
    """Best of ``repeats`` (warm): the naive JSON parse, and a fresh dataset's cache load + first full pass."""
    from benchmarks.bench_data import plain_json_to_data
    from or_synth.data import FourDORDataset

    path = shared / "relationships_validation.json"
    processed = work / "graph_cache"
    FourDORDataset(shared, "validation", processed_root=processed)  # writes the cache once

    def naive() -> None:
        plain_json_to_data(path)

    def first_pass() -> None:
        dataset = FourDORDataset(shared, "validation", processed_root=processed)
        [dataset[i] for i in range(len(dataset))]

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    naive_s, first_s = best(naive), best(first_pass)
    return {"graphs": 1332, "naive_json_s": round(naive_s, 4), "cache_load_and_first_pass_s": round(first_s, 4),
            "first_pass_over_naive": round(first_s / naive_s, 3), "repeats": repeats}  # fmt: skip


def unet_projection() -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.generator_cost import build, size_config

    cfg = size_config("base")
    unet, conditioner = build(cfg)
    latent = cfg["latent_size"]
    sample = torch.randn(1, 4 + cfg["layout_channels"], latent, latent)
    tokens = torch.randn(1, 12, conditioner.dim)
    classes = torch.randn(1, conditioner.class_embedding_dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(sample, torch.tensor([500]), encoder_hidden_states=tokens, class_labels=classes)
    forward = counter.get_total_flops()
    per_image = 3 * forward  # forward + backward
    images_per_s = ASSUMED_MFU * H100_BF16_TFLOPS * 1e12 / per_image
    return {"forward_gflop_per_image": round(forward / 1e9, 2), "train_step_gflop_per_image": round(per_image / 1e9, 2),
            "projected_images_per_s_h100": round(images_per_s, 1),
            "assumption": f"{ASSUMED_MFU:.0%} of {H100_BF16_TFLOPS:.0f} dense bf16 TFLOP/s (H100 SXM); projected, not measured"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "gpu_check" / "standin")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "loader")
    parser.add_argument("--decode-images", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets" / "4d-or")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # per core
    if not (args.root / "relationships_train.json").is_file():
        command = [sys.executable, "-m", "or_synth.render", "preset=4dor_native", f"root={args.root}", "scans_per_take=32",
                   "workers=0", "progress=false"]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True)
    args.work.mkdir(parents=True, exist_ok=True)
    paths = sorted((args.root / "export_holistic_take1_processed" / "colorimage").glob("*.jpg"))[
        : args.decode_images
    ]
    shutil.rmtree(args.work / "decode_cache", ignore_errors=True)
    document = {
        "what": "images/s on one core of this machine at 256 px from the 2048 x 1536 stand-in (ratios within the run)",
        "command": "python -m benchmarks.loader " + " ".join(argv if argv is not None else sys.argv[1:]),
        "decode_per_core": decode_rates(paths, args.work / "decode_cache"),
        "training_loader": loader_rates(args.root, args.work, args.workers),
        "unet": unet_projection(),
    }
    if (args.shared / "relationships_validation.json").is_file():
        document["graph_cache_first_pass"] = graph_pass(args.shared, args.work)
    gpu = ROOT / "benchmarks" / "results" / "gpu_check.json"
    if gpu.is_file():
        document["gpu_check"] = json.loads(gpu.read_text())
    atomic_write_json(args.out, document, indent=2)
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
