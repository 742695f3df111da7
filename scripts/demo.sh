#!/usr/bin/env bash
# The main job on the embedded default, on a CPU (about 18 minutes on 2 cores once installed): render the
# synthetic OR dataset (skipped when complete), then the whole generator recipe `experiment=cpu_demo`:
# stage vae (AutoencoderKL), align (scene-graph encoder), ldm (graph-conditioned denoiser), ending with a sample
# grid of validation graphs whose path it prints. Re-running resumes; complete stages are skipped.
# The grid places the shipped pipeline's images of the same graphs (pretrained/cpu_quality, the 3-hour CPU
# recipe) beside this run's, each column labelled with the budget that produced it.
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
echo "demo: dataset in datasets/synthetic_or; runs in runs/{vae,align,ldm}/cpu_demo"
echo "      (tensorboard --logdir runs); sample with:"
echo "      .venv/bin/python -m or_synth.sample pipeline=runs/ldm/cpu_demo/pipeline graphs=validation out=samples/cpu_demo"
