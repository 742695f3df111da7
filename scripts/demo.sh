#!/usr/bin/env bash
# The main job on the embedded default, on a CPU (about 18 minutes on 2 cores once installed): render the
# synthetic OR dataset (skipped when complete), then the whole generator recipe `experiment=cpu_demo`:
# stage vae (AutoencoderKL), align (scene-graph encoder), ldm (graph-conditioned denoiser), ending with a sample
# grid of validation graphs whose path it prints. Re-running resumes; complete stages are skipped.
# Extra arguments go to `python -m or_synth.train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m or_synth.render
.venv/bin/python -m or_synth.train experiment=cpu_demo "$@"
echo "demo: dataset in datasets/synthetic_or; runs in runs/{vae,align,ldm}/cpu_demo"
echo "      (tensorboard --logdir runs); sample with:"
echo "      .venv/bin/python -m or_synth.sample pipeline=runs/ldm/cpu_demo/pipeline graphs=validation out=samples/cpu_demo"
