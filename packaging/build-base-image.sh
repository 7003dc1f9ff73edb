#!/usr/bin/env bash
# Build the local base image for the plugin image from Debian's packages alone: debootstrap a
# minimal Debian rootfs from the apt mirror this host already uses, then `docker import` it.
# No container registry is involved. The image is cached by tag: it is rebuilt only when it is
# missing or was built from another package list (or with --force).
#
#   packaging/build-base-image.sh [--force]      # prints the tag it built or found
#
# Settings (environment):
#   BASE_IMAGE      tag to build                    (default docker-ovs-plugin-base:bookworm)
#   DEBIAN_SUITE    Debian suite                    (default bookworm)
#   DEBIAN_MIRROR   mirror URL                      (default: the first Debian archive in
#                   /etc/apt/sources.list*, else http://deb.debian.org/debian)
#   EXTRA_PACKAGES  more Debian packages, comma-separated (the e2e tests add systemd to a
#                   separate tag to run the systemd unit under a real systemd)
set -euo pipefail

tag=${BASE_IMAGE:-docker-ovs-plugin-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
force=0
[ "${1:-}" = "--force" ] && force=1

# What the plugin needs (python3, iptables, ip, ovs-ofctl), and openvswitch-switch so the same
# base also runs Open vSwitch itself for docker-compose.yml.
packages=python3,python3-venv,iptables,iproute2,openvswitch-common,openvswitch-switch,ca-certificates
packages=$packages${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}
stamp="$suite:$packages"

log() { printf '[base-image] %s\n' "$*" >&2; }

if [ "$force" -eq 0 ] \
    && [ "$(docker image inspect -f '{{ index .Config.Labels "org.docker-ovs-plugin.base" }}' "$tag" 2>/dev/null)" = "$stamp" ]; then
    log "$tag is up to date (cached)"
    echo "$tag"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "debootstrap needs root"
    exit 1
fi
command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }

# The mirror this host's apt already uses: deb822 "URIs:" or one-line "deb URL SUITE" entries.
host_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        case "$f" in
            *.sources)
                awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f" ;;
            *)
                awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i !~ /^\[/) {print $i; break}}' "$f" ;;
        esac
    done | grep -E '/debian/?$' | grep -v -- '-security' | head -n1
}
mirror=${DEBIAN_MIRROR:-$(host_mirror || true)}
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d /var/tmp/docker-ovs-plugin-base.XXXXXX)
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT

log "debootstrap $suite from $mirror (minbase + $packages)"
started=$(date +%s)
debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    log "debootstrap failed; last lines of its log:"
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}

# Keep the image small and free of host-specific state.
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/locale/* \
    "$work"/rootfs/etc/openvswitch/conf.db "$work"/rootfs/etc/openvswitch/system-id.conf
printf 'deb %s %s main\n' "$mirror" "$suite" >"$work/rootfs/etc/apt/sources.list"

log "importing the rootfs as $tag"
tar -C "$work/rootfs" --numeric-owner -c . | docker import \
    --change "LABEL org.docker-ovs-plugin.base=$stamp" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$tag" >/dev/null
log "built $tag in $(( $(date +%s) - started ))s"
echo "$tag"
