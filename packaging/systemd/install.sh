#!/usr/bin/env bash
# Install the plugin on this host as a systemd service:
#   /opt/docker-ovs-plugin           virtualenv with the plugin (from a wheelhouse: no network)
#   /etc/systemd/system/docker-ovs-plugin.service, /etc/default/docker-ovs-plugin (kept if present)
# then, when systemd runs, enable and start it (before dockerd from then on).
#
#   packaging/systemd/install.sh [WHEELHOUSE]      (default: build one with build-wheelhouse.sh)
#
# Settings (environment): PREFIX (/opt/docker-ovs-plugin), SYSTEMD_DIR (/etc/systemd/system),
# DEFAULTS_FILE (/etc/default/docker-ovs-plugin), NO_START=1 (install only).
# Needs python3 with venv (Debian: python3-venv), iptables, iproute2, openvswitch-common.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix=${PREFIX:-/opt/docker-ovs-plugin}
unit_dir=${SYSTEMD_DIR:-/etc/systemd/system}
defaults=${DEFAULTS_FILE:-/etc/default/docker-ovs-plugin}
log() { printf '[install] %s\n' "$*" >&2; }

wheels=${1:-}
if [ -z "$wheels" ]; then
    wheels=$(mktemp -d)
    trap 'rm -rf "$wheels"' EXIT
    "$here/../build-wheelhouse.sh" "$wheels"
fi

log "installing into $prefix"
[ -x "$prefix/bin/python" ] || python3 -m venv "$prefix"
"$prefix/bin/pip" install --disable-pip-version-check -q --no-index --find-links "$wheels" \
    --upgrade --force-reinstall --no-deps "$wheels"/docker_ovs_plugin-*.whl
"$prefix/bin/pip" install --disable-pip-version-check -q --no-index --find-links "$wheels" \
    docker-ovs-plugin
[ -f "$here/../../README.md" ] && install -m 0644 "$here/../../README.md" "$prefix/README.md"

install -D -m 0644 "$here/docker-ovs-plugin.service" "$unit_dir/docker-ovs-plugin.service"
if [ ! -e "$defaults" ]; then
    install -D -m 0644 "$here/docker-ovs-plugin.default" "$defaults"
fi
log "installed $unit_dir/docker-ovs-plugin.service (settings: $defaults)"

if [ "${NO_START:-0}" = 1 ]; then
    exit 0
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now docker-ovs-plugin.service
    log "enabled and started docker-ovs-plugin.service"
else
    log "systemd is not running here: start $prefix/bin/docker-ovs-plugin serve yourself"
fi
