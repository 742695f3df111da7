"""The export's ``dataset_card.md``: what was exported with which settings, and the main-action counts of the
source graphs before and of the exported scans after rebalancing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from or_synth.data.scene_graph import SceneGraphRecord
from or_synth.data.vocabulary import main_action


def dataset_card(
    settings: dict,
    records: Sequence[SceneGraphRecord],
    copies: Sequence[int],
    scans: int,
    cameras: Sequence[int],
) -> str:
    """The card's Markdown (``settings``: the export's recorded settings; ``copies``: scans per source graph)."""
    before = Counter(main_action(r.predicates) for r in records)
    after: Counter = Counter()
    for record, n in zip(records, copies, strict=True):
        after[main_action(record.predicates)] += n
    rows = "\n".join(
        f"| {a} | {before[a]} | {after[a]} |"
        for a in sorted(set(before) | set(after), key=lambda a: (-before[a], a))
    )
    eval_note = (
        "**yes: made from validation/test graphs (allow_eval_graphs=true); do not score models on those takes**"
        if settings["allow_eval_graphs"]
        else "no (refused unless allow_eval_graphs=true)"
    )
    return f"""# Synthetic OR training set (or_synth.export)

Generated images in 4D-OR's on-disk layout: {scans} scans x cameras {list(cameras)}.

- graphs: {settings["graphs"]}
- evaluation graphs used: {eval_note}
- pipeline hash: {settings["pipeline_hash"]}
- sampling: {settings["sampler"]}, {settings["steps"]} steps, guidance {settings["guidance_scale"]}, layout
  {settings["layout"]} (layout guidance {settings["layout_guidance_scale"]}), seed {settings["seed"]}
- samples per graph: {settings["samples_per_graph"]}; rebalance: {settings["rebalance"]}
- JPEG quality {settings["jpeg_quality"]}

Main action per scan (LABRAD-OR's rule), source graphs before and exported scans after rebalancing:

| main action | before | after |
|---|---:|---:|
{rows}
"""
