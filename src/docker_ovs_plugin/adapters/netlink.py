"""Kernel network devices through netlink (pyroute2) and the ethtool ioctl.

A fresh IPRoute per operation: pyroute2 0.9 binds a socket to the calling thread's event loop, and
the HTTP server runs each request on its own thread. Opening one costs about a millisecond.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, NetlinkError
from pyroute2.ethtool.ioctl import IoctlEthtool

from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import IPInterface

LOG = logging.getLogger(__name__)

_POLL_INTERVAL = 0.02
_IFA_F_NODAD = 0x02
_IFF_UP = 0x1
_IFF_NOARP = 0x80
_MAIN = 254  # the main routing table


@contextmanager
def _iproute(what: str) -> Iterator[Any]:
    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as e:
        raise BackendError(f"{what}: the kernel refused ({e.args[-1]})") from e
    except OSError as e:
        raise BackendError(f"{what}: {e}") from e


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _delete(ipr: Any, name: str) -> None:
    index = _index(ipr, name)
    if index is None:
        return
    try:
        ipr.link("del", index=index)
    except NetlinkError as e:
        if e.code != errno.ENODEV:  # gone meanwhile: what we wanted
            raise


class NetlinkLinks:
    def __init__(self, wait_timeout: float) -> None:
        self._wait_timeout = wait_timeout

    def exists(self, name: str) -> bool:
        with _iproute(f"looking up {name}") as ipr:
            return _index(ipr, name) is not None

    def names(self, prefixes: tuple[str, ...]) -> list[str]:
        with _iproute("listing devices") as ipr:
            found = (str(link.get("IFLA_IFNAME")) for link in ipr.link("dump"))
            return sorted(n for n in found if n.startswith(prefixes))

    def addresses(self, name: str) -> list[IPInterface]:
        with _iproute(f"reading the addresses of {name}") as ipr:
            index = _index(ipr, name)
            if index is None:
                return []
            return [
                ipaddress.ip_interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                for a in ipr.addr("dump", index=index)
            ]

    def default_route_interfaces(self) -> set[str]:
        with _iproute("reading the routing table") as ipr:
            oifs: set[int] = set()
            for family in (socket.AF_INET, socket.AF_INET6):
                for route in ipr.route("dump", family=family):
                    if route["dst_len"] != 0 or route.get("RTA_TABLE", route["table"]) != _MAIN:
                        continue
                    if route.get("RTA_OIF") is not None:
                        oifs.add(int(route.get("RTA_OIF")))
                    for hop in route.get("RTA_MULTIPATH") or []:
                        oifs.add(int(hop["oif"]))
            names = set()
            for index in oifs:
                links = ipr.link("get", index=index)
                names.add(str(links[0].get("IFLA_IFNAME")))
            return names

    def set_up(self, name: str) -> None:
        with _iproute(f"bringing {name} up") as ipr:
            index = _index(ipr, name)
            if index is None:
                raise BackendError(f"interface {name} does not exist")
            ipr.link("set", index=index, state="up")

    def create_veth(
        self, host: str, peer: str, *, mtu: int, peer_mac: str, peer_tx_checksum: bool
    ) -> None:
        with _iproute(f"creating veth pair {host}/{peer}") as ipr:
            # A plugin killed mid-request may have left the pair; names are ours alone.
            _delete(ipr, host)
            _delete(ipr, peer)
            ipr.link(
                "add",
                ifname=host,
                kind="veth",
                mtu=mtu,
                peer={"ifname": peer, "mtu": mtu, "address": peer_mac},
            )
            if not peer_tx_checksum:
                _set_tx_checksum(peer, enabled=False)
            index = _index(ipr, host)
            if index is None:
                raise BackendError(f"veth {host} vanished right after it was created")
            # The host end is only a switch port. On the userspace datapath the kernel still
            # sees its frames: with ARP on, it would answer the container's ARP for the
            # gateway with this veth's MAC, and routed traffic would enter the host here,
            # past the rules written for the gateway port.
            _disable_ipv6(host)
            ipr.link("set", index=index, flags=_IFF_NOARP | _IFF_UP, change=_IFF_NOARP | _IFF_UP)

    def mtu_of_address(self, address: str) -> int | None:
        with _iproute(f"finding the device of {address}") as ipr:
            for a in ipr.addr("dump"):
                if a.get("IFA_ADDRESS") == address or a.get("IFA_LOCAL") == address:
                    links = ipr.link("get", index=a["index"])
                    return int(links[0].get("IFLA_MTU"))
            return None

    def delete_link(self, name: str) -> None:
        with _iproute(f"deleting {name}") as ipr:
            _delete(ipr, name)

    def configure_bridge_port(self, name: str, addresses: Sequence[IPInterface]) -> None:
        with _iproute(f"configuring bridge port {name}") as ipr:
            # ovs-vswitchd creates the internal device asynchronously.
            deadline = time.monotonic() + self._wait_timeout
            while (index := _index(ipr, name)) is None:
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"Open vSwitch did not create device {name} within "
                        f"{self._wait_timeout:.0f}s (is ovs-vswitchd running?)"
                    )
                time.sleep(_POLL_INTERVAL)
            for address in addresses:
                try:
                    ipr.addr(
                        "add",
                        index=index,
                        address=str(address.ip),
                        prefixlen=address.network.prefixlen,
                        # An IPv6 gateway must answer at once, not after duplicate detection.
                        flags=_IFA_F_NODAD if address.version == 6 else 0,
                    )
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise
            if any(a.version == 4 for a in addresses):
                _allow_loopback_source(name)
            ipr.link("set", index=index, state="up")


def _allow_loopback_source(name: str) -> None:
    """route_localnet: packets the host sends from 127.0.0.1 to a published port, DNATed to a
    container, may leave through this port (the firewall masquerades them and drops packets
    for 127.0.0.0/8 coming in from the containers). Best effort: without it only
    `localhost:PORT` does not reach published ports."""
    path = Path("/proc/sys/net/ipv4/conf") / name / "route_localnet"
    try:
        path.write_text("1\n")
    except OSError as e:
        LOG.warning("published ports will not answer on localhost via %s: %s", name, e)


def _disable_ipv6(name: str) -> None:
    """Best effort: without it the port only gets a link-local address it never uses (the
    gateway's IPv6 address is not on it, so the kernel answers no neighbour solicitation
    there). In a container /proc/sys may be read-only."""
    path = Path("/proc/sys/net/ipv6/conf") / name / "disable_ipv6"
    try:
        path.write_text("1\n")
    except OSError as e:
        LOG.debug("IPv6 stays on %s: %s", name, e)


def _set_tx_checksum(name: str, *, enabled: bool) -> None:
    ethtool = IoctlEthtool(name)
    try:
        ethtool.set_offload_flag("tx-checksumming", int(enabled))
    except OSError as e:
        raise BackendError(f"cannot change TX checksum offload of {name}: {e}") from e
    finally:
        ethtool.close()
