"""The driver's use cases against in-memory adapters: outcomes, rollback, restore."""

from __future__ import annotations

import ipaddress
import threading
from ipaddress import IPv4Interface

import pytest

from docker_ovs_plugin.service.driver import Driver, mac_for
from docker_ovs_plugin.service.errors import BackendError, Conflict, InvalidRequest, NotFound
from docker_ovs_plugin.service.model import Endpoint, PortMapping, Subnet
from docker_ovs_plugin.service.reaper import Reaper
from docker_ovs_plugin.service.reconcile import Reconciler

from .fakes import FakeBridge, FakeFirewall, FakeFlows, FakeLinks, FakeSwitch

NET = "a" * 64
NET2 = "b" * 64
EP = "c" * 64
EP2 = "d" * 64
SUBNET = Subnet(
    pool=ipaddress.ip_network("10.1.0.0/24"), gateway=ipaddress.ip_interface("10.1.0.1/24")
)


@pytest.fixture
def switch() -> FakeSwitch:
    return FakeSwitch()


@pytest.fixture
def links() -> FakeLinks:
    return FakeLinks()


@pytest.fixture
def firewall() -> FakeFirewall:
    return FakeFirewall()


@pytest.fixture
def flows(switch: FakeSwitch) -> FakeFlows:
    return FakeFlows(switch=switch)


@pytest.fixture
def driver(
    switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall, flows: FakeFlows
) -> Driver:
    return Driver(switch, links, firewall, flows, datapath_type="netdev")


def create(driver: Driver, net: str = NET, **opts: str) -> None:
    driver.create_network(net, opts, [SUBNET], [], internal=False)


def test_create_network_makes_bridge_address_and_rules(
    driver: Driver, switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall
) -> None:
    create(driver)
    assert switch.bridges["ovsbr-aaaaaaaa"].datapath == "netdev"
    assert links.assigned["ovsbr-aaaaaaaa"] == [SUBNET.gateway]
    assert set(firewall.networks) == {NET}


def test_bridge_name_option_and_mtu(driver: Driver, switch: FakeSwitch) -> None:
    create(driver, **{"ovs.bridge.name": "br-apps", "com.docker.network.driver.mtu": "1400"})
    (net,) = switch.list_networks()
    assert (net.bridge, net.mtu) == ("br-apps", 1400)
    assert net.options["ovs.bridge.name"] == "br-apps"


def test_unknown_option_refused_and_nothing_made(
    driver: Driver, switch: FakeSwitch, firewall: FakeFirewall
) -> None:
    with pytest.raises(InvalidRequest, match=r"ovs\.nope"):
        create(driver, **{"ovs.nope": "1"})
    assert switch.bridges == {}
    assert firewall.networks == {}


def test_failed_plumbing_rolls_back(
    driver: Driver, switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall
) -> None:
    links.fail_bridge_port = True
    with pytest.raises(BackendError):
        create(driver)
    assert switch.bridges == {}
    assert firewall.networks == {}
    assert driver.networks() == []


def test_foreign_bridge_is_not_taken(driver: Driver, switch: FakeSwitch) -> None:
    switch.bridges["br-ex"] = FakeBridge({})
    with pytest.raises(Conflict, match="not managed"):
        create(driver, **{"ovs.bridge.name": "br-ex"})
    assert switch.bridges == {"br-ex": FakeBridge({})}


def test_two_networks_cannot_share_a_bridge(driver: Driver) -> None:
    create(driver, **{"ovs.bridge.name": "br-x"})
    with pytest.raises(Conflict, match=r"distinct -o ovs\.vlan"):
        create(driver, NET2, **{"ovs.bridge.name": "br-x"})


def test_repeated_create_is_idempotent(driver: Driver, switch: FakeSwitch) -> None:
    create(driver)
    create(driver)
    assert len(switch.bridges) == 1


def test_internal_network_has_no_gateway_nor_rules(
    driver: Driver, links: FakeLinks, firewall: FakeFirewall
) -> None:
    driver.create_network(NET, {}, [SUBNET], [], internal=True)
    driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.2/24"), ipv6=None, mac=None)
    info = driver.join(NET, EP)
    assert info.gateway is None
    assert info.disable_gateway_service
    assert links.assigned == {}
    assert firewall.networks == {}


def test_endpoint_lifecycle(driver: Driver, switch: FakeSwitch, links: FakeLinks) -> None:
    create(driver)
    mac = driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.5/24"), ipv6=None, mac=None)
    assert mac == "02:42:0a:01:00:05"
    host, peer = "ovp" + EP[:12], "ovc" + EP[:12]
    assert switch.ports[host][0] == "ovsbr-aaaaaaaa"
    assert switch.ports[host][1]["iface-id"] == EP
    assert links.links[host] == peer
    assert peer in links.tx_checksum_off  # userspace datapath

    info = driver.join(NET, EP)
    assert (info.src_name, info.dst_prefix, info.gateway) == (peer, "eth", "10.1.0.1")
    assert not info.disable_gateway_service

    driver.leave(NET, EP)
    assert host in links.links  # Docker still needs the veth to move it back

    driver.delete_endpoint(NET, EP)
    assert host not in switch.ports
    assert links.links == {}
    driver.delete_endpoint(NET, EP)  # idempotent


def test_docker_supplied_mac_is_not_echoed(driver: Driver) -> None:
    create(driver)
    mac = driver.create_endpoint(NET, EP, ipv4=None, ipv6=None, mac="02:00:00:00:00:01")
    assert mac is None


def test_kernel_datapath_keeps_checksum_offload(
    switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall, flows: FakeFlows
) -> None:
    driver = Driver(switch, links, firewall, flows, datapath_type="system")
    create(driver)
    driver.create_endpoint(NET, EP, ipv4=None, ipv6=None, mac=None)
    assert links.tx_checksum_off == set()


def test_failed_port_rolls_back_veth(driver: Driver, switch: FakeSwitch, links: FakeLinks) -> None:
    create(driver)
    switch.fail_add_port = True
    with pytest.raises(BackendError):
        driver.create_endpoint(NET, EP, ipv4=None, ipv6=None, mac=None)
    assert switch.ports == {}
    assert links.links == {}
    with pytest.raises(NotFound):
        driver.join(NET, EP)


def test_endpoint_on_unknown_network(driver: Driver) -> None:
    with pytest.raises(NotFound, match="not an ovs network"):
        driver.create_endpoint(NET, EP, ipv4=None, ipv6=None, mac=None)


def test_delete_network_removes_everything(
    driver: Driver, switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall, flows: FakeFlows
) -> None:
    create(driver)
    driver.create_endpoint(NET, EP, ipv4=None, ipv6=None, mac=None)
    driver.delete_network(NET)
    assert (switch.bridges, switch.ports, links.links, firewall.networks) == ({}, {}, {}, {})
    assert flows.endpoints == {}
    driver.delete_network(NET)  # idempotent


def test_restart_rebuilds_cache_and_plumbing(
    switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall, flows: FakeFlows
) -> None:
    first = Driver(switch, links, firewall, flows, datapath_type="netdev")
    create(first)
    first.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.7/24"), ipv6=None, mac=None)
    links.assigned.clear()
    firewall.networks.clear()
    flows.endpoints.clear()  # as after an ovs-vswitchd restart

    second = Driver(switch, links, firewall, flows, datapath_type="netdev")
    second.load()
    assert [n.network_id for n in second.networks()] == [NET]
    assert second.join(NET, EP).gateway == "10.1.0.1"
    Reconciler(
        second, switch=switch, links=links, firewall=firewall, flows=flows, docker=None
    ).restore_plumbing()
    assert links.assigned["ovsbr-aaaaaaaa"] == [SUBNET.gateway]
    assert set(firewall.networks) == {NET}
    assert set(flows.endpoints) == {EP}
    second.delete_endpoint(NET, EP)
    assert switch.ports == {}


def test_deferred_deletion_answers_first_and_finishes_in_the_background(
    switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall, flows: FakeFlows
) -> None:
    gate = threading.Event()
    reaper = Reaper()
    driver = Driver(switch, links, firewall, flows, datapath_type="netdev", reaper=reaper)
    create(driver)
    driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.7/24"), ipv6=None, mac=None)
    reaper.submit(NET, "hold", gate.wait)  # keeps the worker busy
    driver.delete_endpoint(NET, EP)
    assert driver.endpoints() == []  # Docker's view: gone
    assert "ovp" + EP[:12] in switch.ports  # the work is still queued
    gate.set()
    driver.delete_network(NET)  # waits for the network's queued deletions first
    assert switch.ports == {} and links.links == {} and switch.bridges == {}
    driver.flush()


def test_mac_without_ipv4_is_locally_administered() -> None:
    mac = mac_for(None)
    assert int(mac.split(":")[0], 16) & 0x02
    assert len(mac) == 17


# -- modes, VLANs, uplinks, options (issue: network modes) --------------------------------

V6 = Subnet(
    pool=ipaddress.ip_network("fd00:1::/64"), gateway=ipaddress.ip_interface("fd00:1::1/64")
)


def test_flat_mode_has_no_host_address_and_joins_the_external_gateway(
    driver: Driver, links: FakeLinks, firewall: FakeFirewall, switch: FakeSwitch
) -> None:
    create(driver, **{"ovs.mode": "flat", "ovs.bridge.uplink": "eth1"})
    driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.9/24"), ipv6=None, mac=None)
    assert links.assigned == {}
    assert firewall.networks == {}
    assert switch.bridges["ovsbr-aaaaaaaa"].uplink == "eth1"
    assert "eth1" in links.up
    assert driver.join(NET, EP).gateway == "10.1.0.1"


def test_routed_mode_has_gateway_and_no_masquerade(
    driver: Driver, links: FakeLinks, firewall: FakeFirewall
) -> None:
    create(driver, **{"ovs.mode": "routed"})
    net = firewall.networks[NET]
    assert net.mode.value == "routed"
    assert not net.masquerade
    assert links.assigned["ovsbr-aaaaaaaa"] == [SUBNET.gateway]


def test_vlan_networks_share_a_bridge_and_uplink(
    driver: Driver, switch: FakeSwitch, links: FakeLinks
) -> None:
    create(driver, **{"ovs.bridge.name": "br-phys", "ovs.vlan": "10", "ovs.bridge.uplink": "eth1"})
    create(driver, NET2, **{"ovs.bridge.name": "br-phys", "ovs.vlan": "20"})
    bridge = switch.bridges["br-phys"]
    assert bridge.trunks == [10, 20]
    assert bridge.gateway_ports == {"ovg" + NET[:12]: 10, "ovg" + NET2[:12]: 20}
    assert set(links.assigned) == {"ovg" + NET[:12], "ovg" + NET2[:12]}
    driver.create_endpoint(NET2, EP, ipv4=None, ipv6=None, mac=None)
    assert switch.port_columns["ovp" + EP[:12]]["tag"] == 20

    driver.delete_network(NET)
    assert bridge.trunks == [20]
    assert list(bridge.gateway_ports) == ["ovg" + NET2[:12]]
    driver.delete_network(NET2)
    assert "br-phys" not in switch.bridges


@pytest.mark.parametrize(
    ("first", "second"),
    [({}, {"ovs.vlan": "10"}), ({"ovs.vlan": "10"}, {}), ({"ovs.vlan": "10"}, {"ovs.vlan": "10"})],
)
def test_shared_bridge_needs_distinct_vlans(
    driver: Driver, switch: FakeSwitch, first: dict[str, str], second: dict[str, str]
) -> None:
    create(driver, **{"ovs.bridge.name": "br-s", **first})
    with pytest.raises(Conflict, match="distinct"):
        create(driver, NET2, **{"ovs.bridge.name": "br-s", **second})
    assert [n.network_id for n in switch.list_networks()] == [NET]


def test_uplink_conflicts(driver: Driver, switch: FakeSwitch) -> None:
    with pytest.raises(InvalidRequest, match="does not exist"):
        create(driver, **{"ovs.bridge.uplink": "nosuch0"})
    with pytest.raises(Conflict, match="default route"):
        create(driver, **{"ovs.bridge.uplink": "eth0"})
    switch.foreign_ports["eth1"] = "br-other"
    with pytest.raises(Conflict, match="already a port of OVS bridge br-other"):
        create(driver, **{"ovs.bridge.bind_interface": "eth1"})
    assert switch.bridges == {}


def test_second_network_cannot_bring_another_uplink(driver: Driver, links: FakeLinks) -> None:
    links.host_devices.add("eth2")
    create(driver, **{"ovs.bridge.name": "br-s", "ovs.vlan": "10", "ovs.bridge.uplink": "eth1"})
    with pytest.raises(Conflict, match="already has uplink eth1"):
        create(
            driver,
            NET2,
            **{"ovs.bridge.name": "br-s", "ovs.vlan": "11", "ovs.bridge.uplink": "eth2"},
        )


def test_icc_false_protects_ports(driver: Driver, switch: FakeSwitch) -> None:
    create(driver, **{"com.docker.network.bridge.enable_icc": "false"})
    driver.create_endpoint(NET, EP, ipv4=None, ipv6=None, mac=None)
    assert switch.port_columns["ovp" + EP[:12]]["protected"] is True


def test_port_security_can_be_turned_off(driver: Driver, flows: FakeFlows) -> None:
    create(driver, **{"ovs.port_security": "false"})
    driver.create_endpoint(NET, EP, ipv4=None, ipv6=None, mac=None)
    assert flows.endpoints == {}


def test_port_security_flows_by_default(driver: Driver, flows: FakeFlows) -> None:
    create(driver)
    driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.3/24"), ipv6=None, mac=None)
    assert set(flows.endpoints) == {EP}
    driver.delete_endpoint(NET, EP)
    assert flows.endpoints == {}


def test_iface_prefix_and_ipv6_gateway(driver: Driver, links: FakeLinks) -> None:
    driver.create_network(
        NET, {"com.docker.network.container_iface_prefix": "ovs"}, [SUBNET], [V6], internal=False
    )
    driver.create_endpoint(
        NET,
        EP,
        ipv4=IPv4Interface("10.1.0.4/24"),
        ipv6=ipaddress.IPv6Interface("fd00:1::4/64"),
        mac=None,
    )
    info = driver.join(NET, EP)
    assert (info.dst_prefix, info.gateway_ipv6) == ("ovs", "fd00:1::1")
    assert links.assigned["ovsbr-aaaaaaaa"] == [SUBNET.gateway, V6.gateway]


def test_publish_ports_and_revoke(
    driver: Driver, firewall: FakeFirewall, switch: FakeSwitch
) -> None:
    create(driver)
    driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.5/24"), ipv6=None, mac=None)
    driver.create_endpoint(NET, EP2, ipv4=IPv4Interface("10.1.0.6/24"), ipv6=None, mac=None)
    web = PortMapping("tcp", 80, 8080)
    driver.program_external(NET, EP, [web])
    assert firewall.published[EP].port_mappings == (web,)
    assert Endpoint.from_external_ids(switch.ports["ovp" + EP[:12]][1]).port_mappings == (web,)
    with pytest.raises(Conflict, match="8080/tcp is already published"):
        driver.program_external(NET, EP2, [PortMapping("tcp", 81, 8080)])
    driver.program_external(NET, EP2, [PortMapping("udp", 53, 8080)])  # other protocol: fine
    driver.revoke_external(NET, EP)
    assert EP not in firewall.published
    driver.delete_endpoint(NET, EP2)
    assert firewall.published == {}


def test_publishing_needs_an_explicit_host_port(driver: Driver) -> None:
    create(driver)
    driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.5/24"), ipv6=None, mac=None)
    with pytest.raises(InvalidRequest, match="explicit host port"):
        driver.program_external(NET, EP, [PortMapping("tcp", 80, 0)])


def test_host_binding_option_is_the_default_host_ip(driver: Driver, firewall: FakeFirewall) -> None:
    create(driver, **{"com.docker.network.bridge.host_binding_ipv4": "198.51.100.1"})
    driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.5/24"), ipv6=None, mac=None)
    driver.program_external(NET, EP, [PortMapping("tcp", 80, 8080)])
    assert str(firewall.published[EP].port_mappings[0].host_ip) == "198.51.100.1"


def test_empty_program_on_flat_network_is_fine_but_ports_are_refused(driver: Driver) -> None:
    create(driver, **{"ovs.mode": "flat"})
    driver.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.5/24"), ipv6=None, mac=None)
    driver.program_external(NET, EP, [])
    with pytest.raises(InvalidRequest, match="nat or routed"):
        driver.program_external(NET, EP, [PortMapping("tcp", 80, 8080)])
