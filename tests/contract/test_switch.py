"""Switch: OvsdbSwitch on a private Open vSwitch against FakeSwitch, one set of cases."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from docker_ovs_plugin.adapters.ovsdb import OvsdbSwitch
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import Endpoint, Network, PortMapping, owned
from docker_ovs_plugin.service.ports import BridgeState, Switch
from unit.fakes import FakeBridge, FakeSwitch

from .conftest import IMPLEMENTATIONS, OVSDB_TIMEOUT

NET, NET2, NET3 = "a1" * 32, "b2" * 32, "c3" * 32
EP, EP2 = "d4" * 32, "e5" * 32
BRIDGE = "ovsbr-contract"
UPLINK = "eth1"


@dataclass(frozen=True)
class PortView:
    """The columns of a Port row the driver sets."""

    tag: int | None = None
    trunks: list[int] = field(default_factory=list)
    protected: bool = False


class SwitchWorld(Protocol):
    """A Switch, and what a case needs to set up or see beyond the Switch protocol."""

    switch: Switch

    def add_foreign_bridge(self, name: str) -> None: ...

    def add_foreign_port(self, bridge: str, name: str) -> None: ...

    def add_owned_empty_bridge(self, name: str) -> None: ...

    def bridges(self) -> set[str]: ...

    def ports(self, bridge: str) -> set[str]:
        """The bridge's ports, except its own internal port."""

    def port(self, name: str) -> PortView: ...

    def cannot_open(self, name: str) -> None:
        """Make OVS fail to open the interface `name` when it is added."""


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeSwitch()
        self.switch: Switch = self.fake

    def add_foreign_bridge(self, name: str) -> None:
        self.fake.bridges[name] = FakeBridge({})

    def add_foreign_port(self, bridge: str, name: str) -> None:
        self.fake.foreign_ports[name] = bridge

    def add_owned_empty_bridge(self, name: str) -> None:
        self.fake.bridges[name] = FakeBridge(owned())

    def bridges(self) -> set[str]:
        return set(self.fake.bridges)

    def ports(self, bridge: str) -> set[str]:
        b = self.fake.bridges[bridge]
        return (
            {n for n, (br, _) in self.fake.ports.items() if br == bridge}
            | set(b.gateway_ports)
            | ({b.uplink} if b.uplink else set())
            | {n for n, br in self.fake.foreign_ports.items() if br == bridge}
        )

    def port(self, name: str) -> PortView:
        for b in self.fake.bridges.values():
            if name in b.gateway_ports:
                return PortView(tag=b.gateway_ports[name])
            if name == b.uplink:
                return PortView(trunks=b.trunks)
        columns = self.fake.port_columns.get(name, {})
        tag = columns.get("tag")
        return PortView(
            tag=tag if isinstance(tag, int) else None, protected=columns.get("protected") is True
        )

    def cannot_open(self, name: str) -> None:
        self.fake.fail_add_port = True


class RealWorld:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.switch: Switch = OvsdbSwitch(api, OVSDB_TIMEOUT)

    def add_foreign_bridge(self, name: str) -> None:
        self.api.add_br(name, datapath_type="netdev").execute(check_error=True)

    def add_foreign_port(self, bridge: str, name: str) -> None:
        self.api.add_port(bridge, name).execute(check_error=True)

    def add_owned_empty_bridge(self, name: str) -> None:
        with self.api.transaction(check_error=True) as txn:
            txn.add(self.api.add_br(name, datapath_type="netdev"))
            txn.add(self.api.db_set("Bridge", name, ("external_ids", owned())))

    def bridges(self) -> set[str]:
        return set(self.api.list_br().execute(check_error=True))

    def ports(self, bridge: str) -> set[str]:
        return set(self.api.list_ports(bridge).execute(check_error=True))

    def port(self, name: str) -> PortView:
        rows = self.api.db_find_rows("Port", ("name", "=", name)).execute(check_error=True)
        (row,) = rows
        return PortView(
            tag=row.tag[0] if row.tag else None,
            trunks=sorted(row.trunks),
            protected=bool(row.protected),
        )

    def cannot_open(self, name: str) -> None:
        pytest.skip(
            "the sandbox's ovs-vswitchd (--enable-dummy=override) opens any device; the fake "
            "follows what a real ovs-vswitchd does, see this case's docstring"
        )


@pytest.fixture(params=IMPLEMENTATIONS)
def world(request: pytest.FixtureRequest) -> SwitchWorld:
    if request.param == "fake":
        return FakeWorld()
    return RealWorld(request.getfixturevalue("clean_sandbox"))


def network(network_id: str = NET, **kw: Any) -> Network:
    kw.setdefault("bridge", BRIDGE)
    return Network(network_id=network_id, mtu=1500, **kw)


def endpoint(endpoint_id: str = EP, network_id: str = NET, **kw: Any) -> Endpoint:
    return Endpoint(
        endpoint_id=endpoint_id,
        network_id=network_id,
        mac="02:42:0a:01:00:02",
        ipv4=ipaddress.IPv4Interface("10.1.0.2/24"),
        **kw,
    )


def by_id(items: list[Network]) -> list[Network]:
    return sorted(items, key=lambda n: n.network_id)


# -- networks ---------------------------------------------------------------------------------


def test_add_network_makes_an_owned_bridge_that_records_it(world: SwitchWorld) -> None:
    net = network(options={"ovs.bridge.mtu": "1500"})
    s = world.switch
    assert s.bridge_state(BRIDGE) is None
    s.add_network(net, "netdev", [])
    assert s.bridge_state(BRIDGE) == BridgeState(owned=True, networks=[net], uplink=None)
    assert s.list_networks() == [net]
    assert world.bridges() == {BRIDGE}
    assert world.ports(BRIDGE) == set()  # the bridge's own port is the gateway
    assert s.empty_bridges() == []


def test_add_network_again_changes_nothing(world: SwitchWorld) -> None:
    net = network(vlan=10, uplink=UPLINK)
    world.switch.add_network(net, "netdev", [])
    world.switch.add_network(net, "netdev", [])
    assert world.switch.list_networks() == [net]
    assert world.ports(BRIDGE) == {net.gateway_port, UPLINK}
    assert world.port(UPLINK).trunks == [10]


def test_vlan_networks_share_a_bridge_and_its_uplink(world: SwitchWorld) -> None:
    s = world.switch
    first, second = network(NET, vlan=10, uplink=UPLINK), network(NET2, vlan=20, uplink=UPLINK)
    s.add_network(first, "netdev", [])
    s.add_network(second, "netdev", [first])
    assert s.bridge_state(BRIDGE) == BridgeState(True, by_id([first, second]), UPLINK)
    assert world.ports(BRIDGE) == {first.gateway_port, second.gateway_port, UPLINK}
    assert world.port(first.gateway_port).tag == 10
    assert world.port(second.gateway_port).tag == 20
    assert world.port(UPLINK) == PortView(trunks=[10, 20])
    assert s.port_bridge(UPLINK) == BRIDGE
    assert s.port_bridge(second.gateway_port) == BRIDGE

    s.remove_network(second, [first])
    assert s.bridge_state(BRIDGE) == BridgeState(True, [first], UPLINK)
    assert world.ports(BRIDGE) == {first.gateway_port, UPLINK}
    assert world.port(UPLINK).trunks == [10]
    assert s.port_bridge(second.gateway_port) is None

    s.remove_network(first, [])
    assert s.bridge_state(BRIDGE) is None
    assert world.bridges() == set()
    assert s.port_bridge(UPLINK) is None


def test_an_untagged_network_on_the_bridge_trunks_every_vlan(world: SwitchWorld) -> None:
    tagged, untagged = network(NET, vlan=10, uplink=UPLINK), network(NET2, uplink=UPLINK)
    world.switch.add_network(tagged, "netdev", [])
    world.switch.add_network(untagged, "netdev", [tagged])
    assert world.port(UPLINK).trunks == []  # empty trunks: all VLANs
    world.switch.remove_network(untagged, [tagged])
    assert world.port(UPLINK).trunks == [10]


def test_a_network_without_gateway_gets_no_gateway_port(world: SwitchWorld) -> None:
    net = network(vlan=30, internal=True)
    world.switch.add_network(net, "netdev", [])
    assert world.ports(BRIDGE) == set()


def test_removing_what_is_not_there_is_fine(world: SwitchWorld) -> None:
    s = world.switch
    s.remove_network(network(), [])
    s.delete_bridge(BRIDGE)
    s.delete_port(BRIDGE, endpoint().host_if)
    assert world.bridges() == set()
    assert (s.bridge_state("nope"), s.port_bridge("nope"), s.ofport("nope")) == (None, None, None)


# -- rows that are not ours -------------------------------------------------------------------


def test_a_bridge_without_our_owner_tag_is_never_changed(world: SwitchWorld) -> None:
    s = world.switch
    world.add_foreign_bridge(BRIDGE)
    assert s.bridge_state(BRIDGE) == BridgeState(owned=False)
    assert s.list_networks() == []
    assert s.empty_bridges() == []
    s.delete_bridge(BRIDGE)
    s.remove_network(network(), [])
    s.remove_network(network(vlan=10), [network(NET2, vlan=20)])
    assert world.bridges() == {BRIDGE}
    assert s.bridge_state(BRIDGE) == BridgeState(owned=False)


def test_a_port_without_our_owner_tag_is_never_deleted(world: SwitchWorld) -> None:
    s = world.switch
    s.add_network(network(), "netdev", [])
    world.add_foreign_port(BRIDGE, "foreign0")
    assert s.port_bridge("foreign0") == BRIDGE
    s.delete_port(BRIDGE, "foreign0")
    assert world.ports(BRIDGE) == {"foreign0"}
    assert s.list_endpoints() == []


# -- endpoints --------------------------------------------------------------------------------


def test_endpoint_port_lifecycle(world: SwitchWorld) -> None:
    s = world.switch
    net = network()
    s.add_network(net, "netdev", [])
    ep = endpoint()
    s.add_port(net, ep)
    assert s.list_endpoints() == [ep]
    assert s.port_bridge(ep.host_if) == BRIDGE
    assert world.ports(BRIDGE) == {ep.host_if}
    assert world.port(ep.host_if) == PortView()
    ofport = s.ofport(ep.host_if)
    assert ofport is not None and ofport >= 1

    published = Endpoint(**{**vars(ep), "port_mappings": (PortMapping("tcp", 80, 8080),)})
    s.update_endpoint(published)
    assert s.list_endpoints() == [published]
    assert s.ofport(ep.host_if) == ofport

    s.delete_port(BRIDGE, ep.host_if)
    assert s.list_endpoints() == []
    assert (s.port_bridge(ep.host_if), s.ofport(ep.host_if)) == (None, None)
    assert world.ports(BRIDGE) == set()
    s.delete_port(BRIDGE, ep.host_if)  # gone already: fine


def test_add_port_again_keeps_one_port_and_its_number(world: SwitchWorld) -> None:
    s = world.switch
    net = network()
    s.add_network(net, "netdev", [])
    s.add_port(net, endpoint())
    ofport = s.ofport(endpoint().host_if)
    s.add_port(net, endpoint())
    assert s.list_endpoints() == [endpoint()]
    assert s.ofport(endpoint().host_if) == ofport


def test_ports_keep_distinct_openflow_numbers(world: SwitchWorld) -> None:
    s = world.switch
    net = network()
    s.add_network(net, "netdev", [])
    # The second endpoint's name sorts first: numbers must not follow the names.
    later, earlier = endpoint(EP2), endpoint(EP)
    s.add_port(net, later)
    first = s.ofport(later.host_if)
    s.add_port(net, earlier)
    assert s.ofport(later.host_if) == first
    numbers = {s.ofport(later.host_if), s.ofport(earlier.host_if)}
    assert None not in numbers and len(numbers) == 2


def test_vlan_and_isolation_are_set_on_the_endpoint_port(world: SwitchWorld) -> None:
    net = network(vlan=40, icc=False)
    world.switch.add_network(net, "netdev", [])
    world.switch.add_port(net, endpoint())
    assert world.port(endpoint().host_if) == PortView(tag=40, protected=True)


def test_add_port_to_a_missing_bridge_fails(world: SwitchWorld) -> None:
    with pytest.raises(BackendError):
        world.switch.add_port(network(), endpoint())
    assert world.switch.list_endpoints() == []


def test_update_of_a_missing_port_records_nothing(world: SwitchWorld) -> None:
    # No error either: ovsdbapp's db_set skips a missing row (if_exists defaults to True).
    world.switch.add_network(network(), "netdev", [])
    world.switch.update_endpoint(endpoint())
    assert world.switch.list_endpoints() == []


def test_endpoints_go_with_their_bridge(world: SwitchWorld) -> None:
    s = world.switch
    net = network()
    s.add_network(net, "netdev", [])
    s.add_port(net, endpoint())
    s.remove_network(net, [])
    assert s.list_endpoints() == []
    assert s.port_bridge(endpoint().host_if) is None


def test_a_bridge_of_ours_without_networks_is_empty_and_deletable(world: SwitchWorld) -> None:
    s = world.switch
    world.add_owned_empty_bridge(BRIDGE)
    s.add_network(network(NET3, bridge="ovsbr-other"), "netdev", [])
    assert s.empty_bridges() == [BRIDGE]
    assert s.bridge_state(BRIDGE) == BridgeState(owned=True, networks=[], uplink=None)
    s.delete_bridge(BRIDGE)
    assert world.bridges() == {"ovsbr-other"}


def test_delete_bridge_takes_its_endpoints(world: SwitchWorld) -> None:
    s = world.switch
    net = network()
    s.add_network(net, "netdev", [])
    s.add_port(net, endpoint())
    s.delete_bridge(BRIDGE)
    assert world.bridges() == set()
    assert s.list_endpoints() == []
    assert s.port_bridge(endpoint().host_if) is None


def test_endpoint_records_survive_as_written(world: SwitchWorld) -> None:
    s = world.switch
    net = network()
    s.add_network(net, "netdev", [])
    ep = Endpoint(
        endpoint_id=EP,
        network_id=NET,
        mac="02:42:0a:01:00:03",
        ipv6=ipaddress.IPv6Interface("fd00::3/64"),
        port_mappings=(PortMapping("udp", 53, 5353, ipaddress.IPv4Address("127.0.0.1")),),
        driver="ovs2",
    )
    s.add_port(net, ep)
    assert s.list_endpoints() == [ep]


def test_the_bridge_own_port_is_openflow_local(world: SwitchWorld) -> None:
    world.switch.add_network(network(), "netdev", [])
    assert world.switch.ofport(BRIDGE) == 65534


def test_a_port_ovs_cannot_open_stays_recorded_without_a_number(world: SwitchWorld) -> None:
    """A real ovs-vswitchd (not the sandbox's dummy one) given a missing device keeps the Port
    and Interface rows, with ``error`` "could not open network device ... (No such device)" and
    ofport -1: add_port raises, the record stays until the driver deletes the port."""
    s = world.switch
    net, ep = network(), endpoint()
    s.add_network(net, "netdev", [])
    world.cannot_open(ep.host_if)
    with pytest.raises(BackendError):
        s.add_port(net, ep)
    assert s.list_endpoints() == [ep]
    assert s.port_bridge(ep.host_if) == BRIDGE
    assert s.ofport(ep.host_if) is None
    s.delete_port(BRIDGE, ep.host_if)
    assert s.list_endpoints() == []
