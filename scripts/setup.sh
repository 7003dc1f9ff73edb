#!/usr/bin/env bash
# Install what is missing on a Debian 12 host (as root), create the virtualenv, and make sure
# Open vSwitch and Docker are running. Safe to run again: it only does what is not done yet.
# Arguments: more Debian packages a caller needs (scripts/bench.sh: iperf3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
packages=(openvswitch-switch python3-openvswitch docker.io busybox-static iptables iproute2 tcpdump
    python3-venv python3-pip
    debootstrap docker-compose  # these two: packaging tests (local base image, compose)
    ethtool  # multi-host harness: TX checksum offload off where a kernel sends into netdev OVS
    "$@")
# python3-openvswitch: its C JSON parser (ovs/_json*.so), which the plugin loads for OVSDB
# because PyPI's `ovs` wheel has none; without it the plugin works, only starts slower.
# The multi-host harness (testbed/multihost.py) runs OVN's daemons itself, in namespaces; the
# packages' own services must never start on the host.
ovn_packages=(ovn-central ovn-host)
# docker-registry: a registry on loopback for the managed plugin's push/install test; its
# service must not start either (the test runs its own, on a port of its own).
quiet_packages=(docker-registry)

log() { printf '[setup] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run me as root: the plugin creates bridges, veths and iptables rules"
    exit 1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Never replace what the user runs. Debian's docker.io conflicts with Docker CE (installing it
# would remove docker-ce and containerd.io), and Debian's openvswitch-switch would start a
# second ovsdb-server over an Open vSwitch built from source or run in a container.
foreign_docker() {
    local p
    installed docker.io && return 1
    for p in docker-ce docker-ce-cli moby-engine containerd.io; do
        installed "$p" && { echo "package $p is installed"; return 0; }
    done
    [ -S /var/run/docker.sock ] && { echo "a Docker socket is at /var/run/docker.sock"; return 0; }
    command -v dockerd >/dev/null && { echo "dockerd is at $(command -v dockerd)"; return 0; }
    return 1
}
foreign_ovs() {
    installed openvswitch-switch && return 1
    [ -S /var/run/openvswitch/db.sock ] \
        && { echo "an OVSDB socket is at /var/run/openvswitch/db.sock"; return 0; }
    command -v ovs-vswitchd >/dev/null \
        && { echo "ovs-vswitchd is at $(command -v ovs-vswitchd)"; return 0; }
    return 1
}
without() {  # the packages array without $1
    local p keep=()
    for p in "${packages[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    packages=("${keep[@]}")
}
if why=$(foreign_docker); then
    log "using the Docker already on this host ($why): not installing docker.io"
    without docker.io
fi
foreign_ovs_why=
if why=$(foreign_ovs); then
    foreign_ovs_why=$why
    log "using the Open vSwitch already on this host ($why): not installing openvswitch-switch" \
        "nor OVN's packages (they need it; the multi-host tests cannot run here)"
    without openvswitch-switch
    ovn_packages=()
    # Its tools (ovs-vsctl, ovs-ofctl) without daemons, when it brought none (in a container).
    command -v ovs-ofctl >/dev/null || packages+=(openvswitch-common)
fi

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
missing_ovn=()
for p in "${ovn_packages[@]}" "${quiet_packages[@]}"; do
    installed "$p" || missing_ovn+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${#missing_ovn[@]}" -gt 0 ]; then
    apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${#missing_ovn[@]}" -gt 0 ]; then
    # A policy-rc.d that exits 101 keeps invoke-rc.d (and deb-systemd-invoke) from starting the
    # packages' services. One already there (Docker base images ship one) is left as it is;
    # only ours is removed again, also when the install fails.
    policy=/usr/sbin/policy-rc.d
    ours_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# added by docker-ovs-plugin scripts/setup.sh during an install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        ours_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    log "installing ${missing_ovn[*]} (services kept from starting)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_ovn[@]}" >/dev/null
    if [ "$ours_policy" = 1 ]; then
        rm -f "$policy"
        trap - EXIT
    fi
fi

# Debian's own Python (3.11 on Debian 12), whatever else is first on PATH.
if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    /usr/bin/python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    log "installing the plugin and its test tools into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$repo[test]"
    rm -f "$venv"/.installed-* && touch "$stamp"
fi

systemd_running() { [ -d /run/systemd/system ]; }

# Open vSwitch: ovsdb-server and ovs-vswitchd. ovs-ctl works with and without systemd and
# falls back to the userspace datapath's needs when the kernel has no openvswitch module.
if ! ovs-vsctl --timeout=3 show >/dev/null 2>&1 \
    || ! ovs-appctl -t ovs-vswitchd version >/dev/null 2>&1; then
    if [ -n "${foreign_ovs_why:-}" ]; then
        log "the Open vSwitch of this host ($foreign_ovs_why) does not answer: start it first"
        exit 1
    fi
    log "starting Open vSwitch"
    if systemd_running; then
        systemctl start openvswitch-switch
    else
        /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null
    fi
fi
ovs-vsctl --timeout=10 wait-until Open_vSwitch . >/dev/null

# Docker.
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    if systemd_running; then
        systemctl start docker
    else
        setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
    fi
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/dockerd.log"; exit 1; }
fi
log "ready: Open vSwitch $(ovs-vsctl --version | head -1 | awk '{print $NF}'), Docker $(docker version -f '{{.Server.Version}}')"
