"""Flows: OpenFlowFlows on bridges of a private ovs-vswitchd against FakeFlows."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from docker_ovs_plugin.adapters.openflow import OpenFlowFlows
from docker_ovs_plugin.adapters.ovsdb import OvsdbSwitch
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import Endpoint, Network
from docker_ovs_plugin.service.ports import Flows, Switch
from testbed.ovs_sandbox import OvsSandbox
from unit.fakes import FakeFlows, FakeSwitch

from .conftest import IMPLEMENTATIONS, OVSDB_TIMEOUT

NET, NET2 = "a1" * 32, "b2" * 32
EP, EP2, EP3 = "d4" * 32, "e5" * 32, "f6" * 32


@dataclass
class FlowsWorld:
    """Flows, and the Switch of the same Open vSwitch for bridges and port numbers."""

    switch: Switch
    flows: Flows


@pytest.fixture(params=IMPLEMENTATIONS)
def world(request: pytest.FixtureRequest) -> Iterator[FlowsWorld]:
    if request.param == "fake":
        switch = FakeSwitch()
        yield FlowsWorld(switch, FakeFlows(switch=switch))
        return
    api: Any = request.getfixturevalue("clean_sandbox")
    sandbox: OvsSandbox = request.getfixturevalue("sandbox")
    with pytest.MonkeyPatch.context() as env:
        # cookies() runs ovs-ofctl: it must know no other Open vSwitch than the sandbox's.
        for name, value in sandbox.env.items():
            env.setenv(name, value)
        flows = OpenFlowFlows(sandbox.rundir, timeout=5.0)
        try:
            yield FlowsWorld(OvsdbSwitch(api, OVSDB_TIMEOUT), flows)
        finally:
            flows.close()


def network(network_id: str = NET, bridge: str = "ovsbr-flows") -> Network:
    return Network(network_id=network_id, bridge=bridge, mtu=1500)


def endpoint(endpoint_id: str = EP, network_id: str = NET, **kw: Any) -> Endpoint:
    kw.setdefault("ipv4", ipaddress.IPv4Interface("10.1.0.2/24"))
    return Endpoint(endpoint_id, network_id, mac="02:42:0a:01:00:02", **kw)


def plug(world: FlowsWorld, net: Network, ep: Endpoint) -> int:
    """Add the endpoint's port and return its OpenFlow number."""
    world.switch.add_port(net, ep)
    ofport = world.switch.ofport(ep.host_if)
    assert ofport is not None
    return ofport


def test_a_new_bridge_has_no_cookies(world: FlowsWorld) -> None:
    world.switch.add_network(network(), "netdev", [])
    assert world.flows.cookies("ovsbr-flows") == set()  # the NORMAL flow's cookie 0 is not one


def test_install_and_remove_endpoints(world: FlowsWorld) -> None:
    net = network()
    world.switch.add_network(net, "netdev", [])
    first = endpoint(EP)
    second = endpoint(EP2, ipv4=None, ipv6=ipaddress.IPv6Interface("fd00::2/64"))
    bare = endpoint(EP3, ipv4=None)  # no address known: the MAC only
    for ep in (first, second, bare):
        world.flows.install_endpoint(net, ep, plug(world, net, ep))
    assert world.flows.cookies(net.bridge) == {first.cookie, second.cookie, bare.cookie}

    world.flows.remove_endpoint(net, first)
    assert world.flows.cookies(net.bridge) == {second.cookie, bare.cookie}
    world.flows.remove_cookie(net.bridge, second.cookie)
    world.flows.remove_endpoint(net, bare)
    assert world.flows.cookies(net.bridge) == set()
    world.flows.remove_endpoint(net, first)  # nothing left: fine


def test_installing_again_replaces(world: FlowsWorld) -> None:
    net, ep = network(), endpoint()
    world.switch.add_network(net, "netdev", [])
    ofport = plug(world, net, ep)
    world.flows.install_endpoint(net, ep, ofport)
    world.flows.install_endpoint(net, ep, ofport)
    assert world.flows.cookies(net.bridge) == {ep.cookie}
    world.flows.remove_endpoint(net, ep)
    assert world.flows.cookies(net.bridge) == set()


def test_cookies_are_per_bridge(world: FlowsWorld) -> None:
    net, other = network(), network(NET2, "ovsbr-other")
    for n in (net, other):
        world.switch.add_network(n, "netdev", [])
    ep = endpoint()
    world.flows.install_endpoint(net, ep, plug(world, net, ep))
    assert world.flows.cookies(other.bridge) == set()
    world.flows.remove_cookie(other.bridge, ep.cookie)
    assert world.flows.cookies(net.bridge) == {ep.cookie}


def test_flows_go_with_their_bridge(world: FlowsWorld) -> None:
    net, ep = network(), endpoint()
    world.switch.add_network(net, "netdev", [])
    world.flows.install_endpoint(net, ep, plug(world, net, ep))
    world.switch.remove_network(net, [])
    assert world.flows.cookies(net.bridge) == set()
    world.flows.remove_endpoint(net, ep)  # no bridge: nothing to remove, no error
    world.switch.add_network(net, "netdev", [])
    assert world.flows.cookies(net.bridge) == set()


def test_no_bridge_no_flows(world: FlowsWorld) -> None:
    net = network()
    assert world.flows.cookies(net.bridge) == set()
    world.flows.remove_cookie(net.bridge, endpoint().cookie)
    with pytest.raises(BackendError):
        world.flows.install_endpoint(net, endpoint(), 1)
