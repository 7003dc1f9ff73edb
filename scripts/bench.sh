#!/usr/bin/env bash
# The benchmark suite (benchmarks/): installs what is missing (Debian packages, .venv with the
# test and bench extras), starts Open vSwitch and Docker, then measures and writes
# bench-results/results.{json,md,png}. Extra arguments go to the suite, e.g.
#   scripts/bench.sh --quick                 # smoke run, about 3 minutes
#   scripts/bench.sh --only lifecycle,burst  # some items   (--help lists them and the flags)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"

log() { printf '[bench] %s\n' "$*" >&2; }

# iperf3 for the data path item (run from the host inside each namespace), busybox-static for
# the image. ethtool is not needed: the suite turns TX checksum offload off through pyroute2.
missing=()
for p in iperf3 busybox-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$repo/.venv"
stamp="$venv/.bench-installed-$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    log "installing the bench extras into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$repo[test,bench]"
    rm -f "$venv"/.bench-installed-* && touch "$stamp"
fi

cd "$repo"
exec "$venv/bin/python" -m benchmarks "$@"
