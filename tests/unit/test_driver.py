"""The driver's use cases against in-memory adapters: outcomes, rollback, restore."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Interface

import pytest

from docker_ovs_plugin.service.driver import Driver, mac_for
from docker_ovs_plugin.service.errors import BackendError, Conflict, InvalidRequest, NotFound
from docker_ovs_plugin.service.model import Subnet

from .fakes import FakeFirewall, FakeLinks, FakeSwitch

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
def driver(switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall) -> Driver:
    return Driver(switch, links, firewall, datapath_type="netdev")


def create(driver: Driver, net: str = NET, **opts: str) -> None:
    driver.create_network(net, opts, [SUBNET], [], internal=False)


def test_create_network_makes_bridge_address_and_rules(
    driver: Driver, switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall
) -> None:
    create(driver)
    assert switch.datapaths == {"ovsbr-aaaaaaaa": "netdev"}
    assert links.addresses["ovsbr-aaaaaaaa"] == [SUBNET.gateway]
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
    switch.bridges["br-ex"] = {}
    with pytest.raises(Conflict, match="not managed"):
        create(driver, **{"ovs.bridge.name": "br-ex"})
    assert switch.bridges == {"br-ex": {}}


def test_two_networks_cannot_share_a_bridge(driver: Driver) -> None:
    create(driver, **{"ovs.bridge.name": "br-x"})
    with pytest.raises(Conflict, match="already used"):
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
    assert links.addresses["ovsbr-aaaaaaaa"] == []
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
    switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall
) -> None:
    driver = Driver(switch, links, firewall, datapath_type="system")
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
    driver: Driver, switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall
) -> None:
    create(driver)
    driver.create_endpoint(NET, EP, ipv4=None, ipv6=None, mac=None)
    driver.delete_network(NET)
    assert (switch.bridges, switch.ports, links.links, firewall.networks) == ({}, {}, {}, {})
    driver.delete_network(NET)  # idempotent


def test_restore_rebuilds_cache_and_plumbing(
    switch: FakeSwitch, links: FakeLinks, firewall: FakeFirewall
) -> None:
    first = Driver(switch, links, firewall, datapath_type="netdev")
    create(first)
    first.create_endpoint(NET, EP, ipv4=IPv4Interface("10.1.0.7/24"), ipv6=None, mac=None)
    links.addresses.clear()
    firewall.networks.clear()

    second = Driver(switch, links, firewall, datapath_type="netdev")
    second.restore()
    assert [n.network_id for n in second.networks()] == [NET]
    assert second.join(NET, EP).gateway == "10.1.0.1"
    assert links.addresses["ovsbr-aaaaaaaa"] == [SUBNET.gateway]
    assert set(firewall.networks) == {NET}
    second.delete_endpoint(NET, EP)
    assert switch.ports == {}


def test_mac_without_ipv4_is_locally_administered() -> None:
    mac = mac_for(None)
    assert int(mac.split(":")[0], 16) & 0x02
    assert len(mac) == 17
