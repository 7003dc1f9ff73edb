#!/usr/bin/env bash
# Put the project's wheel and the wheels of all its dependencies into OUT_DIR (default
# build/image/wheels), for the image build to install with `pip install --no-index`.
# Dependencies are kept in a cache directory shared by all checkouts on the machine; PyPI is asked
# only for what the cache lacks, so a warm rebuild needs no network.
#
#   packaging/build-wheelhouse.sh [OUT_DIR]
#
# Settings (environment):
#   PYTHON            interpreter whose pip builds the wheels (default python3); it must be the
#                     same minor version as the image's python3 (3.11 on Debian bookworm)
#   WHEELHOUSE_CACHE  cache of dependency wheels (default /var/cache/docker-ovs-plugin/wheels)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/build/image/wheels}
python=${PYTHON:-python3}
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cache=${WHEELHOUSE_CACHE:-/var/cache/docker-ovs-plugin/wheels}/py$pyver

log() { printf '[wheelhouse] %s\n' "$*" >&2; }
pip() { "$python" -m pip --disable-pip-version-check --no-input -q "$@"; }

mkdir -p "$cache" "$out"
rm -f "$out"/*.whl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The project's own wheel; its build backend (setuptools) comes from the cache when it is there.
if ! pip wheel --no-deps --no-index --find-links "$cache" -w "$tmp" "$repo" 2>/dev/null; then
    log "fetching build requirements from the package index into $cache"
    pip download -d "$cache" --only-binary=:all: "setuptools>=68" wheel
    pip wheel --no-deps --no-index --find-links "$cache" -w "$tmp" "$repo"
fi
project=$(ls "$tmp"/docker_ovs_plugin-*.whl)

# Its dependencies, offline from the cache when possible; otherwise fill the cache first.
if ! pip wheel --no-index --find-links "$cache" -w "$out" "$project" 2>/dev/null; then
    log "fetching dependencies from the package index into $cache"
    pip wheel --find-links "$cache" -w "$cache" "$project"
    rm -f "$cache"/docker_ovs_plugin-*.whl
    pip wheel --no-index --find-links "$cache" -w "$out" "$project"
fi
log "$(find "$out" -name "*.whl" | wc -l) wheels in $out (Python $pyver)"
