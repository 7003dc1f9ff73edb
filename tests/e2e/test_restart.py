"""Stopping and restarting the plugin must not disturb running containers."""

from __future__ import annotations

import signal
import stat

import pytest

from testbed import (
    Container,
    DockerEnv,
    HostSnapshot,
    Network,
    PluginProcess,
    plugin_call,
    wait_until,
)

from .support import (
    assert_snapshot_restored,
    link_exists,
    ovs_bridge_exists,
    ovs_port_to_bridge,
    ovs_ports,
    take_snapshot,
)

pytestmark = pytest.mark.e2e


def test_socket_mode_and_activate(plugin: PluginProcess) -> None:
    mode = stat.S_IMODE(plugin.socket_path.stat().st_mode)
    assert mode == 0o600, f"{plugin.socket_path} has mode {oct(mode)}"
    status, body = plugin_call(plugin.socket_path, "Plugin.Activate")
    assert status == 200
    # Both, with or without --ovn-nb: dockerd asks a v1 plugin only once, so a plugin restarted
    # with --ovn-nb later must already have said it is an IPAM driver too.
    assert body == {"Implements": ["NetworkDriver", "IpamDriver"]}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_removes_socket(plugin: PluginProcess, sig: signal.Signals) -> None:
    plugin.stop(sig)
    assert not plugin.socket_path.exists(), f"{plugin.socket_path} left after {sig.name}"
    plugin.start()
    assert plugin.answers_activate()


def _network_rules(net: Network) -> list[str]:
    """The iptables rules (filter, nat and raw) that concern ``net``."""
    snap = take_snapshot()
    return sorted(
        line
        for line in (*snap.iptables_filter, *snap.iptables_nat, *snap.iptables_raw)
        if net.bridge in line or net.subnet in line
    )


def _restart_cycle(
    dk: DockerEnv,
    plugin: PluginProcess,
    net: Network,
    old: list[Container],
    *,
    sig: signal.Signals,
    port: int,
) -> list[Container]:
    """Stop the plugin with ``sig``, check the data path, restart, join, remove one."""
    x, y = old[-2], old[-1]
    rules_before = _network_rules(net)
    assert rules_before, f"no iptables rules mention {net.bridge} or {net.subnet}"

    plugin.stop(sig)
    assert not plugin.running
    if sig == signal.SIGTERM:
        assert not plugin.socket_path.exists(), f"{plugin.socket_path} left after SIGTERM"

    # While the plugin is down, the OVS wiring and NAT rules stay and traffic keeps flowing.
    assert _network_rules(net) == rules_before, f"iptables rules changed by {sig.name}"
    assert ovs_bridge_exists(net.bridge)
    for c in old:
        assert ovs_port_to_bridge(c.host_veth) == net.bridge, f"{c.host_veth} gone ({sig.name})"
    dk.assert_ping(x, y.ip)
    dk.assert_ping(y, x.ip)
    dk.assert_ping(x, net.gateway)

    plugin.start()

    # A new container joins the existing network and reaches the old ones over TCP.
    new = dk.run_container(net)
    assert ovs_port_to_bridge(new.host_veth) == net.bridge
    dk.tcp_send(server=x, client=new, target=x.ip, port=port)
    dk.tcp_send(server=y, client=new, target=y.name, port=port + 1)
    dk.tcp_send(server=new, client=y, target=new.ip, port=port + 2)

    # An old container (created before the restart) is removed cleanly.
    dk.remove_container(x)
    wait_until(
        lambda: not link_exists(x.host_veth) and x.host_veth not in ovs_ports(net.bridge),
        timeout=5,
        what=f"{x.host_veth} of removed {x.name} to disappear ({sig.name})",
    )
    dk.assert_ping(new, y.ip)
    return [*old[:-2], y, new]


def test_restart_keeps_containers_connected(
    dk: DockerEnv, plugin: PluginProcess, snapshot_before: HostSnapshot
) -> None:
    net = dk.create_network(subnet="10.231.6.0/24", gateway="10.231.6.1")
    containers = [dk.run_container(net), dk.run_container(net)]
    dk.assert_ping(containers[0], containers[1].ip)

    containers = _restart_cycle(dk, plugin, net, containers, sig=signal.SIGTERM, port=7100)
    containers = _restart_cycle(dk, plugin, net, containers, sig=signal.SIGKILL, port=7200)

    dk.remove_all()
    assert not ovs_bridge_exists(net.bridge)
    assert_snapshot_restored(snapshot_before)
