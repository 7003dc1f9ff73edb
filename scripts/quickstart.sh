#!/usr/bin/env bash
# Install what is missing, start Open vSwitch and Docker, then serve the `ovs` network driver
# in the foreground (Ctrl-C stops it). Extra arguments go to `docker-ovs-plugin serve`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"
exec "$repo/.venv/bin/docker-ovs-plugin" serve "$@"
