"""Container traffic through the plugin: same network, gateway, outside, isolation."""

from __future__ import annotations

import ipaddress

import pytest

from testbed import DockerEnv, HostSnapshot, OutsideHost, wait_until

from .support import (
    OWNER,
    assert_snapshot_restored,
    link_exists,
    ovs_bridge_exists,
    ovs_external_ids,
    ovs_port_to_bridge,
    ovs_ports,
    run,
)

pytestmark = pytest.mark.e2e


def test_endpoint_wiring(dk: DockerEnv, snapshot_before: HostSnapshot) -> None:
    net = dk.create_network(subnet="10.231.1.0/24", gateway="10.231.1.1")
    c = dk.run_container(net)
    assert ipaddress.ip_address(c.ip) in ipaddress.ip_network(net.subnet)

    # Host end: an OVS port on the network's bridge, tagged with the endpoint.
    assert link_exists(c.host_veth), f"host veth {c.host_veth} missing"
    assert not link_exists(c.container_veth), f"{c.container_veth} was not moved into {c.name}"
    assert ovs_port_to_bridge(c.host_veth) == net.bridge
    ids = ovs_external_ids("Interface", c.host_veth)
    assert ids.get("owner") == OWNER, ids
    assert ids.get("iface-id") == c.endpoint_id, ids
    assert ids.get("docker-ovs:network-id") == net.id, ids
    assert "attached-mac" in ids, ids

    # Container end: eth0 with docker's address, MAC and the gateway as default route.
    mac = dk.exec(c, "cat", "/sys/class/net/eth0/address").stdout.strip().lower()
    assert ids["attached-mac"].lower() == mac
    if c.mac:
        assert mac == c.mac, f"eth0 MAC {mac} differs from docker's {c.mac}"
    addr = dk.exec(c, "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    assert f"{c.ip}/{net.prefixlen}" in addr, addr
    routes = dk.exec(c, "ip", "-4", "route").stdout
    assert f"default via {net.gateway}" in routes, routes

    dk.remove_container(c)
    wait_until(
        lambda: not link_exists(c.host_veth) and c.host_veth not in ovs_ports(net.bridge),
        timeout=5,
        what=f"{c.host_veth} to leave {net.bridge}",
    )
    dk.remove_network(net)
    assert not ovs_bridge_exists(net.bridge)
    assert_snapshot_restored(snapshot_before)


def test_same_network_icmp_dns_tcp_gateway(dk: DockerEnv, snapshot_before: HostSnapshot) -> None:
    net = dk.create_network(subnet="10.231.2.0/24", gateway="10.231.2.1")
    c1 = dk.run_container(net)
    c2 = dk.run_container(net)

    dk.assert_ping(c1, c2.ip)
    dk.assert_ping(c2, c1.ip)
    # Docker's embedded DNS resolves container names on user-defined networks.
    dk.assert_ping(c1, c2.name)
    dk.assert_ping(c2, c1.name)
    dk.tcp_send(server=c2, client=c1, target=c2.ip, port=7001)
    dk.tcp_send(server=c1, client=c2, target=c1.name, port=7002)
    dk.assert_ping(c1, net.gateway)
    dk.assert_ping(c2, net.gateway)

    dk.remove_all()
    assert_snapshot_restored(snapshot_before)


def test_outside_reached_through_masquerade(
    dk: DockerEnv, outside_host: OutsideHost, snapshot_before: HostSnapshot
) -> None:
    # The outside namespace knows only its own /24: replies can only come back to a
    # container if the plugin masqueraded the container's address to the host's.
    routes = outside_host.routes()
    assert routes and all(r.startswith("198.51.100.0/24 ") for r in routes), routes

    net = dk.create_network(subnet="10.231.3.0/24", gateway="10.231.3.1")
    c = dk.run_container(net)

    dk.assert_ping(c, outside_host.ip)

    payload = f"from-{c.name}"
    reply = dk.exec(
        c,
        "sh",
        "-c",
        f"echo {payload} | nc -w 3 {outside_host.ip} {outside_host.tcp_port}",
        check=False,
        timeout=20,
    )
    assert reply.returncode == 0, f"TCP to the outside failed: {reply.stdout}{reply.stderr}"
    assert f"OUTSIDE {payload}" in reply.stdout, reply.stdout
    peers = [peer for peer, line in outside_host.connections() if line == payload]
    assert peers == [outside_host.host_ip], (
        f"outside host saw the connection from {peers}, expected the masqueraded "
        f"{outside_host.host_ip}"
    )

    dk.remove_all()
    assert_snapshot_restored(snapshot_before)


def test_networks_are_isolated(
    dk: DockerEnv, outside_host: OutsideHost, snapshot_before: HostSnapshot
) -> None:
    net_a = dk.create_network(subnet="10.231.4.0/24", gateway="10.231.4.1")
    net_b = dk.create_network(subnet="10.231.5.0/24", gateway="10.231.5.1")
    a = dk.run_container(net_a)
    b = dk.run_container(net_b)
    # Controls: both containers work, and the host forwards their traffic (to the
    # outside namespace), so a failed ping below is isolation, not a broken data path.
    for c, net in ((a, net_a), (b, net_b)):
        dk.assert_ping(c, net.gateway)
        dk.assert_ping(c, outside_host.ip)
    # Containers on different plugin networks cannot reach each other.
    dk.assert_no_ping(a, b.ip)
    dk.assert_no_ping(b, a.ip)

    dk.remove_all()
    assert_snapshot_restored(snapshot_before)


def _forward_jumps() -> list[str]:
    lines = run(["iptables", "-w", "5", "-S", "FORWARD"]).stdout.splitlines()
    return [line for line in lines if line.startswith("-A FORWARD -j ")]


def test_docker_user_rules_apply_to_ovs_networks(
    dk: DockerEnv, outside_host: OutsideHost, snapshot_before: HostSnapshot
) -> None:
    """An administrator's DROP in DOCKER-USER stops ovs networks' traffic as it stops Docker's,
    also after our jump was lost (a firewall reload) and the reconciler put it back."""
    net = dk.create_network(subnet="10.231.6.0/24", gateway="10.231.6.1")
    c = dk.run_container(net)
    dk.assert_ping(c, outside_host.ip)
    drop = ["-s", net.subnet, "-d", outside_host.ip, "-j", "DROP"]
    drop += ["-m", "comment", "--comment", "ovse2e-docker-user"]
    run(["iptables", "-w", "5", "-I", "DOCKER-USER", "1", *drop])
    ours = "-A FORWARD -j OVS-PLUGIN-FORWARD"
    try:
        dk.assert_no_ping(c, outside_host.ip)
        run(["iptables", "-w", "5", "-D", "FORWARD", "-j", "OVS-PLUGIN-FORWARD"])
        wait_until(lambda: ours in _forward_jumps(), timeout=30, what="the jump to come back")
        jumps = _forward_jumps()
        assert jumps.index("-A FORWARD -j DOCKER-USER") < jumps.index(ours), jumps
        dk.assert_no_ping(c, outside_host.ip)
    finally:
        run(["iptables", "-w", "5", "-D", "DOCKER-USER", *drop], check=False)
    dk.assert_ping(c, outside_host.ip)  # the control: it was the administrator's rule

    dk.remove_all()
    assert_snapshot_restored(snapshot_before)
