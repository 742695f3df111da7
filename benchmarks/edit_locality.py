"""How much of an image outside an edit's region does a graph edit change?

    python -m benchmarks.edit_locality --pipeline cpu_quality [--max-scans 12]

For held-out validation scans, three kinds of edit (issue #8): a surgical predicate changed (the first
``human -> Patient`` action triple becomes another action), a staff member's role changed, and a staff member
removed. Each is run through :func:`or_synth.sampling.edit` (the command's own path: layout from the renderer,
latent inpainting with the same seed) and compared outside the edited region, per camera, with the before image:

- inpainted: only the latent cells the region touches regenerated, the rest of the before latent kept;
- full regeneration: the edited graph regenerated everywhere with the same seed (what a generator without
  inpainting gives).

Pixel MSE and mean SSIM (MONAI's local SSIM map) of the kept region, mean and median over edits x cameras. An edit
the graph does not allow (e.g. no action triple) is skipped and counted. Writes
``benchmarks/results/edit_locality.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from or_synth.cli import load_config
from or_synth.data import load_scene_graphs
from or_synth.data.edits import GraphEditError
from or_synth.data.vocabulary import Vocabulary, is_human_class
from or_synth.generator import pipeline_hash
from or_synth.generator.shipped import resolve_pipeline
from or_synth.sampling import edit

RESULTS = Path(__file__).resolve().parent / "results" / "edit_locality.json"
ACTIONS = ("Drilling", "Sawing", "Hammering", "Cutting", "Suturing", "Cementing")
SWAP_ACTION = {action: ACTIONS[(i + 1) % len(ACTIONS)] for i, action in enumerate(ACTIONS)}
STAFF_ROLES = ("head-surgeon", "assistant-surgeon", "circulating-nurse", "anaesthetist")


def edits_for(record) -> dict[str, str]:
    """One edit of each kind that applies to this graph (a kind is absent when the graph offers none)."""
    edits = {}
    action = next(((s, o, p) for s, o, p in record.triples if p in SWAP_ACTION), None)
    if action is not None:
        subject, patient, predicate = action
        edits["predicate"] = f"predicate {subject} {patient} {SWAP_ACTION[predicate]}"
    staff = [
        i
        for i, name in enumerate(record.object_names)
        if is_human_class(name) and record.roles[i] in STAFF_ROLES
    ]
    if staff:
        node = staff[-1]
        other = next((role for role in STAFF_ROLES if role not in record.roles), None)
        if other is not None:  # a role nobody has yet: two head surgeons would be another edit's question
            edits["role"] = f"role {node} {other}"
        edits["remove"] = f"remove {node}"
    return edits


def summarise(values: list[float]) -> dict[str, float]:
    array = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if not len(array):
        return {"mean": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(array.mean()), "median": float(np.median(array)), "n": int(len(array))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True, help="a pipeline folder or a shipped name")
    parser.add_argument("--dataset-root", default="datasets/synthetic_or_quality")
    parser.add_argument("--max-scans", type=int, default=12)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    root = Path(args.dataset_root)
    source = root / "relationships_validation.json"
    records = load_scene_graphs(source, Vocabulary.load(root)).records
    step = max(1, len(records) // args.max_scans)
    chosen = records[::step][: args.max_scans]  # spread over the held-out takes and their phases
    folder = resolve_pipeline(args.pipeline)
    rows, skipped = [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for record in chosen:
            for kind, text in edits_for(record).items():
                overrides = [
                    f"pipeline={folder}", f"graphs={source}", f"dataset_root={root}",
                    f"scan={record.take}/{record.scan}", f"edit='{text}'", f"cameras={list(args.cameras)}",
                    f"steps={args.steps}", f"guidance_scale={args.guidance_scale}", f"out={tmp}",
                ]  # fmt: skip
                try:
                    summary = edit(load_config("edit", overrides))
                except GraphEditError as error:
                    skipped.append({"scan": f"{record.take}/{record.scan}", "edit": text, "why": str(error)})
                    continue
                for camera, view in summary["cameras"].items():
                    if "inpainted" not in view:
                        continue
                    rows.append({"scan": f"{record.take}/{record.scan}", "kind": kind, "edit": text,
                                 "camera": int(camera), **{f"inpainted_{k}": v for k, v in view["inpainted"].items()},
                                 **{f"full_{k}": v for k, v in view["full_regeneration"].items()}})  # fmt: skip
    if not rows:
        raise SystemExit("no edit produced a region (does the pipeline have a layout input?)")

    def table(selected: list[dict]) -> dict:
        return {
            "edits x cameras": len(selected),
            "kept_fraction": summarise([r["inpainted_kept_fraction"] for r in selected]),
            "inpainted": {
                m: summarise([r[f"inpainted_kept_{m}"] for r in selected]) for m in ("ssim", "mse")
            },
            "full_regeneration": {
                m: summarise([r[f"full_kept_{m}"] for r in selected]) for m in ("ssim", "mse")
            },
        }

    results = {
        "command": "python -m benchmarks.edit_locality " + " ".join(argv or []),
        "pipeline": str(args.pipeline),
        "pipeline_hash": pipeline_hash(folder),
        "dataset": str(source),
        "scans": len(chosen),
        "cameras": list(args.cameras),
        "sampling": {"sampler": "dpmsolver++", "steps": args.steps, "guidance_scale": args.guidance_scale},
        "all": table(rows),
        "by_kind": {
            kind: table([r for r in rows if r["kind"] == kind]) for kind in ("predicate", "role", "remove")
        },
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "torch_threads": args.threads},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{'edits':<10} {'n':>4} {'kept':>6} {'SSIM inpaint':>13} {'SSIM full':>10} {'MSE inpaint':>12} {'MSE full':>9}"
    )
    for kind, row in [("all", results["all"]), *results["by_kind"].items()]:
        if not row["edits x cameras"]:
            continue
        print(
            f"{kind:<10} {row['edits x cameras']:>4} {row['kept_fraction']['mean']:>6.2f} "
            f"{row['inpainted']['ssim']['mean']:>13.3f} {row['full_regeneration']['ssim']['mean']:>10.3f} "
            f"{row['inpainted']['mse']['mean']:>12.4f} {row['full_regeneration']['mse']['mean']:>9.4f}"
        )
    print(f"written to {args.out}")
    return results


if __name__ == "__main__":
    main()
