#!/usr/bin/env bash
# The main job on the embedded default, on a CPU: render the synthetic OR dataset (skipped when it is already
# complete; an interrupted render resumes), then adapt the scene-graph encoder to it (stage=align; re-running
# resumes from the last checkpoint). Extra arguments go to `python -m or_synth.train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m or_synth.render
.venv/bin/python -m or_synth.train stage=align experiment=cpu_demo "$@"
echo "demo: dataset in datasets/synthetic_or (see datasets/synthetic_or.md), encoder checkpoint and"
echo "      TensorBoard logs in runs/align/cpu_demo/ (tensorboard --logdir runs/align/cpu_demo/tensorboard)"
