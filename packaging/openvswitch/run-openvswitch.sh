#!/bin/sh
# Start ovsdb-server (in the background) and ovs-vswitchd (in the foreground, so the container
# lives and dies with it). The database lives in /etc/openvswitch (keep it on a volume: bridges
# come back after a restart), sockets in /var/run/openvswitch (shared with the plugin).
set -eu
rundir=/var/run/openvswitch
db=/etc/openvswitch/conf.db
schema=/usr/share/openvswitch/vswitch.ovsschema
mkdir -p "$rundir" /etc/openvswitch /var/log/openvswitch

if [ ! -e "$db" ]; then
    ovsdb-tool create "$db" "$schema"
elif [ "$(ovsdb-tool needs-conversion "$db" "$schema")" = yes ]; then
    ovsdb-tool convert "$db" "$schema"
fi
rm -f "$rundir"/ovsdb-server.pid "$rundir"/ovs-vswitchd.pid  # left by a killed container

ovsdb-server "$db" \
    --remote="punix:$rundir/db.sock" \
    --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
    --pidfile="$rundir/ovsdb-server.pid" --unixctl="$rundir/ovsdb-server.ctl" \
    --log-file=/var/log/openvswitch/ovsdb-server.log --detach
ovs-vsctl --no-wait init

stop() {
    ovs-appctl -t "$rundir/ovs-vswitchd.ctl" exit 2>/dev/null || true
    ovs-appctl -t "$rundir/ovsdb-server.ctl" exit 2>/dev/null || true
}
trap 'stop; exit 0' TERM INT
ovs-vswitchd "unix:$rundir/db.sock" \
    --pidfile="$rundir/ovs-vswitchd.pid" --unixctl="$rundir/ovs-vswitchd.ctl" \
    --log-file=/var/log/openvswitch/ovs-vswitchd.log -vconsole:info &
wait $!
stop
