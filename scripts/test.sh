#!/usr/bin/env bash
# The whole test suite: lint, types, unit and end-to-end tests against real Docker and OVS.
# Extra arguments go to pytest (e.g. `scripts/test.sh tests/unit -x`).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"
cd "$repo"
bin=.venv/bin
echo "== ruff"; "$bin/ruff" check . && "$bin/ruff" format --check .
echo "== mypy"; "$bin/mypy"
echo "== pytest"; "$bin/python" -m pytest "$@"
