"""Firewall: IptablesFirewall inside a private network namespace against FakeFirewall.

iptables runs as a child of the namespace's thread, so it reads and writes that namespace's
tables only; the host's rules (Docker's among them) are never seen or changed.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
from pathlib import Path
from typing import Protocol

import pytest

from docker_ovs_plugin.adapters.iptables import IptablesFirewall
from docker_ovs_plugin.contract import endpoint_comment
from docker_ovs_plugin.service.model import Endpoint, Network, PortMapping, Subnet
from docker_ovs_plugin.service.ports import Firewall
from unit.fakes import FakeFirewall

from .conftest import IMPLEMENTATIONS
from .netns import PrivateNetns

NET, NET2 = "a1" * 32, "b2" * 32
EP = "d4" * 32
WEB = PortMapping("tcp", 80, 8080)


class FirewallWorld(Protocol):
    firewall: Firewall

    def published(self, network: Network, endpoint: Endpoint) -> bool:
        """Whether any published-port rule of the endpoint is in place."""


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeFirewall()
        self.firewall: Firewall = self.fake

    def published(self, network: Network, endpoint: Endpoint) -> bool:
        return endpoint.endpoint_id in self.fake.published


class InNetns:
    """IptablesFirewall whose every call runs inside the namespace."""

    def __init__(self, ns: PrivateNetns) -> None:
        self._ns, self._fw = ns, IptablesFirewall()

    def add_network(self, network: Network) -> None:
        self._ns.run(lambda: self._fw.add_network(network))

    def remove_network(self, network: Network) -> None:
        self._ns.run(lambda: self._fw.remove_network(network))

    def set_port_mappings(self, network: Network, endpoint: Endpoint) -> None:
        self._ns.run(lambda: self._fw.set_port_mappings(network, endpoint))

    def has_network(self, network: Network) -> bool:
        return self._ns.run(lambda: self._fw.has_network(network))

    def tagged_networks(self) -> set[str]:
        return self._ns.run(self._fw.tagged_networks)

    def remove_tagged(self, short_id: str) -> None:
        self._ns.run(lambda: self._fw.remove_tagged(short_id))


class RealWorld:
    def __init__(self, ns: PrivateNetns) -> None:
        self.ns = ns
        self.firewall: Firewall = InNetns(ns)

    def published(self, network: Network, endpoint: Endpoint) -> bool:
        def listing() -> str:
            argv = ["iptables", "-w", "5", "-t", "nat", "-S"]
            return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

        return endpoint_comment(network.network_id, endpoint.endpoint_id) in self.ns.run(listing)


@pytest.fixture(params=IMPLEMENTATIONS)
def world(request: pytest.FixtureRequest) -> FirewallWorld:
    if request.param == "fake":
        return FakeWorld()
    return RealWorld(request.getfixturevalue("netns"))


def network(network_id: str = NET) -> Network:
    subnet = Subnet(ipaddress.ip_network("10.7.0.0/24"), ipaddress.ip_interface("10.7.0.1/24"))
    return Network(network_id, "ovsbr-" + network_id[:8], 1500, ipv4=(subnet,))


def endpoint(*mappings: PortMapping) -> Endpoint:
    return Endpoint(
        EP,
        NET,
        "02:42:0a:07:00:02",
        ipv4=ipaddress.IPv4Interface("10.7.0.2/24"),
        port_mappings=mappings,
    )


def test_a_network_rules_come_and_go(world: FirewallWorld) -> None:
    fw, net = world.firewall, network()
    assert not fw.has_network(net)
    fw.add_network(net)
    fw.add_network(net)  # idempotent
    assert fw.has_network(net)
    assert fw.tagged_networks() == {NET[:12]}
    fw.remove_network(net)
    assert not fw.has_network(net)
    assert fw.tagged_networks() == set()
    fw.remove_network(net)  # idempotent


def test_networks_are_independent(world: FirewallWorld) -> None:
    fw, first, second = world.firewall, network(), network(NET2)
    fw.add_network(first)
    fw.add_network(second)
    fw.remove_network(first)
    assert (fw.has_network(first), fw.has_network(second)) == (False, True)
    assert fw.tagged_networks() == {NET2[:12]}


def test_published_ports_are_exactly_the_mappings(world: FirewallWorld) -> None:
    fw, net = world.firewall, network()
    fw.add_network(net)
    fw.set_port_mappings(net, endpoint(WEB))
    assert world.published(net, endpoint(WEB))
    fw.set_port_mappings(net, endpoint())
    assert not world.published(net, endpoint())
    assert fw.has_network(net)


def test_removing_a_network_removes_its_published_ports(world: FirewallWorld) -> None:
    fw, net = world.firewall, network()
    fw.add_network(net)
    fw.set_port_mappings(net, endpoint(WEB))
    fw.remove_network(net)
    assert not world.published(net, endpoint(WEB))
    assert fw.tagged_networks() == set()


def test_rules_of_an_unknown_network_are_removed_by_tag(world: FirewallWorld) -> None:
    fw, net = world.firewall, network()
    fw.add_network(net)
    fw.set_port_mappings(net, endpoint(WEB))
    fw.remove_tagged(NET[:12])
    assert not fw.has_network(net)
    assert not world.published(net, endpoint(WEB))
    assert fw.tagged_networks() == set()


# -- the host's own firewall (real iptables only) --------------------------------------------


def _iptables(*args: str) -> str:
    argv = ["iptables", "-w", "5", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _forward_jumps(ns: PrivateNetns) -> list[str]:
    lines = ns.run(lambda: _iptables("-S", "FORWARD")).splitlines()
    return [line for line in lines if line.startswith("-A FORWARD -j ")]


def test_our_forward_jump_stays_below_docker_user(netns: PrivateNetns) -> None:
    # An administrator's DOCKER-USER rules must see ovs networks' traffic before we accept it.
    def docker_layout() -> None:
        _iptables("-N", "DOCKER-USER")
        _iptables("-N", "DOCKER-ISOLATION-STAGE-1")
        _iptables("-A", "FORWARD", "-j", "DOCKER-USER")
        _iptables("-A", "FORWARD", "-j", "DOCKER-ISOLATION-STAGE-1")

    netns.run(docker_layout)
    fw = InNetns(netns)
    fw.add_network(network())
    assert _forward_jumps(netns) == [
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -j OVS-PLUGIN-FORWARD",
        "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    ]
    # A jump above DOCKER-USER (an earlier version put it first) is moved below it.
    netns.run(lambda: _iptables("-D", "FORWARD", "-j", "OVS-PLUGIN-FORWARD"))
    netns.run(lambda: _iptables("-I", "FORWARD", "1", "-j", "OVS-PLUGIN-FORWARD"))
    fw.add_network(network(NET2))
    assert _forward_jumps(netns)[:2] == [
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -j OVS-PLUGIN-FORWARD",
    ]
    assert len(_forward_jumps(netns)) == 3


def test_forwarding_turned_on_leaves_no_open_router(netns: PrivateNetns) -> None:
    # A host that forwards nothing, its FORWARD policy ACCEPT: one where Docker did not set
    # the policy to DROP (a new namespace copies the host's ip_forward, hence the write).
    forwarding = Path("/proc/sys/net/ipv4/ip_forward")
    netns.run(lambda: forwarding.write_text("0\n"))
    assert "-P FORWARD ACCEPT" in netns.run(lambda: _iptables("-S", "FORWARD"))
    InNetns(netns).add_network(network())
    assert netns.run(forwarding.read_text).strip() == "1"
    assert "-P FORWARD DROP" in netns.run(lambda: _iptables("-S", "FORWARD"))


def test_an_ipv6_subnet_is_masqueraded_in_nat_mode_and_the_rule_goes(netns: PrivateNetns) -> None:
    v4 = Subnet(ipaddress.ip_network("10.7.0.0/24"), ipaddress.ip_interface("10.7.0.1/24"))
    v6 = Subnet(ipaddress.ip_network("fd00:7::/64"), ipaddress.ip_interface("fd00:7::1/64"))
    net = Network(NET, "ovsbr-" + NET[:8], 1500, ipv4=(v4,), ipv6=(v6,))
    fw = InNetns(netns)

    def nat6() -> str:
        argv = ["ip6tables", "-w", "5", "-t", "nat", "-S", "OVS-PLUGIN-POSTROUTING"]
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    fw.add_network(net)
    assert fw.has_network(net)
    assert "-s fd00:7::/64 ! -o ovsbr-a1a1a1a1 -m comment" in netns.run(nat6)
    fw.remove_network(net)
    assert "MASQUERADE" not in netns.run(nat6)


def test_adding_again_changes_nothing_and_a_lost_rule_comes_back(netns: PrivateNetns) -> None:
    # Each request reads the tables once and writes its changes in one iptables-restore: a
    # second CreateNetwork (or a repair) must find everything in place and add no duplicate.
    def rules() -> list[str]:
        out = netns.run(lambda: subprocess.run(["iptables-save"], capture_output=True,
                                               text=True, check=True).stdout)  # fmt: skip
        return sorted(line for line in out.splitlines() if line.startswith("-A "))

    fw = InNetns(netns)
    fw.add_network(network())
    fw.set_port_mappings(network(), endpoint(WEB))
    first = rules()
    fw.add_network(network())
    fw.set_port_mappings(network(), endpoint(WEB))
    assert rules() == first
    lost = next(line for line in first if "OVS-PLUGIN-ISOLATION-2" in line.split()[1])
    netns.run(lambda: _iptables("-D", *shlex.split(lost)[1:]))
    assert not fw.has_network(network())
    fw.add_network(network())
    assert rules() == first
