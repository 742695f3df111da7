#!/usr/bin/env bash
# Creates .venv and installs or_synth with its dev tools; quick (no pip call) when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Re-install only when the dependency list changed: the stamp holds the hash of pyproject.toml.
stamp=.venv/.or_synth-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing or_synth and its dependencies into .venv (first time: several minutes)..." >&2
  log=.venv/pip-install.log
  if ! .venv/bin/python -m pip install -e ".[dev]" \
      >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: pip install failed; the full log is $log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
