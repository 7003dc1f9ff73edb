"""The remote IPAM driver's use cases: overlay pools and addresses, cluster-wide.

Docker asks for a pool (RequestPool, before CreateNetwork, without a network id), the gateway
and the addresses of the endpoints (RequestAddress, without an endpoint id). Every answer is a
reservation in the OVN northbound database, so two hosts never hand out the same address.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from docker_ovs_plugin.contract import ADDRESS_SPACE, DEFAULT_DRIVER, switch_name
from docker_ovs_plugin.service.errors import Conflict, InvalidRequest, NotFound
from docker_ovs_plugin.service.ports import Integration, Northbound, Pool

LOG = logging.getLogger(__name__)

REQUEST_ADDRESS_TYPE = "RequestAddressType"
GATEWAY_TYPE = "com.docker.network.gateway"
MAX_PREFIX = 30  # at least two host addresses: the gateway and one container


def _address(text: str, what: str) -> IPv4Address:
    try:
        ip = ipaddress.ip_interface(text).ip
    except ValueError:
        raise InvalidRequest(f"{what} {text!r} is not an IP address") from None
    if not isinstance(ip, IPv4Address):
        raise InvalidRequest(f"{what} {text}: overlay networks are IPv4 only for now")
    return ip


class Ipam:
    def __init__(
        self,
        nb: Northbound | None,
        integration: Integration | None,
        *,
        name: str = DEFAULT_DRIVER,
    ) -> None:
        self._nb = nb
        self._integration = integration
        self._name = name

    @property
    def address_space(self) -> str:
        return ADDRESS_SPACE

    def _cluster(self) -> tuple[Northbound, str]:
        if self._nb is None or self._integration is None:
            raise InvalidRequest(
                f"the {self._name} IPAM driver serves overlay networks (-o ovs.mode=overlay), "
                "which need the plugin started with --ovn-nb (the OVN northbound database)"
            )
        return self._nb, self._integration.chassis().system_id

    def _pool(self, nb: Northbound, pool_id: str) -> Pool:
        pool = nb.pool(pool_id)
        if pool is None:
            raise NotFound(f"overlay pool {pool_id} does not exist (any more) in OVN")
        return pool

    def request_pool(self, *, pool: str, sub_pool: str, v6: bool) -> tuple[str, str]:
        """The pool id and CIDR of the overlay subnet `pool`, created on first use."""
        nb, host = self._cluster()
        if v6:
            raise InvalidRequest(
                "overlay networks are IPv4 only for now: create them without --ipv6"
            )
        if not pool:
            raise InvalidRequest(
                "overlay networks need --subnet: one address space spans all hosts, so the "
                f"{self._name} IPAM driver does not pick subnets"
            )
        if sub_pool:
            raise InvalidRequest("--ip-range is not supported on overlay networks yet")
        try:
            subnet = IPv4Network(pool)
        except ValueError as e:
            raise InvalidRequest(f"--subnet {pool}: {e}") from None
        if subnet.prefixlen > MAX_PREFIX:
            raise InvalidRequest(f"--subnet {pool} is too small: use a /{MAX_PREFIX} or larger")
        known = nb.pool(switch_name(str(subnet)))
        if known is not None and host in known.networks:
            raise Conflict(
                f"overlay subnet {subnet} is already a network on this host: "
                "one network per subnet and host"
            )
        pool_id = nb.acquire_pool(subnet, host, self._name)
        LOG.info("pool %s (%s) in use by this host (%s)", pool_id, subnet, host)
        return pool_id, str(subnet)

    def release_pool(self, pool_id: str) -> None:
        nb, host = self._cluster()
        if nb.release_pool(pool_id, host):
            LOG.info("pool %s deleted: no host uses it", pool_id)

    def request_address(self, pool_id: str, address: str, options: Mapping[str, Any]) -> str:
        """An address of the pool as CIDR: the gateway, the one asked for, or the lowest free."""
        nb, host = self._cluster()
        pool = self._pool(nb, pool_id)
        wanted = _address(address, "address") if address else None
        if options.get(REQUEST_ADDRESS_TYPE) == GATEWAY_TYPE:
            ip = nb.gateway(pool_id, host, wanted)
        else:
            if wanted is not None and wanted == pool.gateway:
                raise Conflict(f"{wanted} is the gateway of overlay subnet {pool.subnet}")
            ip = nb.reserve(pool_id, host, wanted).address
        return f"{ip}/{pool.subnet.prefixlen}"

    def release_address(self, pool_id: str, address: str) -> None:
        nb, host = self._cluster()
        ip = _address(address, "address")
        if not nb.release(pool_id, ip, host):
            LOG.debug("release of %s in %s: not this host's reservation", ip, pool_id)
