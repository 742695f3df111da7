#!/usr/bin/env bash
# The main job on the embedded default, on a CPU (docs/demo.md gives its measured time): render the synthetic OR dataset (skipped when complete), then the whole generator recipe `experiment=cpu_demo`:
# stage vae (AutoencoderKL), align (scene-graph encoder), ldm (graph-conditioned denoiser), ending with a sample
# grid of validation graphs whose path it prints. Re-running resumes; complete stages are skipped.
# The grid places the shipped pipeline's images of the same graphs (pretrained/cpu_quality, the 3-hour CPU
# recipe) beside this run's, each column labelled with the budget that produced it.
# Then it evaluates: a relation classifier trained on the real renders only (stage=classifier, about 5 minutes),
# this run's images of 20 validation graphs x cameras 1, 5, and python -m or_synth.evaluate (graph consistency
# per image and per (subject, object) pair beside ceiling and floor, classifier FD / KID, memorisation), and
# ends with the report a supervisor opens: reports/cpu_demo/index.html (self-contained; python -m or_synth.report).
# Extra arguments go to `python -m or_synth.train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m or_synth.render
reference=()
if [[ -f pretrained/cpu_quality/shipped.json ]]; then
  reference=(ldm.sample.reference_pipeline=cpu_quality)
fi
.venv/bin/python -m or_synth.train experiment=cpu_demo "${reference[@]}" "$@"
.venv/bin/python -m or_synth.train experiment=cpu_demo stage=classifier
.venv/bin/python -m or_synth.sample pipeline=runs/ldm/cpu_demo/pipeline graphs=validation stride=4 limit=20 \
  cameras=[1,5] layout=masks out=runs/demo/samples
.venv/bin/python -m or_synth.evaluate samples=runs/demo/samples classifier=runs/classifier/cpu_demo/classifier \
  out=runs/demo/evaluation
.venv/bin/python -m or_synth.report run=runs/demo/evaluation name=cpu_demo
echo "demo: dataset in datasets/synthetic_or; runs in runs/{vae,align,ldm,classifier}/cpu_demo"
echo "      (tensorboard --logdir runs); evaluation in runs/demo/evaluation (metrics.json, cards/)"
echo "      report: reports/cpu_demo/index.html"
