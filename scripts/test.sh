#!/usr/bin/env bash
# The whole test suite: lint, types, unit and end-to-end tests against real Docker and OVS.
# Extra arguments go to pytest (e.g. `scripts/test.sh tests/unit -x`) and skip the matrix run.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"
cd "$repo"
bin=.venv/bin
echo "== ruff"; "$bin/ruff" check . && "$bin/ruff" format --check .
echo "== mypy"; "$bin/mypy"
echo "== pytest (Docker $(docker version -f '{{.Server.Version}}'))"; "$bin/python" -m pytest --durations=15 "$@"
# The support matrix: the whole suite (no arguments) also runs its end-to-end and multi-host
# tests on the newest Docker in Debian's archive, in place of the host's dockerd for that time
# (testbed/docker_release.py). DOCKER_MATRIX names the Debian suites; empty skips them.
if [ $# -eq 0 ]; then
    for suite in ${DOCKER_MATRIX-unstable}; do
        echo "== e2e and multi-host on Docker from Debian $suite"
        "$bin/python" -m testbed.docker_release run --suite "$suite" -- \
            "$bin/python" -m pytest --durations=15 tests/e2e tests/multihost
    done
fi
