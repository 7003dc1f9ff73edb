from __future__ import annotations

import ipaddress
from dataclasses import replace

from docker_ovs_plugin.adapters.iptables import network_rules
from docker_ovs_plugin.contract import CHAIN_FORWARD as FORWARD
from docker_ovs_plugin.contract import CHAIN_ISOLATION_1 as ISOLATION_1
from docker_ovs_plugin.contract import CHAIN_ISOLATION_2 as ISOLATION_2
from docker_ovs_plugin.contract import CHAIN_POSTROUTING as POSTROUTING
from docker_ovs_plugin.contract import CHAIN_RAW_PREROUTING as RAW_PREROUTING
from docker_ovs_plugin.contract import network_comment
from docker_ovs_plugin.service.model import Mode, Network, Subnet

NID = "ab" * 32


def test_every_rule_is_tagged_with_the_network() -> None:
    net = Network(NID, "ovsbr-abababab", 1500, ipv4=(Subnet(ipaddress.ip_network("10.9.0.0/24")),))
    rules = network_rules(net, 4)
    assert {(t, c) for t, c, _ in rules} == {
        ("filter", ISOLATION_1),
        ("filter", ISOLATION_2),
        ("filter", FORWARD),
        ("nat", POSTROUTING),
        ("raw", RAW_PREROUTING),
    }
    for _, _, rule in rules:
        assert rule[-4:] == ("-m", "comment", "--comment", network_comment(NID))


def test_masquerade_of_the_pools_not_inside_the_bridge() -> None:
    net = Network(
        NID,
        "br0",
        1500,
        ipv4=(Subnet(ipaddress.ip_network("10.9.0.0/24")),),
        ipv6=(Subnet(ipaddress.ip_network("fd00::/64")),),
    )
    nat = [r for t, _, r in network_rules(net, 4) if t == "nat"]
    tag = ("-m", "comment", "--comment", network_comment(NID))
    # IPv6 subnets are masqueraded too, as by Docker's bridge since 27; routed mode: none.
    nat6 = [r for t, _, r in network_rules(net, 6) if t == "nat"]
    assert nat6 == [("-s", "fd00::/64", "!", "-o", "br0", "-j", "MASQUERADE", *tag)]
    routed = replace(net, mode=Mode.ROUTED, masquerade=False)
    assert [r for t, _, r in network_rules(routed, 6) if t == "nat"] == []
    assert nat == [
        # Published ports reached from the host's loopback leave with the gateway's address.
        ("-s", "127.0.0.0/8", "-o", "br0", "-j", "MASQUERADE", *tag),
        (
            "-s",
            "10.9.0.0/24",
            "!",
            "-o",
            "br0",
            "-j",
            "MASQUERADE",
            "-m",
            "comment",
            "--comment",
            network_comment(NID),
        ),
    ]


def test_packets_for_loopback_from_the_containers_are_dropped_before_routing() -> None:
    """The gateway port gets route_localnet (for localhost:PORT); without this rule a
    container could reach the host's loopback services through its gateway."""
    net = Network(NID, "br0", 1500, ipv4=(Subnet(ipaddress.ip_network("10.9.0.0/24")),))
    tag = ("-m", "comment", "--comment", network_comment(NID))
    raw = [(c, r) for t, c, r in network_rules(net, 4) if t == "raw"]
    assert raw == [
        (
            RAW_PREROUTING,
            ("-i", "br0", "-d", "127.0.0.0/8", "-j", "DROP", *tag),
        )
    ]
    assert [r for t, _, r in network_rules(net, 6) if t == "raw"] == []
