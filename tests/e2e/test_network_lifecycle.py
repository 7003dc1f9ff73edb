"""Network create/remove against the real dockerd and Open vSwitch."""

from __future__ import annotations

import json

import pytest

from testbed import DockerEnv, HostSnapshot, Network

from .support import (
    DRIVER_NAME,
    OWNER,
    assert_snapshot_restored,
    link_info,
    link_ipv4_cidrs,
    ovs_bridge_exists,
    ovs_external_ids,
    ovs_vsctl,
    take_snapshot,
)

pytestmark = pytest.mark.e2e

SUBNET = "10.231.0.0/24"
GATEWAY = "10.231.0.1"


def assert_plugin_bridge(net: Network) -> None:
    """The network's OVS bridge exists, is tagged, and carries the gateway, up."""
    assert ovs_bridge_exists(net.bridge), f"OVS bridge {net.bridge} missing for {net.name}"
    ids = ovs_external_ids("Bridge", net.bridge)
    assert ids.get("owner") == OWNER, f"bridge {net.bridge} lacks owner={OWNER}: {ids}"
    # The network is recorded on its bridge as JSON under docker-ovs:network:<id> (several VLAN
    # networks may share one bridge).
    record = ids.get(f"docker-ovs:network:{net.id}")
    assert record is not None, (
        f"bridge {net.bridge} lacks docker-ovs:network:{net.id}; "
        f"its external_ids keys are {sorted(ids)}"
    )
    data = json.loads(record)
    assert any(s["pool"] == net.subnet for s in data["ipv4"]), data
    assert data["driver"] == DRIVER_NAME, data
    iface_type = ovs_vsctl("get", "Interface", net.bridge, "type").stdout.strip()
    assert iface_type == "internal", f"bridge port {net.bridge} has type {iface_type}"
    info = link_info(net.bridge)
    assert "UP" in info["flags"], f"internal port {net.bridge} is not up: {info['flags']}"
    cidrs = link_ipv4_cidrs(net.bridge)
    assert f"{net.gateway}/{net.prefixlen}" in cidrs, (
        f"gateway {net.gateway}/{net.prefixlen} not on {net.bridge}: {cidrs}"
    )


def assert_plugin_iptables(before: HostSnapshot, net: Network) -> None:
    """New iptables state: masquerade for the subnet, only in the plugin's own chains."""
    during = take_snapshot()
    added = [
        line
        for line in before.differences(during)
        if line.startswith("iptables") and ": left behind: " in line
    ]
    assert not [d for d in before.differences(during) if "went missing" in d and "iptables" in d]
    rules = [line.split(": left behind: ", 1)[1] for line in added]
    masquerade = [r for r in rules if "MASQUERADE" in r and net.subnet in r]
    assert masquerade, f"no MASQUERADE rule for {net.subnet}; added rules: {rules}"
    for rule in rules:
        parts = rule.split()
        assert parts[0] in {"-N", "-A"}, rule
        assert parts[1].startswith("OVS-PLUGIN"), f"rule outside the plugin's chains: {rule}"
        if parts[0] == "-A":
            assert "docker-ovs-plugin" in rule, f"rule without the plugin's comment: {rule}"


def test_network_with_subnet(dk: DockerEnv, snapshot_before: HostSnapshot) -> None:
    net = dk.create_network(subnet=SUBNET, gateway=GATEWAY)
    assert (net.subnet, net.gateway) == (SUBNET, GATEWAY)
    assert net.bridge == "ovsbr-" + net.id[:8]
    assert_plugin_bridge(net)
    assert_plugin_iptables(snapshot_before, net)

    dk.remove_network(net)
    assert not ovs_bridge_exists(net.bridge)
    assert_snapshot_restored(snapshot_before)


def test_network_without_subnet(dk: DockerEnv, snapshot_before: HostSnapshot) -> None:
    net = dk.create_network()
    assert net.subnet and net.gateway, "docker IPAM gave the network no subnet/gateway"
    assert net.bridge == "ovsbr-" + net.id[:8]
    assert_plugin_bridge(net)
    assert_plugin_iptables(snapshot_before, net)

    dk.remove_network(net)
    assert not ovs_bridge_exists(net.bridge)
    assert_snapshot_restored(snapshot_before)


def test_custom_bridge_name(dk: DockerEnv, snapshot_before: HostSnapshot) -> None:
    net = dk.create_network(options={"ovs.bridge.name": "ovse2e-custom"})
    assert net.bridge == "ovse2e-custom"
    assert_plugin_bridge(net)
    assert not ovs_bridge_exists("ovsbr-" + net.id[:8])

    dk.remove_network(net)
    assert not ovs_bridge_exists(net.bridge)
    assert_snapshot_restored(snapshot_before)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ovs.nosuch", "1"),
        ("ovs.bridge.name", "bad name!"),
        ("ovs.bridge.name", "ovse2e-name-too-long"),
    ],
    ids=["unknown-option", "bridge-name-invalid-chars", "bridge-name-too-long"],
)
def test_invalid_option_fails_cleanly(
    dk: DockerEnv, snapshot_before: HostSnapshot, key: str, value: str
) -> None:
    name, proc = dk.try_create_network(subnet=SUBNET, gateway=GATEWAY, options={key: value})
    assert proc.returncode != 0, f"docker network create -o {key}={value} succeeded"
    message = proc.stderr.strip()
    assert message, "docker network create failed without an error message"
    assert key in message or value in message, (
        f"error message names neither the option nor its value: {message}"
    )
    assert not dk.network_exists(name), f"failed create left docker network {name}"
    assert_snapshot_restored(snapshot_before)
