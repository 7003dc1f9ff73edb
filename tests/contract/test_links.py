"""Links: NetlinkLinks inside a private network namespace against FakeLinks.

The namespace is the test's own (tests/contract/netns.py): the real adapter's devices, addresses
and /proc/sys writes never reach the host's. It starts as the fake does: devices eth0 (which
carries the default route) and eth1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import pytest
from pyroute2 import IPRoute

from docker_ovs_plugin.adapters.netlink import NetlinkLinks
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import IPInterface
from docker_ovs_plugin.service.ports import Links
from unit.fakes import FakeLinks

from .conftest import IMPLEMENTATIONS
from .netns import PrivateNetns

T = TypeVar("T")
HOST, PEER = "ovp0c0ntract01", "ovc0c0ntract01"
GATEWAY_PORT = "ovsbr-links"
V4 = ipaddress.ip_interface("10.9.0.1/24")
V6 = ipaddress.ip_interface("fd00:9::1/64")
_IFF_UP = 0x1


class LinksWorld(Protocol):
    links: Links

    def add_device(self, name: str) -> None:
        """A device appears, as Open vSwitch makes one for an internal port."""

    def never_appears(self, name: str) -> None:
        """The device `name` will not appear (ovs-vswitchd away)."""

    def is_up(self, name: str) -> bool: ...


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeLinks()
        self.links: Links = self.fake

    def add_device(self, name: str) -> None:
        self.fake.host_devices.add(name)

    def never_appears(self, name: str) -> None:
        self.fake.fail_bridge_port = True

    def is_up(self, name: str) -> bool:
        return name in self.fake.up


class InNetns:
    """NetlinkLinks whose every call runs inside the namespace."""

    def __init__(self, ns: PrivateNetns, links: NetlinkLinks) -> None:
        self._ns, self._links = ns, links

    def _in(self, fn: Callable[[], T]) -> T:
        return self._ns.run(fn)

    def exists(self, name: str) -> bool:
        return self._in(lambda: self._links.exists(name))

    def names(self, prefixes: tuple[str, ...]) -> list[str]:
        return self._in(lambda: self._links.names(prefixes))

    def addresses(self, name: str) -> list[IPInterface]:
        return self._in(lambda: self._links.addresses(name))

    def default_route_interfaces(self) -> set[str]:
        return self._in(self._links.default_route_interfaces)

    def set_up(self, name: str) -> None:
        self._in(lambda: self._links.set_up(name))

    def create_veth(
        self, host: str, peer: str, *, mtu: int, peer_mac: str, peer_tx_checksum: bool
    ) -> None:
        self._in(
            lambda: self._links.create_veth(
                host, peer, mtu=mtu, peer_mac=peer_mac, peer_tx_checksum=peer_tx_checksum
            )
        )

    def delete_link(self, name: str) -> None:
        self._in(lambda: self._links.delete_link(name))

    def configure_bridge_port(self, name: str, addresses: Sequence[IPInterface]) -> None:
        self._in(lambda: self._links.configure_bridge_port(name, addresses))

    def mtu_of_address(self, address: str) -> int | None:
        return self._in(lambda: self._links.mtu_of_address(address))


def _add_device(name: str) -> None:
    # A veth end: this kernel has no dummy devices, and the peer (suffix "-p") is never asked.
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": f"{name}-p"})


class RealWorld:
    def __init__(self, ns: PrivateNetns) -> None:
        self.ns = ns
        self.links: Links = InNetns(ns, NetlinkLinks(wait_timeout=0.3))
        ns.run(self._host_devices)

    @staticmethod
    def _host_devices() -> None:
        for name in ("eth0", "eth1"):
            _add_device(name)
        with IPRoute() as ipr:
            (eth0,) = ipr.link_lookup(ifname="eth0")
            ipr.link("set", index=eth0, state="up")
            ipr.addr("add", index=eth0, address="192.0.2.2", prefixlen=24)
            ipr.route("add", dst="0.0.0.0/0", gateway="192.0.2.1")

    def add_device(self, name: str) -> None:
        self.ns.run(lambda: _add_device(name))

    def never_appears(self, name: str) -> None:
        pass  # nobody creates it

    def is_up(self, name: str) -> bool:
        def flags() -> Any:
            with IPRoute() as ipr:
                return ipr.link("get", ifname=name)[0]["flags"]

        return bool(self.ns.run(flags) & _IFF_UP)


@pytest.fixture(params=IMPLEMENTATIONS)
def world(request: pytest.FixtureRequest) -> LinksWorld:
    if request.param == "fake":
        return FakeWorld()
    return RealWorld(request.getfixturevalue("netns"))


def veth(world: LinksWorld) -> None:
    world.links.create_veth(
        HOST, PEER, mtu=1450, peer_mac="02:42:0a:09:00:02", peer_tx_checksum=False
    )


def test_the_host_devices_and_default_route(world: LinksWorld) -> None:
    links = world.links
    assert (links.exists("eth0"), links.exists("eth1"), links.exists("nope0")) == (
        True,
        True,
        False,
    )
    assert links.default_route_interfaces() == {"eth0"}
    assert links.names(("ovp", "ovc")) == []


def test_a_veth_pair_comes_with_its_host_end_up(world: LinksWorld) -> None:
    veth(world)
    assert world.links.exists(HOST) and world.links.exists(PEER)
    assert world.links.names(("ovp", "ovc")) == sorted([HOST, PEER])
    assert world.links.names(("ovc",)) == [PEER]
    assert (world.is_up(HOST), world.is_up(PEER)) == (True, False)


def test_creating_a_pair_again_replaces_it(world: LinksWorld) -> None:
    veth(world)
    veth(world)
    assert world.links.names(("ovp", "ovc")) == sorted([HOST, PEER])


def test_deleting_one_end_deletes_both(world: LinksWorld) -> None:
    veth(world)
    world.links.delete_link(HOST)
    assert world.links.names(("ovp", "ovc")) == []
    assert not world.links.exists(PEER)
    world.links.delete_link(HOST)  # gone already: fine
    world.links.delete_link(PEER)


def test_set_up(world: LinksWorld) -> None:
    world.links.set_up("eth1")
    assert world.is_up("eth1")
    with pytest.raises(BackendError):
        world.links.set_up("nope0")


def test_a_bridge_port_gets_its_addresses_and_comes_up(world: LinksWorld) -> None:
    links = world.links
    assert links.addresses(GATEWAY_PORT) == []
    world.add_device(GATEWAY_PORT)
    links.configure_bridge_port(GATEWAY_PORT, [V4, V6])
    links.configure_bridge_port(GATEWAY_PORT, [V4, V6])  # again: no duplicate, no error
    have = links.addresses(GATEWAY_PORT)
    assert {V4, V6} <= set(have) and len(have) == len(set(have))
    # The kernel adds the IPv6 link-local address of an up device; the fake does not.
    assert all(a.ip.is_link_local for a in set(have) - {V4, V6})
    assert world.is_up(GATEWAY_PORT)


def test_a_bridge_port_that_never_appears_fails(world: LinksWorld) -> None:
    world.never_appears(GATEWAY_PORT)
    with pytest.raises(BackendError):
        world.links.configure_bridge_port(GATEWAY_PORT, [V4])


def test_the_mtu_of_the_device_holding_an_address(world: LinksWorld) -> None:
    # What an overlay network's MTU derives from: the device of ovn-encap-ip.
    assert world.links.mtu_of_address("192.0.2.2") == 1500  # eth0's
    assert world.links.mtu_of_address("192.0.2.99") is None
