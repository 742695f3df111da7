"""Temporal stability and per-frame faithfulness of generated sequences (``bash scripts/benchmark.sh sequence``).

Protocol, on one take of real 4D-OR scene graphs (default: the shared validation take 4, scans 360-419 (Sawing, Drilling, Assisting, Holding and Touching come and go), all six
cameras; no setting is chosen here: steps and guidance are the evidence protocol's, chosen on the embedded
dataset's validation takes):

1. the take's graphs are rendered with the renderer's take placement (``python -m or_synth.render from_json=...
   placement=take``) at the pipeline's size: the "real renders of the sequence", in exactly the layouts the
   generator draws from (same seed, same placement, same cameras);
2. ``python -m or_synth.sequence`` draws the sequence twice: ``temporal=coherent`` (regenerate only what changed)
   and ``temporal=independent`` (every frame from its own seed: today's per-scan sampling);
3. **stability**: for consecutive frames, on the pixels that neither the layout nor the graph changed
   (:func:`or_synth.sampling.sequence.changed_region`, the region the coherent sequence keeps), the frame-to-frame
   RMS difference (grey levels, 0-255: the flicker number) and SSIM, per camera, for the three sequences; the
   coherent/independent flicker ratio with a bootstrap interval over frame pairs (cameras kept together); also
   restricted to the pairs where something changed (where inpainting, not copying, keeps the rest);
4. **faithfulness per frame**: ``python -m or_synth.evaluate metrics=[graph_consistency]`` with the scorer of
   record on both sequences (the real renders as the ceiling), and coherent - independent per-scan macro-F1 with a
   paired bootstrap over scans;
5. **cost**: seconds per frame per camera, and the mean share of each view regenerated.

Resumes: every command skips what it already wrote. Results: ``benchmarks/results/sequence.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.evidence import SCORER, run
from or_synth.data import load_scene_graphs
from or_synth.data.vocabulary import Vocabulary
from or_synth.evaluation.intervals import ScanCounts, always_present, interval, paired_bootstrap
from or_synth.generator.editing import kept_region_change
from or_synth.sampling.sequence import changed_region

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "4d-or"
RESULTS = ROOT / "benchmarks" / "results"
ARMS = ("real", "coherent", "independent")


def subset_graphs(args) -> Path:
    """The take's scans A:B in a relationships file of their own, with the vocabulary and phase files beside it
    (what ``render from_json=`` reads)."""
    folder = args.work / "graphs"
    path = folder / "relationships_validation.json"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    start, stop = (int(v) for v in args.scans.split(":"))
    scans = json.loads((args.graphs).read_text())["scans"]
    chosen = [s for s in scans if s["take_idx"] == args.take and start <= int(s["scan"]) < stop]
    for name in ("classes.txt", "relationships.txt"):
        shutil.copy(args.graphs.parent / name, folder / name)
    if (args.graphs.parent / "phases").is_dir():
        shutil.copytree(args.graphs.parent / "phases", folder / "phases", dirs_exist_ok=True)
    path.write_text(json.dumps({"scans": chosen}))
    return path


def frame_files(folder: Path, take: int, records, camera: int) -> list[Path]:
    """One camera's frames of a sequence (4D-OR's layout), in scan order."""
    from or_synth.data.images import color_image_path
    from or_synth.render.writer import frame_id

    return [color_image_path(folder, take, camera, frame_id(take, int(r.scan), camera)) for r in records]


def frames_of(folder: Path, take: int, records, cameras) -> dict[int, list[torch.Tensor]]:
    """camera -> the sequence's frames (3, H, W) float in [0, 1], in scan order (4D-OR's layout)."""

    def tensor(path: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0).permute(
            2, 0, 1
        )

    return {camera: [tensor(p) for p in frame_files(folder, take, records, camera)] for camera in cameras}


def masks_of(folder: Path, take: int, records, cameras) -> dict[int, list[np.ndarray]]:
    from or_synth.data.annotations import read_instance_mask
    from or_synth.render.writer import frame_id

    return {
        c: [read_instance_mask(folder, take, c, frame_id(take, int(r.scan), c)) for r in records]
        for c in cameras
    }


def stability(args, records, arms: dict[str, Path]) -> dict:
    """Frame-to-frame change on the unchanged pixels, per arm and camera, with the coherent/independent ratio."""
    masks = masks_of(arms["coherent"], args.take, records, args.cameras)
    frames = {name: frames_of(folder, args.take, records, args.cameras) for name, folder in arms.items()}
    # (arm, camera, pair) -> mse, ssim; the region is the same for every arm (the layouts are the same)
    mse = {name: np.full((len(args.cameras), len(records) - 1), np.nan) for name in arms}
    ssim = {name: np.full_like(mse[name], np.nan) for name in arms}
    changed = np.zeros((len(args.cameras), len(records) - 1), bool)
    for v, camera in enumerate(args.cameras):
        for t in range(1, len(records)):
            region = changed_region(
                records[t - 1], records[t], masks[camera][t - 1], masks[camera][t], dilation=2
            )
            changed[v, t - 1] = bool(region.any())
            for name in arms:
                change = kept_region_change(frames[name][camera][t - 1], frames[name][camera][t], region)
                mse[name][v, t - 1], ssim[name][v, t - 1] = change["kept_mse"], change["kept_ssim"]
    rng = np.random.default_rng(0)
    pairs = len(records) - 1
    draws = rng.integers(0, pairs, size=(args.resamples, pairs))

    def flicker(values: np.ndarray, where: np.ndarray) -> float:
        chosen = values[where & ~np.isnan(values)]
        return float(255 * np.sqrt(chosen.mean())) if chosen.size else float("nan")

    def summary(where: np.ndarray) -> dict:
        rows = {}
        for name in arms:
            rows[name] = {
                "flicker_rms_grey_levels": round(flicker(mse[name], where), 3),
                "ssim": round(float(np.nanmean(np.where(where, ssim[name], np.nan))), 4),
                "by_camera": {
                    str(c): {
                        "flicker_rms_grey_levels": round(flicker(mse[name][v], where[v]), 3),
                        "ssim": round(float(np.nanmean(np.where(where[v], ssim[name][v], np.nan))), 4),
                    }
                    for v, c in enumerate(args.cameras)
                    if where[v].any()
                },
            }
        ratios = []
        for draw in draws:
            w = where[:, draw]
            a, b = flicker(mse["coherent"][:, draw], w), flicker(mse["independent"][:, draw], w)
            ratios.append(a / b if b > 0 else np.nan)
        point = rows["coherent"]["flicker_rms_grey_levels"] / rows["independent"]["flicker_rms_grey_levels"]
        return {
            "pairs": int(where.sum()),
            "arms": rows,
            "coherent_over_independent": {"value": round(point, 4), "ci95": interval(np.array(ratios))},
        }

    every = ~np.isnan(mse["coherent"])
    return {
        "all_pairs": summary(every),
        "pairs_with_a_change": summary(every & changed),
        "share_of_pairs_with_a_change": round(float(changed.mean()), 4),
    }


def consistency(args, evaluations: dict[str, Path]) -> dict:
    """Per-scan image-level macro-F1 of both sequences (scorer of record) and their paired difference."""
    loaded = {
        name: np.load(folder / "per_scan_graph_consistency.npz") for name, folder in evaluations.items()
    }
    first = loaded["coherent"]
    keys = list(first["keys"])
    present = first["present"]
    rows = {}
    for name, z in loaded.items():
        assert list(z["keys"]) == keys, "both sequences must list the same scans"
        rows[name] = ScanCounts.from_rows(keys, z["model/tp"], z["model/fp"], z["model/fn"])
    rows["ceiling"] = ScanCounts.from_rows(
        keys, first["ceiling/tp"], first["ceiling/fp"], first["ceiling/fn"]
    )
    rows["always_present"] = always_present(keys, first["truth"])
    result = paired_bootstrap(
        rows, present, differences=[("coherent", "independent"), ("coherent", "always_present")],
        resamples=args.resamples,
    )  # fmt: skip
    names = Vocabulary().predicates  # the npz's columns are the vocabulary's predicates, in order
    result["predicates_present"] = [p for p, on in zip(names, present, strict=True) if on]
    return result


def markdown(document: dict) -> str:
    s, c, cost = document["stability"], document["consistency"], document["cost"]
    lines = [
        "# Sequences: temporal stability and per-frame consistency",
        "",
        f"`{document['command']}`; graphs: {document['setup']['graphs']} take {document['setup']['take']} scans "
        f"{document['setup']['scans']}, cameras {document['setup']['cameras']}, pipeline "
        f"{document['setup']['pipeline']} ({document['setup']['pipeline_hash']}), {document['setup']['steps']} steps, "
        f"guidance {document['setup']['guidance_scale']}.",
        "",
        "## Flicker on the pixels neither the layout nor the graph changed",
        "",
        "RMS frame-to-frame difference (grey levels 0-255) and SSIM between consecutive frames, over the pixels "
        "outside the changed region (the same region for every row: the three sequences share their layouts).",
        "",
        "| sequence | all pairs: flicker | SSIM | pairs with a change: flicker | SSIM |",
        "|---|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        a, b = s["all_pairs"]["arms"][arm], s["pairs_with_a_change"]["arms"][arm]
        lines.append(
            f"| {arm} | {a['flicker_rms_grey_levels']:.2f} | {a['ssim']:.3f} | {b['flicker_rms_grey_levels']:.2f} | "
            f"{b['ssim']:.3f} |"
        )
    for key, label in (("all_pairs", "all pairs"), ("pairs_with_a_change", "pairs with a change")):
        ratio = s[key]["coherent_over_independent"]
        lines.append("")
        lines.append(
            f"Coherent / independent flicker, {label} ({s[key]['pairs']} camera-pairs): **{ratio['value']:.3f}** "
            f"[{ratio['ci95'][0]:.3f}, {ratio['ci95'][1]:.3f}]"
        )
    lines += [
        "",
        f"Share of consecutive pairs where something changed: {s['share_of_pairs_with_a_change']:.3f}",
        "",
    ]
    lines += [
        "Per camera (all pairs, flicker):",
        "",
        "| camera | real | coherent | independent |",
        "|---|---:|---:|---:|",
    ]
    for camera in document["setup"]["cameras"]:
        values = [
            s["all_pairs"]["arms"][arm]["by_camera"][str(camera)]["flicker_rms_grey_levels"] for arm in ARMS
        ]
        lines.append(f"| {camera} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    rows, diff = c["rows"], c["differences"]
    lines += [
        "",
        "## Per-frame graph consistency (scorer of record, image-level predicate macro-F1 per scan)",
        "",
        "| row | macro-F1 | 95 % CI |",
        "|---|---:|---|",
    ]
    for name in ("ceiling", "coherent", "independent", "always_present"):
        lines.append(
            f"| {name} | {rows[name]['value']:.3f} | [{rows[name]['ci95'][0]:.3f}, {rows[name]['ci95'][1]:.3f}] |"
        )
    d = diff["coherent - independent"]
    lines += [
        "",
        f"coherent - independent: **{d['value']:+.3f}** [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] over "
        f"{c['n_scans']} scans (paired bootstrap); predicates present: {', '.join(c['predicates_present'])}.",
        "",
        "## Cost",
        "",
        f"Seconds per frame per camera (wall, on a shared 2-core machine): coherent "
        f"{cost['coherent']['seconds_per_frame_per_camera']:.2f}, independent "
        f"{cost['independent']['seconds_per_frame_per_camera']:.2f}. Mean share of each view regenerated per frame "
        f"(coherent): {cost['coherent']['regenerated_share_mean']:.3f}. A frame where nothing changed costs nothing; "
        "one where something changed runs every denoising step on the whole latent (inpainting keeps cells, it does "
        "not skip them), and only its changed cameras share a batch.",
        "",
        document["verdict"],
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graphs", type=Path, default=SHARED / "relationships_validation.json")
    parser.add_argument("--take", type=int, default=4)
    parser.add_argument("--scans", default="360:420")  # Sawing, Drilling, Assisting, Holding come and go
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--pipeline", default="cpu_quality")
    parser.add_argument("--scorer", default=SCORER)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--guidance", type=float, default=5.0
    )  # the evidence protocol's choice (validation takes)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "sequence")
    parser.add_argument("--out", type=Path, default=RESULTS / "sequence.json")
    args = parser.parse_args(argv)
    args.work = args.work.resolve()

    from or_synth.generator import pipeline_hash
    from or_synth.sampling.pipelines import load_pipeline, pipeline_folder

    folder = pipeline_folder(args.pipeline)
    height, width = load_pipeline(folder, progress=False).image_size
    graphs = subset_graphs(args)
    records = [r for r in load_scene_graphs(graphs, Vocabulary.load(graphs.parent)).records]
    cameras = f"[{','.join(map(str, args.cameras))}]"
    real = args.work / "real"
    run(["or_synth.render", f"root={real}", f"from_json={graphs}", "placement=take", f"image_size=[{height},{width}]",
         "progress=false"], args.work / "logs" / "render.log")  # fmt: skip
    arms = {"real": real}
    evaluations = {}
    for temporal in ("coherent", "independent"):
        out = args.work / temporal
        run(["or_synth.sequence", f"pipeline={args.pipeline}", f"graphs={graphs}", f"take={args.take}",
             f"scans={args.scans}", f"cameras={cameras}", f"temporal={temporal}", f"steps={args.steps}",
             f"guidance_scale={args.guidance}", f"out={out}", "progress=false"],
            args.work / "logs" / f"{temporal}.log")  # fmt: skip
        arms[temporal] = out
        evaluations[temporal] = args.work / "eval" / temporal
        run(["or_synth.evaluate", f"samples={out / 'manifest.jsonl'}", f"classifier={args.scorer}",
             f"dataset_root={real}", "metrics=[graph_consistency]", f"out={evaluations[temporal]}",
             f"cache_dir={args.work / 'cache'}", "progress=false"],
            args.work / "logs" / f"{temporal}_eval.log")  # fmt: skip
    stable = stability(args, records, arms)
    faithful = consistency(args, evaluations)
    cost = {}
    for temporal in ("coherent", "independent"):
        record = json.loads((arms[temporal] / "or_synth_sequence.json").read_text())
        shares = record["regenerated_share"]
        cost[temporal] = {
            "seconds_per_frame_per_camera": record["seconds_per_frame_per_camera"],
            "regenerated_share_by_camera": shares,
            "regenerated_share_mean": round(float(np.mean(list(shares.values()))), 4),
        }
    ratio = stable["pairs_with_a_change"]["coherent_over_independent"]
    diff = faithful["differences"]["coherent - independent"]
    less_flicker = ratio["ci95"][1] < 1.0
    within = diff["ci95"][0] <= 0.0 <= diff["ci95"][1]
    verdict = (
        f"Less flicker than independent sampling: {'shown' if less_flicker else 'not shown'} (ratio "
        f"{ratio['value']:.3f} [{ratio['ci95'][0]:.3f}, {ratio['ci95'][1]:.3f}] on pairs with a change). "
        f"Per-frame consistency {'within' if within else 'outside'} the interval of independent sampling "
        f"(coherent - independent {diff['value']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}])."
    )
    rows = faithful["rows"]
    if rows["always_present"]["value"] >= rows["ceiling"]["value"]:
        verdict += (
            f" On these scans the label-blind 'always present' constant ({rows['always_present']['value']:.3f}) scores "
            f"at or above the real renders' ceiling ({rows['ceiling']['value']:.3f}): the scorer cannot tell their "
            "predicates apart at this size, so faithfulness itself is not shown here; what holds is that coherence "
            "costs none of it relative to independent sampling."
        )
    document = {
        "command": "bash scripts/benchmark.sh sequence "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "setup": {
            "graphs": str(args.graphs.relative_to(ROOT.parent))
            if args.graphs.is_relative_to(ROOT.parent)
            else str(args.graphs),
            "take": args.take,
            "scans": args.scans,
            "frames": len(records),
            "cameras": args.cameras,
            "pipeline": args.pipeline,
            "pipeline_hash": pipeline_hash(folder),
            "scorer": args.scorer,
            "steps": args.steps,
            "guidance_scale": args.guidance,
            "image_size": [height, width],
        },
        "stability": stable,
        "consistency": faithful,
        "cost": cost,
        "less_flicker_shown": less_flicker,
        "consistency_within_independent_interval": within,
        "verdict": verdict,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(document))
    # beside the sequence too: the report's sequence section reads it (python -m or_synth.report run=<coherent>)
    (arms["coherent"] / "stability.json").write_text(json.dumps(document, indent=2) + "\n")
    from or_synth.sampling.sequence import contact_strip

    frames = {
        c: [Image.open(p) for p in frame_files(arms["coherent"], args.take, records, c)] for c in args.cameras
    }
    contact_strip(frames, [r.scan for r in records]).save(args.out.parent / "sequence_strip.png")
    print(markdown(document))


if __name__ == "__main__":
    main()
