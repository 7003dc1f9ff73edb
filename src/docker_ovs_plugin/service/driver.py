"""The driver's use cases: networks and endpoints on Open vSwitch.

Every operation is idempotent, takes the network's lock, and undoes what it did when a later step
fails, so a refused request leaves nothing behind. The in-memory maps are only a cache of what the
Switch stores; `restore()` rebuilds them at start.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface
from typing import Any

from docker_ovs_plugin.service.errors import Conflict, NotFound
from docker_ovs_plugin.service.locks import KeyedLocks
from docker_ovs_plugin.service.model import (
    NETWORK_ID_KEY,
    OWNER,
    OWNER_KEY,
    Endpoint,
    Network,
    Subnet,
)
from docker_ovs_plugin.service.naming import default_bridge_name
from docker_ovs_plugin.service.options import parse_network_options
from docker_ovs_plugin.service.ports import Firewall, Links, Switch

LOG = logging.getLogger(__name__)

CONTAINER_IF_PREFIX = "eth"
NETDEV = "netdev"


@dataclass(frozen=True)
class JoinInfo:
    src_name: str
    dst_prefix: str
    gateway: str | None
    gateway_ipv6: str | None
    disable_gateway_service: bool


def mac_for(ipv4: IPv4Interface | None) -> str:
    """A locally administered MAC; derived from the IPv4 address as Docker's bridge does."""
    tail = ipv4.ip.packed if ipv4 is not None else secrets.token_bytes(4)
    return ":".join(f"{b:02x}" for b in (0x02, 0x42, *tail))


def _undo(what: str, action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:
        LOG.exception("rollback: could not %s", what)


class Driver:
    def __init__(
        self,
        switch: Switch,
        links: Links,
        firewall: Firewall,
        *,
        datapath_type: str,
        lock_timeout: float = 60.0,
    ) -> None:
        self._switch = switch
        self._links = links
        self._firewall = firewall
        self._datapath_type = datapath_type
        self._locks = KeyedLocks(lock_timeout)
        self._cache_lock = threading.Lock()
        self._networks: dict[str, Network] = {}
        self._endpoints: dict[str, Endpoint] = {}

    # -- start -----------------------------------------------------------------------------

    def restore(self) -> None:
        """Rebuild the cache from OVSDB and put back addresses and rules a restart may lack."""
        networks = self._switch.list_networks()
        endpoints = self._switch.list_endpoints()
        with self._cache_lock:
            self._networks = {n.network_id: n for n in networks}
            self._endpoints = {e.endpoint_id: e for e in endpoints}
        for net in networks:
            try:
                self._plumb_network(net)
            except Exception:
                LOG.exception(
                    "could not restore network %s on bridge %s", net.network_id[:12], net.bridge
                )
        LOG.info("restored %d networks and %d endpoints from OVSDB", len(networks), len(endpoints))

    # -- queries ---------------------------------------------------------------------------

    def networks(self) -> list[Network]:
        with self._cache_lock:
            return list(self._networks.values())

    def endpoints(self) -> list[Endpoint]:
        with self._cache_lock:
            return list(self._endpoints.values())

    def _network(self, network_id: str) -> Network:
        with self._cache_lock:
            net = self._networks.get(network_id)
        if net is None:
            raise NotFound(f"network {network_id[:12]} is not an ovs network known to this plugin")
        return net

    def _endpoint(self, network_id: str, endpoint_id: str) -> Endpoint:
        with self._cache_lock:
            ep = self._endpoints.get(endpoint_id)
        if ep is None or ep.network_id != network_id:
            raise NotFound(
                f"endpoint {endpoint_id[:12]} does not exist on network {network_id[:12]}"
            )
        return ep

    # -- networks --------------------------------------------------------------------------

    def create_network(
        self,
        network_id: str,
        generic_options: Mapping[str, Any],
        ipv4: Sequence[Subnet],
        ipv6: Sequence[Subnet],
        *,
        internal: bool,
    ) -> None:
        opts, raw = parse_network_options(dict(generic_options))
        net = Network(
            network_id=network_id,
            bridge=opts.bridge_name or default_bridge_name(network_id),
            mtu=opts.mtu,
            internal=internal,
            ipv4=tuple(ipv4),
            ipv6=tuple(ipv6),
            options=raw,
        )
        with self._locks.hold(network_id):
            with self._cache_lock:
                existing = self._networks.get(network_id)
                users = [n for n in self._networks.values() if n.bridge == net.bridge]
            if existing is not None:
                if existing == net:
                    return  # a repeated create (swarm re-creates networks after a restart)
                raise Conflict(f"network {network_id[:12]} already exists with other settings")
            if users:
                raise Conflict(
                    f"bridge {net.bridge} is already used by network {users[0].network_id[:12]}"
                )
            self._check_bridge_free(net)
            try:
                self._switch.create_bridge(net, self._datapath_type)
                self._plumb_network(net)
            except Exception:
                _undo("remove firewall rules", lambda: self._firewall.remove_network(net))
                _undo("delete bridge", lambda: self._switch.delete_bridge(net.bridge))
                raise
            with self._cache_lock:
                self._networks[network_id] = net
        LOG.info("network %s created on bridge %s", network_id[:12], net.bridge)

    def _check_bridge_free(self, net: Network) -> None:
        ids = self._switch.bridge_external_ids(net.bridge)
        if ids is None:
            return
        if ids.get(OWNER_KEY) != OWNER:
            raise Conflict(
                f"bridge {net.bridge} already exists and is not managed by docker-ovs-plugin; "
                "choose another name with -o ovs.bridge.name"
            )
        raise Conflict(
            f"bridge {net.bridge} is left over from network "
            f"{ids.get(NETWORK_ID_KEY, '?')[:12]}; delete it or choose another name"
        )

    def _plumb_network(self, net: Network) -> None:
        """Addresses and rules of a network whose bridge exists (idempotent)."""
        self._links.configure_bridge_port(net.bridge, () if net.internal else net.gateways)
        if not net.internal:
            self._firewall.add_network(net)

    def delete_network(self, network_id: str) -> None:
        with self._locks.hold(network_id):
            with self._cache_lock:
                net = self._networks.get(network_id)
                leftovers = [e for e in self._endpoints.values() if e.network_id == network_id]
            if net is None:
                LOG.info("delete of unknown network %s: nothing to do", network_id[:12])
                return
            for ep in leftovers:  # Docker normally deletes endpoints first
                self._links.delete_link(ep.host_if)
            self._firewall.remove_network(net)
            self._switch.delete_bridge(net.bridge)
            with self._cache_lock:
                del self._networks[network_id]
                for ep in leftovers:
                    self._endpoints.pop(ep.endpoint_id, None)
        LOG.info("network %s deleted", network_id[:12])

    # -- endpoints -------------------------------------------------------------------------

    def create_endpoint(
        self,
        network_id: str,
        endpoint_id: str,
        *,
        ipv4: IPv4Interface | None,
        ipv6: IPv6Interface | None,
        mac: str | None,
    ) -> str | None:
        """Create the endpoint; return the MAC to report when Docker gave none."""
        with self._locks.hold(network_id):
            net = self._network(network_id)
            with self._cache_lock:
                existing = self._endpoints.get(endpoint_id)
            if existing is not None:
                if existing.network_id != network_id:
                    raise Conflict(f"endpoint {endpoint_id[:12]} exists on another network")
                return None if mac else existing.mac
            ep = Endpoint(
                endpoint_id=endpoint_id,
                network_id=network_id,
                mac=mac or mac_for(ipv4),
                ipv4=ipv4,
                ipv6=ipv6,
            )
            self._links.create_veth(
                ep.host_if,
                ep.container_if,
                mtu=net.mtu,
                peer_mac=ep.mac,
                # The userspace datapath does not complete partial checksums: TCP would break.
                peer_tx_checksum=self._datapath_type != NETDEV,
            )
            try:
                self._switch.add_port(net.bridge, ep)
            except Exception:
                _undo("delete port", lambda: self._switch.delete_port(net.bridge, ep.host_if))
                _undo("delete veth", lambda: self._links.delete_link(ep.host_if))
                raise
            with self._cache_lock:
                self._endpoints[endpoint_id] = ep
        LOG.info("endpoint %s created on network %s", endpoint_id[:12], network_id[:12])
        return None if mac else ep.mac

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        with self._locks.hold(network_id):
            with self._cache_lock:
                net = self._networks.get(network_id)
                ep = self._endpoints.get(endpoint_id)
            if ep is None:
                LOG.info("delete of unknown endpoint %s: nothing to do", endpoint_id[:12])
                return
            if net is not None:
                self._switch.delete_port(net.bridge, ep.host_if)
            self._links.delete_link(ep.host_if)
            with self._cache_lock:
                self._endpoints.pop(endpoint_id, None)
        LOG.info("endpoint %s deleted", endpoint_id[:12])

    def join(self, network_id: str, endpoint_id: str) -> JoinInfo:
        net = self._network(network_id)
        ep = self._endpoint(network_id, endpoint_id)
        gw4 = None if net.internal else net.gateway_for(ep.ipv4)
        gw6 = None if net.internal else net.gateway_for(ep.ipv6)
        return JoinInfo(
            src_name=ep.container_if,
            dst_prefix=CONTAINER_IF_PREFIX,
            gateway=str(gw4.ip) if gw4 else None,
            gateway_ipv6=str(gw6.ip) if gw6 else None,
            # An internal network has no way out; do not let Docker add docker_gwbridge.
            disable_gateway_service=net.internal,
        )

    def leave(self, network_id: str, endpoint_id: str) -> None:
        # Docker moves the interface back after Leave; deleting it here would break that.
        self._endpoint(network_id, endpoint_id)

    def endpoint_info(self, network_id: str, endpoint_id: str) -> dict[str, str]:
        ep = self._endpoint(network_id, endpoint_id)
        net = self._network(network_id)
        return {
            "bridge": net.bridge,
            "port": ep.host_if,
            "mac": ep.mac,
            **({"ipv4": str(ep.ipv4)} if ep.ipv4 else {}),
            **({"ipv6": str(ep.ipv6)} if ep.ipv6 else {}),
        }
