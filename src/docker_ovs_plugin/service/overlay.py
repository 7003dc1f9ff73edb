"""Overlay networks (-o ovs.mode=overlay): one subnet for all hosts, on OVN.

The cluster's intent lives in the OVN northbound database (Northbound): a pool per subnet, a
logical port per reserved address. This host's part: its Docker network recorded on the pool
(under its chassis system-id), and one veth per container whose host end is a port of the
integration bridge named after the logical port (iface-id). ovn-controller binds it and
programs br-int and the tunnels; the plugin writes no flows there.

As with bridge networks, every request takes the network's lock, undoes what it did when a
later step fails, and DeleteEndpoint leaves the port and veth to a background thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from ipaddress import IPv4Interface, IPv6Interface
from typing import Any

from docker_ovs_plugin.contract import ADDRESS_SPACE, DEFAULT_DRIVER
from docker_ovs_plugin.service.driver import NETDEV, JoinInfo, StaticRoute, mac_for
from docker_ovs_plugin.service.errors import BackendError, Conflict, InvalidRequest, undo
from docker_ovs_plugin.service.locks import KeyedLocks
from docker_ovs_plugin.service.model import (
    CorruptState,
    OverlayEndpoint,
    OverlayNetwork,
    PortMapping,
    Subnet,
    recorded_network_id,
)
from docker_ovs_plugin.service.options import parse_overlay_options
from docker_ovs_plugin.service.ports import Chassis, Integration, Links, Northbound
from docker_ovs_plugin.service.reaper import Reaper
from docker_ovs_plugin.service.store import Store

LOG = logging.getLogger(__name__)

# Bytes an encapsulation adds on the underlay (outer IPv4 + UDP + its header, + inner
# Ethernet). Measured on a 1500 underlay: the largest inner packet was 1442 with Geneve (OVN's
# options make its header 16 bytes longer than VXLAN's), 1450 with VXLAN.
ENCAP_OVERHEAD = {"geneve": 58, "vxlan": 50, "stt": 58}
UNKNOWN_ENCAP_OVERHEAD = 58
DEFAULT_UNDERLAY_MTU = 1500


def default_mtu(chassis: Chassis, links: Links) -> int:
    """The MTU of the device holding the tunnel address, less the largest overhead of the
    encapsulations this chassis uses; 1500 - overhead when that device is not found."""
    underlay = None
    if chassis.encap_ip is not None:
        underlay = links.mtu_of_address(chassis.encap_ip)
    if underlay is None:
        LOG.warning(
            "no device holds ovn-encap-ip %s; assuming an underlay MTU of %d",
            chassis.encap_ip,
            DEFAULT_UNDERLAY_MTU,
        )
        underlay = DEFAULT_UNDERLAY_MTU
    overhead = max(
        (ENCAP_OVERHEAD.get(t, UNKNOWN_ENCAP_OVERHEAD) for t in chassis.encap_types),
        default=ENCAP_OVERHEAD["geneve"],
    )
    return underlay - overhead


class Overlay:
    def __init__(
        self,
        nb: Northbound,
        integration: Integration,
        links: Links,
        *,
        datapath_type: str,
        join_timeout: float,
        name: str = DEFAULT_DRIVER,
        lock_timeout: float = 60.0,
        reaper: Reaper | None = None,
    ) -> None:
        self._nb = nb
        self._integration = integration
        self._links = links
        self._datapath_type = datapath_type
        self._join_timeout = join_timeout
        self._name = name
        self._locks = KeyedLocks(lock_timeout)
        self._reaper = reaper  # None: deletions happen inside the request (tests)
        self._store: Store[OverlayNetwork, OverlayEndpoint] = Store()
        # Called in DeleteNetwork before this host's record goes (network id, pool id): the
        # network sync makes it a removal everywhere, or this host's leaving it.
        self.before_delete: Callable[[str, str], None] | None = None
        self._loaded = False  # load() has run: until then this host's networks are unknown

    # -- start -----------------------------------------------------------------------------

    def load(self) -> tuple[list[OverlayNetwork], list[OverlayEndpoint]]:
        """This host's overlay networks (pools with its record, in NB) and endpoints (its
        integration bridge's Interface rows), changing nothing."""
        chassis = self._integration.chassis()
        networks = []
        for pool in self._nb.pools():
            record = pool.networks.get(chassis.system_id)
            if record is None:
                continue
            try:
                net = OverlayNetwork.from_json(
                    record,
                    pool_id=pool.pool_id,
                    subnet=pool.subnet,
                    gateway=pool.gateway,
                    bridge=chassis.bridge,
                    driver=self._name,
                )
            except CorruptState:
                LOG.exception("ignoring this host's network on %s", pool.pool_id)
                continue
            networks.append(net)
        mine = {n.network_id for n in networks}
        endpoints = []
        for ids in self._integration.list_endpoints():
            try:
                ep = OverlayEndpoint.from_external_ids(ids)
            except CorruptState:
                LOG.exception("ignoring an overlay interface")
                continue
            if ep.driver == self._name and ep.network_id in mine:
                endpoints.append(ep)
        self._store.replace_all(networks, endpoints)
        self._loaded = True
        return networks, endpoints

    @property
    def loaded(self) -> bool:
        return self._loaded

    def check_ready(self) -> None:
        """BackendError saying why this host's overlay networks are not known yet."""
        if not self._loaded:
            self._nb.pools()  # not connected: the northbound link says so, with its remotes
            raise BackendError("the overlay networks are still being loaded; try again")

    # -- queries ---------------------------------------------------------------------------

    def has_network(self, network_id: str) -> bool:
        return self._store.get_network(network_id) is not None

    def networks(self) -> list[OverlayNetwork]:
        return self._store.networks()

    def endpoints(self) -> list[OverlayEndpoint]:
        return self._store.endpoints()

    def _network(self, network_id: str) -> OverlayNetwork:
        return self._store.require_network(network_id, "an overlay network of this plugin")

    def _endpoint(self, network_id: str, endpoint_id: str) -> OverlayEndpoint:
        return self._store.require_endpoint(network_id, endpoint_id)

    @contextmanager
    def _hold(self, network_id: str) -> Iterator[None]:
        with self._locks.hold(network_id, f"network {network_id[:12]}"):
            yield

    # -- networks --------------------------------------------------------------------------

    def create_network(
        self,
        network_id: str,
        generic_options: Mapping[str, Any],
        ipv4: Sequence[Subnet],
        ipv6: Sequence[Subnet],
        *,
        internal: bool,
        address_space: str,
    ) -> None:
        opts, raw = parse_overlay_options(dict(generic_options))
        if ipv6:
            raise InvalidRequest("overlay networks are IPv4 only for now: leave out --ipv6")
        if internal:
            raise InvalidRequest("--internal overlay networks are not supported yet")
        ours = f"overlay networks need --ipam-driver {self._name} (and --subnet)"
        if address_space != ADDRESS_SPACE or len(ipv4) != 1:
            raise InvalidRequest(ours)
        chassis = self._integration.chassis()
        pool = next(
            (p for p in self._nb.pools() if p.subnet == ipv4[0].pool),
            None,
        )
        if pool is None or chassis.system_id not in pool.pool_hosts:
            raise InvalidRequest(ours)
        net = OverlayNetwork(
            network_id=network_id,
            pool_id=pool.pool_id,
            subnet=pool.subnet,
            gateway=pool.gateway,
            bridge=chassis.bridge,
            mtu=opts.mtu or default_mtu(chassis, self._links),
            port_security=opts.port_security,
            iface_prefix=opts.iface_prefix,
            driver=self._name,
            options=raw,
            router=opts.router,
        )
        with self._hold(network_id):
            existing = self._store.get_network(network_id)
            if existing is not None:
                if existing == net:
                    return
                raise Conflict(f"network {network_id[:12]} already exists with other settings")
            other = pool.networks.get(chassis.system_id)
            # An unreadable record is overwritten; another network's is not.
            if other is not None and recorded_network_id(other) not in (None, network_id):
                raise Conflict(
                    f"overlay subnet {pool.subnet} is already a network on this host; "
                    "one network per subnet and host"
                )
            if net.router is not None:
                # First, so a refusal (joined to another router) leaves nothing behind;
                # every host's CreateNetwork does it, the first one joins.
                gateway = pool.gateway
                if gateway is None:
                    raise InvalidRequest(
                        f"a routed overlay network needs a gateway ({pool.subnet})"
                    )
                self._nb.join_router(
                    pool.pool_id, net.router, mac_for(IPv4Interface(f"{gateway}/32"))
                )
            self._nb.set_host_network(pool.pool_id, chassis.system_id, net.to_json())
            self._store.put_network(net)
        LOG.info(
            "overlay network %s on %s (subnet %s, MTU %d)",
            network_id[:12],
            pool.pool_id,
            pool.subnet,
            net.mtu,
        )

    def delete_network(self, network_id: str, *, by_docker: bool = True) -> None:
        """`by_docker`: Docker's DeleteNetwork (a user's `docker network rm`), which the network
        sync makes a removal everywhere; the reconciler and the fence only forget this host's
        part (the sync then creates the network again where it is still in the cluster)."""
        if self._reaper is not None and not self._reaper.flush(network_id):
            LOG.warning("deletions of network %s still queued", network_id[:12])
        net = self._store.get_network(network_id)
        if net is None:
            return
        chassis = self._integration.chassis()
        with self._hold(network_id):
            if by_docker and self.before_delete is not None:
                self.before_delete(network_id, net.pool_id)
            for ep in self._store.endpoints():
                if ep.network_id == network_id:  # Docker normally deletes endpoints first
                    self._remove_endpoint(net, ep, chassis)
            self._nb.set_host_network(net.pool_id, chassis.system_id, None)
            self._store.remove_network(network_id)
        LOG.info("overlay network %s deleted on this host", network_id[:12])

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
        """Bind the address's reservation to a new port; return the MAC when Docker gave none."""
        chassis = self._integration.chassis()
        with self._hold(network_id):
            net = self._network(network_id)
            existing = self._store.get_endpoint(endpoint_id)
            if existing is not None:
                if existing.network_id != network_id:
                    raise Conflict(f"endpoint {endpoint_id[:12]} exists on another network")
                return None if mac else existing.mac
            if ipv4 is None or ipv4.ip not in net.subnet:
                raise InvalidRequest(
                    f"an overlay endpoint needs an IPv4 address of {net.subnet} from the "
                    f"{self._name} IPAM driver"
                )
            if ipv6 is not None:
                raise InvalidRequest("overlay networks are IPv4 only for now")
            ep = OverlayEndpoint(
                endpoint_id=endpoint_id,
                network_id=network_id,
                pool_id=net.pool_id,
                mac=mac or mac_for(ipv4),
                ipv4=ipv4,
                driver=self._name,
            )
            self._nb.bind(
                net.pool_id,
                ipv4.ip,
                host=chassis.system_id,
                endpoint_id=endpoint_id,
                mac=ep.mac,
                port_security=net.port_security,
            )
            try:
                datapath = chassis.datapath_type or self._datapath_type
                self._links.create_veth(
                    ep.host_if,
                    ep.container_if,
                    mtu=net.mtu,
                    peer_mac=ep.mac,
                    # The userspace datapath does not complete partial checksums: TCP would break.
                    peer_tx_checksum=datapath != NETDEV,
                )
                self._integration.add_port(net.bridge, ep.host_if, ep.to_external_ids())
            except Exception:
                undo("delete port", lambda: self._integration.delete_port(net.bridge, ep.host_if))
                undo("delete veth", lambda: self._links.delete_link(ep.host_if))
                undo(
                    "unbind the logical port",
                    lambda: self._nb.unbind(net.pool_id, ipv4.ip, chassis.system_id, endpoint_id),
                )
                raise
            self._store.put_endpoint(ep)
        LOG.info("overlay endpoint %s is logical port %s", endpoint_id[:12], ep.logical_port)
        return None if mac else ep.mac

    def _remove_endpoint(self, net: OverlayNetwork, ep: OverlayEndpoint, chassis: Chassis) -> None:
        self._nb.unbind(ep.pool_id, ep.ipv4.ip, chassis.system_id, ep.endpoint_id)
        self._integration.delete_port(net.bridge, ep.host_if)
        self._links.delete_link(ep.host_if)
        self._store.remove_endpoint_if_current(ep)

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        chassis = self._integration.chassis()
        with self._hold(network_id):
            net = self._store.get_network(network_id)
            ep = self._store.get_endpoint(endpoint_id)
            if net is None or ep is None:
                LOG.info("delete of unknown endpoint %s: nothing to do", endpoint_id[:12])
                return
            if self._reaper is None:
                self._remove_endpoint(net, ep, chassis)
                return
            # In the request: Docker's ReleaseAddress comes next and must find a plain
            # reservation. The port and veth are only work to finish.
            self._nb.unbind(ep.pool_id, ep.ipv4.ip, chassis.system_id, ep.endpoint_id)
            self._store.remove_endpoint(endpoint_id)
        self._reaper.submit(
            network_id,
            f"deletion of overlay endpoint {endpoint_id[:12]}",
            lambda: self._reap(net, ep),
        )

    def _reap(self, net: OverlayNetwork, ep: OverlayEndpoint) -> None:
        self._integration.delete_port(net.bridge, ep.host_if)
        self._links.delete_link(ep.host_if)
        LOG.info("overlay endpoint %s deleted", ep.endpoint_id[:12])

    def join(self, network_id: str, endpoint_id: str) -> JoinInfo:
        net = self._network(network_id)
        ep = self._endpoint(network_id, endpoint_id)
        # Bounded: Docker waits forever on a plugin, and ovn-controller may be down.
        if not self._integration.wait_installed(ep.host_if, self._join_timeout):
            raise BackendError(
                f"ovn-controller did not claim port {ep.host_if} (logical port "
                f"{ep.logical_port}) within {self._join_timeout:g} s: is ovn-controller running "
                "and connected to the southbound DB?"
            )
        # No gateway, gateway service on: Docker adds docker_gwbridge on this host for the
        # way out and -p, as it does for its own overlay networks. A router's other subnets
        # are reached through this network's gateway, the router's address on it.
        routes: tuple[StaticRoute, ...] = ()
        if net.router is not None and net.gateway is not None:
            routes = tuple(
                StaticRoute(str(subnet), str(net.gateway))
                for subnet in self._nb.routed_subnets(net.pool_id)
            )
        return JoinInfo(
            src_name=ep.container_if,
            dst_prefix=net.iface_prefix,
            gateway=None,
            gateway_ipv6=None,
            disable_gateway_service=False,
            static_routes=routes,
        )

    def leave(self, network_id: str, endpoint_id: str) -> None:
        self._endpoint(network_id, endpoint_id)

    def endpoint_info(self, network_id: str, endpoint_id: str) -> dict[str, Any]:
        net = self._network(network_id)
        ep = self._endpoint(network_id, endpoint_id)
        return {
            "bridge": net.bridge,
            "port": ep.host_if,
            "logical_port": ep.logical_port,
            "mac": ep.mac,
            "ipv4": str(ep.ipv4),
        }

    def program_external(
        self, network_id: str, endpoint_id: str, mappings: Sequence[PortMapping]
    ) -> None:
        # Published ports go through docker_gwbridge, which Docker programs itself.
        self._endpoint(network_id, endpoint_id)

    def revoke_external(self, network_id: str, endpoint_id: str) -> None:
        self._endpoint(network_id, endpoint_id)

    def flush(self, timeout: float = 30.0) -> None:
        if self._reaper is not None:
            self._reaper.stop(timeout)
