#!/usr/bin/env bash
# The GPU check (issue 24): experiment=4dor on CUDA for a few hundred steps, compile off and on; step time,
# images/s, peak memory and the loss trend -> benchmarks/results/gpu_check.json. Run it whenever a GPU is lent
# (about 10 minutes on one H100-class GPU, most of it the stand-in's render and torch.compile).
# Extra args go to benchmarks/gpu_check.py (e.g. --steps 200).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m benchmarks.gpu_check "$@"
