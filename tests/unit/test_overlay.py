"""Overlay networks and the IPAM driver against in-memory adapters: several "hosts" (each its
own chassis, links and plugin) share one fake northbound database, and are driven in Docker's
call order (RequestPool, gateway RequestAddress, CreateNetwork; RequestAddress,
CreateEndpoint, Join; DeleteEndpoint, ReleaseAddress; DeleteNetwork, ReleasePool)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

import pytest

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.service.errors import BackendError, Conflict, InvalidRequest
from docker_ovs_plugin.service.ipam import GATEWAY_TYPE, REQUEST_ADDRESS_TYPE, Ipam
from docker_ovs_plugin.service.model import Subnet
from docker_ovs_plugin.service.networks import Networks
from docker_ovs_plugin.service.overlay import Overlay, default_mtu
from docker_ovs_plugin.service.ports import Chassis

from .fakes import (
    FakeFirewall,
    FakeFlows,
    FakeIntegration,
    FakeLinks,
    FakeLogicalPort,
    FakeNorthbound,
    FakeSwitch,
)

OVERLAY = {"ovs.mode": "overlay"}
SUBNET = "10.90.0.0/16"
GW = {REQUEST_ADDRESS_TYPE: GATEWAY_TYPE}


@dataclass
class Host:
    nb: FakeNorthbound
    system_id: str
    integration: FakeIntegration = field(init=False)
    links: FakeLinks = field(default_factory=FakeLinks)
    overlay: Overlay = field(init=False)
    ipam: Ipam = field(init=False)
    networks: Networks = field(init=False)
    counter: int = 0

    def __post_init__(self) -> None:
        self.integration = FakeIntegration(system_id=self.system_id)
        self.restart()

    def restart(self) -> None:
        """A new plugin process on the same host: nothing in memory survives."""
        self.overlay = Overlay(
            self.nb, self.integration, self.links, datapath_type="netdev", join_timeout=20.0
        )
        self.ipam = Ipam(self.nb, self.integration)
        switch = FakeSwitch()
        driver = Driver(
            switch, self.links, FakeFirewall(), FakeFlows(switch=switch), datapath_type="netdev"
        )
        self.networks = Networks(driver, self.overlay)
        self.overlay.load()

    def _id(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}{self.system_id}{self.counter:04d}".ljust(64, "0")

    def create_network(
        self, subnet: str = SUBNET, gateway: str = "", **opts: str
    ) -> tuple[str, str]:
        """docker network create -d ovs --ipam-driver ovs [-o ...] --subnet S [--gateway G]"""
        pool_id, pool = self.ipam.request_pool(pool=subnet, sub_pool="", v6=False)
        gw = self.ipam.request_address(pool_id, gateway, GW)
        network_id = self._id("a")
        self.networks.create_network(
            network_id,
            {**OVERLAY, **opts},
            [Subnet(ipaddress.ip_network(pool), ipaddress.ip_interface(gw))],
            [],
            internal=False,
            address_space=self.ipam.address_space,
        )
        return network_id, pool_id

    def run(self, network_id: str, pool_id: str, ip: str = "") -> tuple[str, IPv4Interface]:
        """docker run --net N [--ip IP]: the endpoint id and its address."""
        address = IPv4Interface(self.ipam.request_address(pool_id, ip, {}))
        endpoint_id = self._id("e")
        backend = self.networks.backend(network_id)
        backend.create_endpoint(network_id, endpoint_id, ipv4=address, ipv6=None, mac=None)
        backend.join(network_id, endpoint_id)
        return endpoint_id, address

    def stop(self, network_id: str, pool_id: str, endpoint_id: str, address: str) -> None:
        backend = self.networks.backend(network_id)
        backend.leave(network_id, endpoint_id)
        backend.delete_endpoint(network_id, endpoint_id)
        self.ipam.release_address(pool_id, address)

    def remove_network(self, network_id: str, pool_id: str, *, docs_order: bool = False) -> None:
        """docker network rm: dockerd 20.10 sends ReleaseAddress(gateway) and ReleasePool
        before DeleteNetwork (seen in the lab); the protocol notes list DeleteNetwork first."""
        pool = self.nb.pool(pool_id)
        if docs_order:
            self.networks.backend(network_id).delete_network(network_id)
        if pool is not None and pool.gateway is not None:
            self.ipam.release_address(pool_id, str(pool.gateway))
        self.ipam.release_pool(pool_id)
        if not docs_order:
            self.networks.backend(network_id).delete_network(network_id)


@pytest.fixture
def nb() -> FakeNorthbound:
    return FakeNorthbound()


@pytest.fixture
def h1(nb: FakeNorthbound) -> Host:
    return Host(nb, "h1")


@pytest.fixture
def h2(nb: FakeNorthbound) -> Host:
    return Host(nb, "h2")


def lsp(nb: FakeNorthbound, pool_id: str, ip: IPv4Interface | str) -> FakeLogicalPort:
    address = str(ip.ip) if isinstance(ip, IPv4Interface) else ip
    return nb.switches[pool_id].ports[c.reservation_name(pool_id, address)]


# -- IPAM -------------------------------------------------------------------------------------


def test_one_switch_per_subnet_shared_by_hosts_with_one_gateway(h1: Host, h2: Host) -> None:
    net1, pool1 = h1.create_network()
    net2, pool2 = h2.create_network()
    assert pool1 == pool2 == "dop-10.90.0.0_16"
    (pool,) = h1.nb.pools()
    assert pool.gateway == IPv4Address("10.90.0.1")  # the first host address, on every host
    assert pool.pool_hosts == {"h1", "h2"} and set(pool.networks) == {"h1", "h2"}
    assert pool.creator == "h1"
    assert net1 != net2  # each host's dockerd gives the network its own id


def test_addresses_are_the_lowest_free_across_hosts(h1: Host, h2: Host) -> None:
    net1, pool = h1.create_network()
    net2, _ = h2.create_network()
    _, a = h1.run(net1, pool)
    _, b = h2.run(net2, pool)
    _, cc = h1.run(net1, pool)
    assert [str(x) for x in (a, b, cc)] == ["10.90.0.2/16", "10.90.0.3/16", "10.90.0.4/16"]


def test_a_released_address_is_handed_out_again(h1: Host) -> None:
    net, pool = h1.create_network()
    ep, a = h1.run(net, pool)
    h1.run(net, pool)
    h1.stop(net, pool, ep, str(a.ip))
    assert h1.nb.reservation(pool, a.ip) is None
    _, again = h1.run(net, pool)
    assert again == a


def test_ip_given_is_that_one_or_refused_naming_its_holder(h1: Host, h2: Host) -> None:
    net1, pool = h1.create_network()
    net2, _ = h2.create_network()
    _, a = h1.run(net1, pool, ip="10.90.7.7")
    assert a == IPv4Interface("10.90.7.7/16")
    with pytest.raises(Conflict, match=r"10\.90\.7\.7 .*host h1"):
        h2.run(net2, pool, ip="10.90.7.7")
    with pytest.raises(Conflict, match="gateway"):
        h2.run(net2, pool, ip="10.90.0.1")
    with pytest.raises(Conflict):
        h2.run(net2, pool, ip="10.91.0.5")  # outside the subnet


def test_gateway_given_once_then_the_same_everywhere(h1: Host, h2: Host) -> None:
    h1.create_network(gateway="10.90.0.254")
    h2.create_network()  # no --gateway: gets the recorded one
    (pool,) = h1.nb.pools()
    assert pool.gateway == IPv4Address("10.90.0.254")
    with pytest.raises(Conflict, match=r"10\.90\.0\.254"):
        Host(h1.nb, "h3").create_network(gateway="10.90.0.1")


def test_overlapping_subnets_are_refused(h1: Host, h2: Host) -> None:
    h1.create_network()
    with pytest.raises(Conflict, match="overlaps"):
        h2.create_network(subnet="10.90.4.0/24")
    h2.create_network(subnet="10.91.0.0/24")  # a separate one is fine


def test_ipv6_pools_and_missing_subnet_and_ip_range_are_refused(h1: Host) -> None:
    with pytest.raises(InvalidRequest, match="IPv4 only"):
        h1.ipam.request_pool(pool="fd00::/64", sub_pool="", v6=True)
    with pytest.raises(InvalidRequest, match="--subnet"):
        h1.ipam.request_pool(pool="", sub_pool="", v6=False)
    with pytest.raises(InvalidRequest, match="--ip-range"):
        h1.ipam.request_pool(pool=SUBNET, sub_pool="10.90.1.0/24", v6=False)
    with pytest.raises(InvalidRequest, match="host bits"):
        h1.ipam.request_pool(pool="10.90.0.5/16", sub_pool="", v6=False)


def test_without_ovn_nb_the_ipam_and_overlay_mode_are_refused_naming_the_flag() -> None:
    with pytest.raises(InvalidRequest, match="--ovn-nb"):
        Ipam(None, None).request_pool(pool=SUBNET, sub_pool="", v6=False)
    switch = FakeSwitch()
    driver = Driver(
        switch, FakeLinks(), FakeFirewall(), FakeFlows(switch=switch), datapath_type="netdev"
    )
    with pytest.raises(InvalidRequest, match="--ovn-nb"):
        Networks(driver, None).create_network(
            "a" * 64, OVERLAY, [], [], internal=False, address_space="LocalDefault"
        )
    assert switch.bridges == {}


def test_overlay_without_our_ipam_is_refused_naming_the_driver(h1: Host) -> None:
    subnet = Subnet(ipaddress.ip_network(SUBNET), ipaddress.ip_interface("10.90.0.1/16"))
    with pytest.raises(InvalidRequest, match="--ipam-driver ovs"):
        h1.networks.create_network(
            "a" * 64, OVERLAY, [subnet], [], internal=False, address_space="LocalDefault"
        )
    # Same subnet as an existing overlay pool, but this host's IPAM never handed it out:
    Host(h1.nb, "h2").create_network()
    with pytest.raises(InvalidRequest, match="--ipam-driver ovs"):
        h1.networks.create_network(
            "a" * 64, OVERLAY, [subnet], [], internal=False, address_space=c.ADDRESS_SPACE
        )


def test_a_bridge_network_on_our_pool_is_refused(h1: Host) -> None:
    subnet = Subnet(ipaddress.ip_network(SUBNET), ipaddress.ip_interface("10.90.0.1/16"))
    with pytest.raises(InvalidRequest, match=r"ovs\.mode=overlay"):
        h1.networks.create_network(
            "a" * 64, {}, [subnet], [], internal=False, address_space=c.ADDRESS_SPACE
        )


def test_bridge_only_options_are_refused_in_overlay_mode(h1: Host) -> None:
    with pytest.raises(InvalidRequest, match=r"ovs\.vlan"):
        h1.create_network(**{"ovs.vlan": "10"})


def test_the_pool_goes_when_the_last_host_released_it(h1: Host, h2: Host) -> None:
    net1, pool = h1.create_network()
    net2, _ = h2.create_network()
    ep, a = h2.run(net2, pool)
    h1.remove_network(net1, pool)
    assert h1.nb.pool(pool) is not None  # h2 still uses it
    h2.stop(net2, pool, ep, str(a.ip))
    h2.remove_network(net2, pool)
    assert h1.nb.pools() == [] and h1.nb.tokens == {} and h1.nb.port_names == {}


@pytest.mark.parametrize("docs_order", [False, True])
def test_the_last_of_release_pool_and_delete_network_deletes_the_pool(
    h1: Host, docs_order: bool
) -> None:
    net, pool = h1.create_network()
    h1.remove_network(net, pool, docs_order=docs_order)
    assert h1.nb.pools() == []


def test_a_reservation_docker_never_released_keeps_the_pool(h1: Host) -> None:
    net, pool = h1.create_network()
    h1.ipam.request_address(pool, "", {})  # an address whose ReleaseAddress never comes
    h1.remove_network(net, pool)
    assert h1.nb.pool(pool) is not None


def test_stale_reservations_are_this_hosts_old_plain_ones(nb: FakeNorthbound) -> None:
    now = [1000.0]
    nb.clock = lambda: now[0]
    h1, h2 = Host(nb, "h1"), Host(nb, "h2")
    net1, pool = h1.create_network()
    h2.create_network()
    forgotten = h1.ipam.request_address(pool, "", {})
    h2.ipam.request_address(pool, "", {})
    h1.run(net1, pool)  # an endpoint: not stale
    now[0] = 2000.0
    h1.ipam.request_address(pool, "", {})  # too young
    stale = nb.stale_reservations("h1", older_than=1500.0)
    assert [f"{r.address}/16" for r in stale] == [forgotten]


# -- endpoints ----------------------------------------------------------------------------------


def test_an_endpoint_is_its_reservation_bound_to_a_port_on_br_int(h1: Host) -> None:
    net, pool = h1.create_network()
    ep, a = h1.run(net, pool)
    port = lsp(h1.nb, pool, a)
    mac = "02:42:0a:5a:00:02"  # derived from the address, as Docker does
    assert port.addresses == [f"{mac} 10.90.0.2"] == port.port_security
    assert port.options == {"requested-chassis": "h1"}
    assert port.external_ids[c.ENDPOINT_ID_KEY] == ep
    host_if = c.overlay_host_veth_name(ep)
    ids = h1.integration.ports[host_if]
    assert ids[c.IFACE_ID_KEY] == "dop-10.90.0.0_16-10.90.0.2"
    assert (ids[c.ATTACHED_MAC_KEY], ids[c.IFACE_STATUS_KEY]) == (mac, "active")
    assert (ids[c.OWNER_KEY], ids[c.ROLE_KEY]) == (c.OWNER, c.ROLE_OVERLAY)
    assert h1.links.links[host_if] == c.overlay_container_veth_name(ep)
    assert c.overlay_container_veth_name(ep) in h1.links.tx_checksum_off
    assert h1.links.veth_mtus[host_if] == 1442  # 1500 underlay - Geneve


def test_create_endpoint_returns_the_mac_only_when_docker_gave_none(h1: Host) -> None:
    net, pool = h1.create_network()
    a = IPv4Interface(h1.ipam.request_address(pool, "", {}))
    got = h1.overlay.create_endpoint(net, "e" * 64, ipv4=a, ipv6=None, mac=None)
    assert got == "02:42:0a:5a:00:02"
    b = IPv4Interface(h1.ipam.request_address(pool, "", {}))
    mac = "02:00:00:00:00:99"
    assert h1.overlay.create_endpoint(net, "f" * 64, ipv4=b, ipv6=None, mac=mac) is None
    assert lsp(h1.nb, pool, b).addresses == [f"{mac} 10.90.0.3"]


def test_port_security_off_leaves_the_logical_port_open(h1: Host) -> None:
    net, pool = h1.create_network(**{"ovs.port_security": "false"})
    _, a = h1.run(net, pool)
    assert lsp(h1.nb, pool, a).port_security == []


def test_an_endpoint_on_another_hosts_reservation_is_refused(h1: Host, h2: Host) -> None:
    _, pool = h1.create_network()
    net2, _ = h2.create_network()
    a = IPv4Interface(h1.ipam.request_address(pool, "", {}))
    with pytest.raises(Conflict, match="host h1"):
        h2.overlay.create_endpoint(net2, "e" * 64, ipv4=a, ipv6=None, mac=None)
    assert h2.integration.ports == {} and h2.links.links == {}


def test_a_failed_port_leaves_nothing_behind(h1: Host) -> None:
    net, pool = h1.create_network()
    a = IPv4Interface(h1.ipam.request_address(pool, "", {}))
    h1.integration.fail_add_port = True
    with pytest.raises(BackendError):
        h1.overlay.create_endpoint(net, "e" * 64, ipv4=a, ipv6=None, mac=None)
    assert h1.links.links == {} and h1.integration.ports == {}
    assert lsp(h1.nb, pool, a).addresses == []
    assert h1.overlay.endpoints() == []


def test_join_waits_for_ovn_controller_bounded_with_a_clear_error(h1: Host) -> None:
    net, pool = h1.create_network()
    h1.integration.claims = False  # ovn-controller down
    a = IPv4Interface(h1.ipam.request_address(pool, "", {}))
    ep = "e" * 64
    h1.overlay.create_endpoint(net, ep, ipv4=a, ipv6=None, mac=None)
    with pytest.raises(BackendError, match=r"ovn-controller did not claim port .* within 20 s"):
        h1.overlay.join(net, ep)
    assert h1.integration.waited == [20.0]
    h1.integration.installed_ports.add(c.overlay_host_veth_name(ep))
    info = h1.overlay.join(net, ep)
    # No gateway, gateway service on: Docker adds docker_gwbridge for the way out.
    assert (info.gateway, info.disable_gateway_service) == (None, False)
    assert info.src_name == c.overlay_container_veth_name(ep)


def test_delete_endpoint_makes_the_port_a_plain_reservation_again(h1: Host) -> None:
    net, pool = h1.create_network()
    ep, a = h1.run(net, pool)
    h1.overlay.delete_endpoint(net, ep)
    port = lsp(h1.nb, pool, a)
    assert (port.addresses, port.port_security, port.options) == ([], [], {})
    assert c.ENDPOINT_ID_KEY not in port.external_ids
    assert h1.integration.ports == {} and h1.links.links == {}
    h1.ipam.release_address(pool, str(a.ip))
    assert h1.nb.reservation(pool, a.ip) is None


def test_release_of_another_hosts_address_or_the_gateway_changes_nothing(
    h1: Host, h2: Host
) -> None:
    net1, pool = h1.create_network()
    h2.create_network()
    _, a = h1.run(net1, pool)
    h2.ipam.release_address(pool, str(a.ip))
    h2.ipam.release_address(pool, "10.90.0.1")
    assert h1.nb.reservation(pool, a.ip) is not None
    assert h1.nb.reservation(pool, IPv4Address("10.90.0.1")) is not None


def test_a_restarted_plugin_serves_its_overlay_networks_and_endpoints(h1: Host) -> None:
    net, pool = h1.create_network(**{"ovs.mtu": "1400"})
    ep, a = h1.run(net, pool)
    h1.restart()
    networks, endpoints = h1.overlay.load()
    assert [(n.network_id, n.mtu, n.pool_id) for n in networks] == [(net, 1400, pool)]
    assert [(e.endpoint_id, e.ipv4) for e in endpoints] == [(ep, a)]
    assert h1.networks.backend(net) is h1.overlay
    h1.stop(net, pool, ep, str(a.ip))
    h1.remove_network(net, pool)
    assert h1.nb.pools() == []


def test_bridge_mode_code_does_not_take_overlay_ports_for_its_own(h1: Host) -> None:
    net, pool = h1.create_network()
    ep, _ = h1.run(net, pool)
    assert not c.overlay_host_veth_name(ep).startswith(
        (c.HOST_VETH_PREFIX, c.CONTAINER_VETH_PREFIX)
    )


# -- MTU -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("types", "underlay", "expected"),
    [
        (("geneve",), 1500, 1442),
        (("vxlan",), 1500, 1450),
        (("geneve", "vxlan"), 9000, 8942),  # the largest overhead of those in use
        (("geneve",), None, 1442),  # device not found: a 1500 underlay is assumed
    ],
)
def test_default_mtu_is_the_underlays_less_the_encapsulation(
    types: tuple[str, ...], underlay: int | None, expected: int
) -> None:
    links = FakeLinks(mtus={} if underlay is None else {"192.0.2.2": underlay})
    chassis = Chassis("h1", "br-int", "192.0.2.2", types, "netdev")
    assert default_mtu(chassis, links) == expected


def test_ovs_mtu_overrides_the_derived_mtu(h1: Host) -> None:
    net, pool = h1.create_network(**{"ovs.mtu": "1300"})
    ep, _ = h1.run(net, pool)
    assert h1.links.veth_mtus[c.overlay_host_veth_name(ep)] == 1300


def test_no_system_id_is_a_clear_error(h1: Host) -> None:
    h1.integration.system_id = None
    with pytest.raises(BackendError, match="system-id"):
        h1.ipam.request_pool(pool=SUBNET, sub_pool="", v6=False)


# -- -o ovs.router=NAME ------------------------------------------------------------------------


def test_networks_on_one_router_get_routes_to_each_other_via_their_gateway(
    h1: Host, h2: Host
) -> None:
    a, pool_a = h1.create_network("10.90.0.0/16", **{"ovs.router": "r1"})
    b, pool_b = h2.create_network("10.91.0.0/24", **{"ovs.router": "r1"})
    alone, pool_alone = h1.create_network("10.92.0.0/24")
    ep, _ = h1.run(a, pool_a)
    routes = h1.overlay.join(a, ep).static_routes
    assert [(r.destination, r.next_hop) for r in routes] == [("10.91.0.0/24", "10.90.0.1")]
    ep_b, _ = h2.run(b, pool_b)
    routes = h2.overlay.join(b, ep_b).static_routes
    assert [(r.destination, r.next_hop) for r in routes] == [("10.90.0.0/16", "10.91.0.1")]
    # Not on the router: no routes, and no router port.
    ep_alone, _ = h1.run(alone, pool_alone)
    assert h1.overlay.join(alone, ep_alone).static_routes == ()
    # The gateway reservation is the switch's router port.
    gw = lsp(h1.nb, pool_a, IPv4Interface("10.90.0.1/16"))
    assert gw.addresses == ["router"]
    assert gw.options["router-port"] == c.router_port_name(pool_a)


def test_a_network_on_another_router_is_refused_and_leaves_nothing(h1: Host, h2: Host) -> None:
    h1.create_network("10.90.0.0/16", **{"ovs.router": "r1"})
    pool_id, _ = h2.ipam.request_pool(pool="10.90.0.0/16", sub_pool="", v6=False)
    gw = h2.ipam.request_address(pool_id, "", GW)
    with pytest.raises(Conflict, match="joined to router r1"):
        h2.networks.create_network(
            "b" * 64,
            {**OVERLAY, "ovs.router": "r2"},
            [Subnet(ipaddress.ip_network("10.90.0.0/16"), ipaddress.ip_interface(gw))],
            [],
            internal=False,
            address_space=h2.ipam.address_space,
        )
    assert h2.overlay.networks() == []
    assert "r2" not in h2.nb.routers


def test_the_router_goes_with_its_last_network(h1: Host, h2: Host) -> None:
    a, pool_a = h1.create_network("10.90.0.0/16", **{"ovs.router": "r1"})
    b, pool_b = h2.create_network("10.91.0.0/24", **{"ovs.router": "r1"})
    h1.remove_network(a, pool_a)
    assert h2.nb.routed_subnets(pool_b) == []
    assert "r1" in h2.nb.routers
    h2.remove_network(b, pool_b)
    assert h2.nb.routers == {}


@pytest.mark.parametrize("name", ["", "-r", "a b", "r/1", "x" * 64])
def test_a_bad_router_name_is_refused(h1: Host, name: str) -> None:
    with pytest.raises(InvalidRequest, match=r"ovs\.router"):
        h1.create_network(**{"ovs.router": name})


def test_the_router_is_kept_across_a_plugin_restart(h1: Host) -> None:
    h1.create_network("10.90.0.0/16", **{"ovs.router": "r1"})
    h1.restart()
    (net,) = h1.overlay.networks()
    assert net.router == "r1"
