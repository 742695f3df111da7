#!/usr/bin/env bash
# Runs a benchmark suite and records its results under benchmarks/results/ (run from anywhere).
# Usage: bash scripts/benchmark.sh SUITE [extra args for the suite's script]
#   data          parse vs processed cache of the 1332 real validation graphs (pytest-benchmark) -> data.md/json
#   render        render speed, images/s per core at 128 and 256 px, 1 vs all workers -> render.json
#   learnability  a tiny CNN learns predicates from rendered images (about 6 minutes) -> learnability.json
#   encoder       held-out graph->image retrieval before/after align, masked predicates on real graphs -> encoder.json
#   generator-quality  does a trained pipeline draw the graph (classifier: generated vs ceiling and floor), samplers
#                      against DDPM-1000, sampling speed; needs a pipeline (default: the demo's) -> generator_quality.json
#   generator-cost     parameters of the denoiser sizes, base-size step memory at 256 px, cpu step time -> generator_cost.json
#   latent-cache       ldm training images/s with the latent cache against encoding every batch -> latent_cache.json
#   generator-levers   each efficiency lever of the CPU quality recipe trained 30 min (1 core each, 2 side by side)
#                      and scored against ceiling and floor; resumable, hours -> generator_levers.json
#   cpu-quality        the CPU quality recipe's shipped pipeline (pretrained/cpu_quality) on 40 held-out validation
#                      scans x cameras 1,3,5, guidance 3, with its sample grid -> generator_quality_cpu_quality.json
#   sample-speed       sampling images/s with layout=render against layout=none (shipped cpu_quality) -> sample_speed.json
#   export-speed       or_synth.export images/s: 1 process x 1 thread, 1 x 2 threads, 2 processes -> export_speed.json
#   layout-iou         the graph-to-layout predictor (stage=layout of experiment=cpu_quality, trained if absent) on the
#                      held-out test takes: box IoU per class against a per-class mean-box baseline -> layout_iou.json
#   edit-locality      graph edits: kept-region SSIM / MSE, latent inpainting vs full regeneration -> edit_locality.json
#   evaluation         the evaluation suite on the shipped pipeline (relation classifier trained first if absent):
#                      classifier quality, graph consistency, FD/KID, memorisation, relation sensitivity, and a
#                      second evaluation served from the cached reference -> evaluation_suite.json
#   evidence           the headline table by layout source (none, predicted, render, given masks) with the null-graph,
#                      conflict and painter controls and paired-bootstrap intervals, chosen on validation takes and
#                      reported on test takes; trains what it needs first (resumes; hours) -> evidence.json/.md
#   reliability        every entry point tried with bad inputs and faults (refused or survived) -> reliability.json/.md
#   downstream         the second downstream protocol: every arm the same steps (the real-only validation plateau),
#                      new scene-process graphs drawn with rendered layouts, their real renders as the oracle,
#                      synthetic only, 5 seeds, gains paired over seeds and test scans (takes 2, 6) -> downstream.json
#   loader             decoding 2048 x 1536 JPEGs (full, draft, decode_jpeg, cached) and the training loader at native
#                      size, num_workers 0/1/2, beside the base UNet's projected consumption -> loader.json
#   sequence           scene-graph sequences (real 4D-OR validation take 4, scans 360-419, six cameras): flicker on
#                      unchanged pixels of coherent vs independent sampling vs the real renders, per-frame graph
#                      consistency (scorer of record, paired bootstrap), cost -> sequence.json/.md
#   action-recognition does synthetic data help a main-action classifier on real held-out takes? seeds, CIs, ratio
#                      sweep, low-data regimes, matched-compute and oracle controls -> action_recognition.json
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
suites="data|render|loader|learnability|encoder|generator-quality|generator-cost|latent-cache|generator-levers|cpu-quality|sample-speed|export-speed|edit-locality|layout-iou|evaluation|evidence|reliability|downstream|sequence|action-recognition"
suite=${1:?usage: scripts/benchmark.sh $suites [args]}
shift
case "$suite" in
  loader)
    .venv/bin/python -m benchmarks.loader "$@"
    ;;
  sequence) .venv/bin/python -m benchmarks.sequence "$@" ;;
  data)
    .venv/bin/python -m pytest benchmarks/bench_data.py --benchmark-enable -q \
      --benchmark-json=benchmarks/results/data.json "$@"
    .venv/bin/python benchmarks/record.py benchmarks/results/data.json test_plain_json_and_data \
      > benchmarks/results/data.md
    cat benchmarks/results/data.md
    ;;
  render) .venv/bin/python -m benchmarks.render_speed "$@" ;;
  learnability) .venv/bin/python -m benchmarks.learnability "$@" ;;
  encoder)
    # Retrieval is measured on held-out takes of a rendered dataset (rendered here if absent).
    .venv/bin/python -m or_synth.render root=datasets/synthetic_or_bench takes=6 scans_per_take=120 workers=0
    .venv/bin/python -m benchmarks.encoder_retrieval --synthetic-root datasets/synthetic_or_bench "$@"
    ;;
  generator-quality)
    # The recorded run scores the demo's pipeline (bash scripts/demo.sh) on 40 validation scans x cameras 1,3,5.
    .venv/bin/python -m benchmarks.generator_quality --pipeline runs/ldm/cpu_demo/pipeline --classifier-steps 1000 \
      --max-graphs 40 --cameras 1 3 5 --layout masks --samplers --sampler-images 8 --threads 2 "$@"
    ;;
  generator-cost) .venv/bin/python -m benchmarks.generator_cost "$@" ;;
  latent-cache) .venv/bin/python -m benchmarks.latent_cache "$@" ;;
  generator-levers) .venv/bin/python -m benchmarks.generator_levers "$@" ;;
  cpu-quality)
    # the recipe's held-out takes (rendered as experiment=cpu_quality renders them; skipped when complete)
    .venv/bin/python -m or_synth.render root=datasets/synthetic_or_quality scans_per_take=200
    .venv/bin/python -m benchmarks.generator_quality --pipeline cpu_quality \
      --dataset-root datasets/synthetic_or_quality --classifier-steps 1000 --max-graphs 40 --cameras 1 3 5 \
      --layout masks --guidance-scale 3 --threads 2 --grid docs/images/cpu_quality_grid.png \
      --out benchmarks/results/generator_quality_cpu_quality.json "$@"
    ;;
  sample-speed) .venv/bin/python -m benchmarks.sample_speed --pipeline cpu_quality "$@" ;;
  export-speed) .venv/bin/python -m benchmarks.export_speed --pipeline cpu_quality "$@" ;;
  edit-locality) .venv/bin/python -m benchmarks.edit_locality --pipeline cpu_quality "$@" ;;
  layout-iou)
    .venv/bin/python -m or_synth.train experiment=cpu_quality stage=layout   # resumes; once trained it only re-saves
    .venv/bin/python -m benchmarks.layout_iou --predictor runs/layout/cpu_quality/predictor \
      --dataset-root datasets/synthetic_or_quality --split test "$@"
    ;;
  evaluation)
    .venv/bin/python -m or_synth.train experiment=cpu_quality stage=classifier   # resumes; once trained it re-scores
    .venv/bin/python -m benchmarks.evaluation_suite --classifier runs/classifier/cpu_quality/classifier "$@"
    ;;
  evidence)
    # the scorer of record and its two extra seeds, the align encoder and the layout predictor (each resumes or skips)
    .venv/bin/python -m or_synth.train experiment=cpu_quality stage=classifier
    .venv/bin/python -m or_synth.train experiment=cpu_quality stage=align
    .venv/bin/python -m or_synth.train experiment=cpu_quality stage=layout
    for seed in 1 2; do
      .venv/bin/python -m or_synth.train experiment=cpu_quality stage=classifier seed=$seed name=cpu_quality_seed$seed
    done
    .venv/bin/python -m benchmarks.evidence "$@"
    ;;
  reliability) .venv/bin/python benchmarks/reliability.py "$@" ;;
  downstream) .venv/bin/python -m benchmarks.downstream "$@" ;;
  action-recognition) .venv/bin/python -m benchmarks.action_recognition "$@" ;;
  *) echo "unknown suite $suite ($suites)" >&2; exit 2 ;;
esac
