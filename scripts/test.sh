#!/usr/bin/env bash
# The whole default test suite (slow tests excluded unless you pass your own -m, e.g. `-m slow`).
# Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
case " $* " in
  *" -m "*) ;;                   # the caller chose the markers
  *) set -- -m "not slow" "$@" ;;
esac
exec .venv/bin/python -m pytest "$@"
