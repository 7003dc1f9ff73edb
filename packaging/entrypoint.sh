#!/bin/sh
# Entrypoint of the plugin image: as a plain container, a compose service and a managed plugin.
#  1. Make iptables the backend (nf_tables or legacy) that holds the host's rules, so the
#     plugin's rules land beside Docker's (IPTABLES_BACKEND=auto|nft|legacy).
#  1b. Share the host's xtables lock, so that iptables-legacy writes of the plugin and of
#     dockerd never interleave: with the host's /run mounted (not recursively: submounts
#     would pin the network namespaces under /run) at /run/host, iptables locks
#     /run/host/xtables.lock, which is the host's /run/xtables.lock (the nft backend takes no
#     lock). The file may not exist yet (nothing ran iptables-legacy since boot): iptables
#     creates it there, so the plugin needs the directory, not the file.
#  2. Make /proc/sys writable (Docker mounts it read-only; with the host's network namespace
#     the plugin writes the host's per-port sysctls). Needs CAP_SYS_ADMIN.
#  3. With no arguments (or only options), serve with settings from the environment:
#     DRIVER_NAME SOCKET OVSDB OVS_RUNDIR DATAPATH_TYPE LOG_LEVEL LOG_FORMAT METRICS_ADDRESS
#     DOCKER_URL RECONCILE_INTERVAL, and for overlay networks OVN_NB OVN_NB_PRIVATE_KEY
#     OVN_NB_CERTIFICATE OVN_NB_CA_CERT OVN_NB_INSECURE_TCP(=true) OVN_RUNDIR OVN_FENCE_PERIOD.
#     Otherwise run `docker-ovs-plugin ARGS...`.
set -eu

plugin=/opt/docker-ovs-plugin/bin/docker-ovs-plugin

rules() { "$1" 2>/dev/null | grep -c '^-A' || true; }

backend=${IPTABLES_BACKEND:-auto}
if [ "$backend" = auto ]; then
    backend=nft
    if [ "$(rules iptables-legacy-save)" -gt "$(rules iptables-nft-save)" ]; then
        backend=legacy
    fi
fi
case $backend in
    nft | legacy) ;;
    *) echo "IPTABLES_BACKEND must be auto, nft or legacy, not '$backend'" >&2; exit 2 ;;
esac
for tool in iptables ip6tables; do
    if [ "$(readlink -f "/usr/sbin/$tool")" != "/usr/sbin/xtables-$backend-multi" ]; then
        update-alternatives --quiet --set "$tool" "/usr/sbin/$tool-$backend" ||
            echo "warning: cannot switch $tool to $backend" >&2
    fi
done

if [ -d /run/host ]; then
    export XTABLES_LOCKFILE=/run/host/xtables.lock
elif [ "$backend" = legacy ]; then
    echo "warning: the host's /run is not mounted at /run/host: iptables cannot take the" \
        "host's xtables lock, and its writes may race dockerd's" >&2
fi

if [ ! -w /proc/sys/net/ipv4/ip_forward ]; then
    mount -o remount,rw,bind /proc/sys ||
        echo "warning: /proc/sys is read-only (give the container CAP_SYS_ADMIN)" >&2
fi

case ${1:-} in
    "" | -*)
        opts=
        [ -n "${SOCKET:-}" ] && opts="$opts --socket $SOCKET"
        [ -n "${OVSDB:-}" ] && opts="$opts --ovsdb $OVSDB"
        [ -n "${OVS_RUNDIR:-}" ] && opts="$opts --ovs-rundir $OVS_RUNDIR"
        [ -n "${DATAPATH_TYPE:-}" ] && opts="$opts --datapath-type $DATAPATH_TYPE"
        [ -n "${LOG_LEVEL:-}" ] && opts="$opts --log-level $LOG_LEVEL"
        [ -n "${LOG_FORMAT:-}" ] && opts="$opts --log-format $LOG_FORMAT"
        [ -n "${METRICS_ADDRESS:-}" ] && opts="$opts --metrics-address $METRICS_ADDRESS"
        [ -n "${RECONCILE_INTERVAL:-}" ] && opts="$opts --reconcile-interval $RECONCILE_INTERVAL"
        [ -n "${OVN_NB:-}" ] && opts="$opts --ovn-nb $OVN_NB"
        [ -n "${OVN_NB_PRIVATE_KEY:-}" ] && opts="$opts --ovn-nb-private-key $OVN_NB_PRIVATE_KEY"
        [ -n "${OVN_NB_CERTIFICATE:-}" ] && opts="$opts --ovn-nb-certificate $OVN_NB_CERTIFICATE"
        [ -n "${OVN_NB_CA_CERT:-}" ] && opts="$opts --ovn-nb-ca-cert $OVN_NB_CA_CERT"
        [ "${OVN_NB_INSECURE_TCP:-}" = true ] && opts="$opts --ovn-nb-insecure-tcp"
        [ -n "${OVN_RUNDIR:-}" ] && opts="$opts --ovn-rundir $OVN_RUNDIR"
        [ -n "${OVN_FENCE_PERIOD:-}" ] && opts="$opts --ovn-fence-period $OVN_FENCE_PERIOD"
        # Settings are single words (paths, addresses, names): split on spaces on purpose.
        # shellcheck disable=SC2086
        set -- serve --name "${DRIVER_NAME:-ovs}" $opts ${DOCKER_URL+--docker-url "$DOCKER_URL"} "$@"
        ;;
esac
exec "$plugin" "$@"
