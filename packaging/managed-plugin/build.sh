#!/usr/bin/env bash
# Make the managed (v2) plugin from the plugin image: its root filesystem plus config.json, then
# `docker plugin create`. The plugin is created disabled; enable it and use NAME:TAG as driver:
#
#   packaging/managed-plugin/build.sh [--image IMAGE] [--force] NAME[:TAG]
#   docker plugin enable NAME:TAG
#   docker network create -d NAME:TAG --subnet 10.77.0.0/24 --gateway 10.77.0.1 n1
#
# IMAGE defaults to docker-ovs-plugin:latest (packaging/build-image.sh). --force replaces an
# existing plugin of that name (which must not be in use). The plugin records its networks in
# OVSDB under the driver name NAME:TAG (its DRIVER_NAME setting; change it with
# `docker plugin set NAME:TAG DRIVER_NAME=...` when installing under an alias).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image=docker-ovs-plugin:latest
force=0
while [ $# -gt 0 ]; do
    case $1 in
        --image) image=$2; shift 2 ;;
        --force) force=1; shift ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || { sed -n '2,14p' "${BASH_SOURCE[0]}" >&2; exit 2; }
ref=$1
case $ref in *:*) ;; *) ref=$ref:latest ;; esac

log() { printf '[managed-plugin] %s\n' "$*" >&2; }

if docker plugin inspect "$ref" >/dev/null 2>&1; then
    if [ "$force" -eq 0 ]; then
        log "plugin $ref exists; remove it (docker plugin rm -f $ref) or pass --force"
        exit 1
    fi
    docker plugin rm -f "$ref" >/dev/null
fi

work=$(mktemp -d /var/tmp/docker-ovs-plugin-managed.XXXXXX)
container=
cleanup() {
    [ -n "$container" ] && docker rm -f "$container" >/dev/null 2>&1
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

mkdir -p "$work/rootfs"
container=$(docker create "$image" true)
docker export "$container" | tar -x -C "$work/rootfs"
mkdir -p "$work/rootfs/run/docker/plugins"  # where Docker mounts the plugin's socket directory

# config.json with DRIVER_NAME defaulting to the reference the plugin is created under.
python3 - "$here/config.json" "$ref" >"$work/config.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
for env in config["env"]:
    if env["name"] == "DRIVER_NAME":
        env["value"] = sys.argv[2]
json.dump(config, sys.stdout, indent=2)
PY

log "creating plugin $ref from image $image"
docker plugin create "$ref" "$work" >/dev/null
log "created $ref (disabled): docker plugin enable $ref"
echo "$ref"
