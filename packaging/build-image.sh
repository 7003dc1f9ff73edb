#!/usr/bin/env bash
# Build the plugin image from this checkout.
#
#   packaging/build-image.sh [--local-base] [TAG]      (TAG default: docker-ovs-plugin:latest)
#
# --local-base  build the base from Debian's packages first (packaging/build-base-image.sh:
#               debootstrap + docker import, cached by tag) and use it: no registry, no network
#               during the build. Without it the Dockerfile's default public base is pulled.
# Settings (environment): BASE_IMAGE (base image to build on; with --local-base, the tag of the
# local base), BUILD_CONTEXT (scratch directory, default build/image), and those of
# packaging/build-wheelhouse.sh.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
local_base=0
if [ "${1:-}" = "--local-base" ]; then
    local_base=1
    shift
fi
tag=${1:-docker-ovs-plugin:latest}
ctx=${BUILD_CONTEXT:-$repo/build/image}

log() { printf '[image] %s\n' "$*" >&2; }

base=${BASE_IMAGE:-}
if [ "$local_base" -eq 1 ]; then
    base=$("$repo/packaging/build-base-image.sh")
fi

mkdir -p "$ctx"
"$repo/packaging/build-wheelhouse.sh" "$ctx/wheels"
cp "$repo/packaging/entrypoint.sh" "$ctx/entrypoint.sh"

args=(--tag "$tag" --file "$repo/packaging/Dockerfile")
[ -n "$base" ] && args+=(--build-arg "BASE_IMAGE=$base")
log "building $tag on ${base:-the default base of the Dockerfile}"
docker build --quiet "${args[@]}" "$ctx" >/dev/null
log "built $tag"
echo "$tag"
