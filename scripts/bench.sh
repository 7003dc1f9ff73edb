#!/usr/bin/env bash
# The benchmark suite (benchmarks/): installs what is missing (Debian packages, .venv with the
# test and bench extras), starts Open vSwitch and Docker, then measures and writes
# bench-results/results.{json,md,png}. Extra arguments go to the suite, e.g.
#   scripts/bench.sh --quick                 # smoke run, about 3 minutes
#   scripts/bench.sh --only lifecycle,burst  # some items   (--help lists them and the flags)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# iperf3 for the data path items (run from the host inside each namespace); nftables for their
# context rows, which delete Docker's DNS nat table in a container's namespace (iptables-nft
# cannot drop a table's base chains). busybox-static, for the image, is in setup.sh's list.
# ethtool is not needed: the suite turns TX checksum offload off through pyroute2.
"$repo/scripts/setup.sh" iperf3 nftables

log() { printf '[bench] %s\n' "$*" >&2; }

venv="$repo/.venv"
stamp="$venv/.bench-installed-$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    log "installing the bench extras into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$repo[test,bench]"
    rm -f "$venv"/.bench-installed-* && touch "$stamp"
fi

cd "$repo"
exec "$venv/bin/python" -m benchmarks "$@"
