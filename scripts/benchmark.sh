#!/usr/bin/env bash
# Runs a benchmark suite and records its results under benchmarks/results/.
# Usage: bash scripts/benchmark.sh data
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
suite=${1:?usage: scripts/benchmark.sh SUITE (data)}
case "$suite" in
  data)
    .venv/bin/python -m pytest benchmarks/bench_data.py --benchmark-enable -p no:randomly -q \
      --benchmark-json=benchmarks/results/data.json
    .venv/bin/python benchmarks/record.py benchmarks/results/data.json test_plain_json_and_data \
      > benchmarks/results/data.md
    cat benchmarks/results/data.md
    ;;
  *) echo "unknown suite $suite" >&2; exit 2 ;;
esac
