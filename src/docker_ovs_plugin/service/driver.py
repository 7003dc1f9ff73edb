"""The driver's use cases: networks and endpoints on Open vSwitch.

Every operation is idempotent, takes the network's lock (and the bridge's, for networks that may
share one), and undoes what it did when a later step fails, so a refused request leaves nothing
behind. The Store is only a cache of what the Switch records; `load()` rebuilds it.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface
from typing import Any

from docker_ovs_plugin.contract import DEFAULT_DRIVER, default_bridge_name
from docker_ovs_plugin.service.errors import BackendError, Conflict, InvalidRequest, undo
from docker_ovs_plugin.service.locks import KeyedLocks
from docker_ovs_plugin.service.model import Endpoint, Network, PortMapping, Subnet
from docker_ovs_plugin.service.options import parse_network_options
from docker_ovs_plugin.service.ports import Firewall, Flows, Links, Switch
from docker_ovs_plugin.service.reaper import Reaper
from docker_ovs_plugin.service.store import Store

LOG = logging.getLogger(__name__)

NETDEV = "netdev"


@dataclass(frozen=True)
class StaticRoute:
    """A route Docker adds in the container (Join's StaticRoutes)."""

    destination: str  # CIDR
    next_hop: str


@dataclass(frozen=True)
class JoinInfo:
    src_name: str
    dst_prefix: str
    gateway: str | None
    gateway_ipv6: str | None
    disable_gateway_service: bool
    static_routes: tuple[StaticRoute, ...] = ()


def mac_for(ipv4: IPv4Interface | None) -> str:
    """A locally administered MAC; derived from the IPv4 address as Docker's bridge does."""
    tail = ipv4.ip.packed if ipv4 is not None else secrets.token_bytes(4)
    return ":".join(f"{b:02x}" for b in (0x02, 0x42, *tail))


class Driver:
    def __init__(
        self,
        switch: Switch,
        links: Links,
        firewall: Firewall,
        flows: Flows,
        *,
        datapath_type: str,
        name: str = DEFAULT_DRIVER,
        lock_timeout: float = 60.0,
        reaper: Reaper | None = None,
    ) -> None:
        self._name = name
        # None: deletions happen inside the request (tests, doctor).
        self._reaper = reaper
        self._switch = switch
        self._links = links
        self._firewall = firewall
        self._flows = flows
        self._datapath_type = datapath_type
        self._locks = KeyedLocks(lock_timeout)
        self._store: Store[Network, Endpoint] = Store()

    # -- start -----------------------------------------------------------------------------

    def load(self) -> tuple[list[Network], list[Endpoint]]:
        """Rebuild the cache from OVSDB, changing nothing. (The reconciler then puts back what
        a restart lost; the data path never waits for the plugin.)"""
        networks = [n for n in self._switch.list_networks() if n.driver == self._name]
        mine = {n.network_id for n in networks}
        endpoints = [e for e in self._switch.list_endpoints() if e.network_id in mine]
        self._store.replace_all(networks, endpoints)
        return networks, endpoints

    # -- queries ---------------------------------------------------------------------------

    @property
    def datapath_type(self) -> str:
        return self._datapath_type

    @property
    def name(self) -> str:
        return self._name

    def networks(self) -> list[Network]:
        return self._store.networks()

    def endpoints(self) -> list[Endpoint]:
        return self._store.endpoints()

    def _network(self, network_id: str) -> Network:
        return self._store.require_network(network_id, "an ovs network known to this plugin")

    def _endpoint(self, network_id: str, endpoint_id: str) -> Endpoint:
        return self._store.require_endpoint(network_id, endpoint_id)

    @contextmanager
    def _hold(self, network_id: str, bridge: str | None = None) -> Iterator[None]:
        # Always network, then bridge: one order, no deadlock.
        with self._locks.hold(network_id, f"network {network_id[:12]}"):
            if bridge is None:
                yield
                return
            with self._locks.hold("bridge:" + bridge, f"bridge {bridge}"):
                yield

    def repair_network(self, network_id: str) -> None:
        """Put back the network's bridge and ports if someone deleted them, then its addresses
        and rules (which ovs-vswitchd loses when it restarts)."""
        known = self._store.get_network(network_id)
        if known is None:
            return
        with self._hold(network_id, known.bridge):
            view = self._store.view(network_id, known.bridge)
            if view is None:
                return
            net = view.network
            if not self.has_bridge_record(net):
                LOG.warning(
                    "bridge %s of network %s vanished; recreating it", net.bridge, network_id[:12]
                )
                self._switch.add_network(net, self._datapath_type, view.peers)
                for ep in view.endpoints:
                    if self._links.exists(ep.host_if):
                        self._switch.add_port(net, ep)
                        # The flows went with the bridge: without them the port would run
                        # without port security until the next pass.
                        self._plumb_endpoint(net, ep)
            self._plumb_network(net)

    def has_bridge_record(self, net: Network) -> bool:
        """Whether OVSDB still has the network's bridge and its record on it."""
        state = self._switch.bridge_state(net.bridge)
        return state is not None and any(n.network_id == net.network_id for n in state.networks)

    def repair_endpoint(self, network_id: str, endpoint_id: str) -> None:
        """Put back the endpoint's flows and published ports."""
        with self._hold(network_id):
            net, ep = self._store.network_and_endpoint(network_id, endpoint_id)
            if net is not None and ep is not None:
                self._plumb_endpoint(net, ep)

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
            driver=self._name,
            mode=opts.mode,
            internal=internal,
            vlan=opts.vlan,
            uplink=opts.uplink,
            icc=opts.icc,
            masquerade=opts.masquerade,
            port_security=opts.port_security,
            host_binding_ipv4=opts.host_binding_ipv4,
            iface_prefix=opts.iface_prefix,
            ipv4=tuple(ipv4),
            ipv6=tuple(ipv6),
            options=raw,
        )
        if net.host_gateway and ipv4 and not any(s.gateway for s in ipv4):
            raise InvalidRequest(
                f"{net.mode} mode needs a gateway address; give --gateway or use ovs.mode=flat"
            )
        with self._hold(network_id, net.bridge):
            existing = self._store.get_network(network_id)
            if existing is not None:
                if existing == net:
                    return  # a repeated create (swarm re-creates networks after a restart)
                raise Conflict(f"network {network_id[:12]} already exists with other settings")
            peers = self._check_bridge(net)
            try:
                self._switch.add_network(net, self._datapath_type, peers)
                self._plumb_network(net)
            except Exception:
                undo("remove firewall rules", lambda: self._firewall.remove_network(net))
                undo("remove from the bridge", lambda: self._switch.remove_network(net, peers))
                raise
            self._store.put_network(net)
        LOG.info(
            "network %s created on bridge %s (mode %s%s)",
            network_id[:12],
            net.bridge,
            net.mode,
            f", vlan {net.vlan}" if net.vlan else "",
        )

    def _check_bridge(self, net: Network) -> list[Network]:
        """Refuse what cannot share the bridge or the uplink; return the networks already on it."""
        state = self._switch.bridge_state(net.bridge)
        if state is not None and not state.owned:
            raise Conflict(
                f"bridge {net.bridge} already exists and is not managed by docker-ovs-plugin; "
                "choose another name with -o ovs.bridge.name"
            )
        peers = state.networks if state else []
        for peer in peers:
            if net.vlan is None or peer.vlan is None or net.vlan == peer.vlan:
                raise Conflict(
                    f"bridge {net.bridge} already carries network {peer.network_id[:12]}"
                    f"{f' (vlan {peer.vlan})' if peer.vlan else ''}; networks share a bridge only "
                    "with distinct -o ovs.vlan values"
                )
        bridge_uplink = state.uplink if state else None
        if net.uplink is None:
            return peers
        if bridge_uplink is not None:
            if bridge_uplink != net.uplink:
                raise Conflict(f"bridge {net.bridge} already has uplink {bridge_uplink}")
            return peers
        if not self._links.exists(net.uplink):
            raise InvalidRequest(f"uplink interface {net.uplink} does not exist on this host")
        holder = self._switch.port_bridge(net.uplink)
        if holder is not None:
            raise Conflict(f"uplink {net.uplink} is already a port of OVS bridge {holder}")
        if net.uplink in self._links.default_route_interfaces():
            raise Conflict(
                f"uplink {net.uplink} carries this host's default route; attaching it to a "
                "bridge would cut the host off. Move the host's address to the bridge first, or "
                "use another interface"
            )
        return peers

    def _plumb_network(self, net: Network) -> None:
        """Addresses and rules of a network whose OVS part exists (idempotent)."""
        if net.host_gateway:
            # Rules first: they drop what the port's route_localnet would let in.
            self._firewall.add_network(net)
            self._links.configure_bridge_port(net.gateway_port, net.gateways)
        if net.uplink:
            self._links.set_up(net.uplink)

    def delete_network(self, network_id: str) -> None:
        if self._reaper is not None and not self._reaper.flush(network_id):
            LOG.warning("deletions of network %s still queued", network_id[:12])
        known = self._store.get_network(network_id)
        if known is None:
            LOG.info("delete of unknown network %s: nothing to do", network_id[:12])
            return
        with self._hold(network_id, known.bridge):
            view = self._store.view(network_id, known.bridge)
            if view is None:
                return
            net = view.network
            for ep in view.endpoints:  # Docker normally deletes endpoints first
                self._remove_endpoint(net, ep)
            self._firewall.remove_network(net)
            self._switch.remove_network(net, view.peers)
            self._store.remove_network(network_id)
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
        with self._hold(network_id):
            net = self._network(network_id)
            existing = self._store.get_endpoint(endpoint_id)
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
                driver=self._name,
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
                self._switch.add_port(net, ep)
                self._plumb_endpoint(net, ep)
            except Exception:
                undo("remove flows", lambda: self._flows.remove_endpoint(net, ep))
                undo("delete port", lambda: self._switch.delete_port(net.bridge, ep.host_if))
                undo("delete veth", lambda: self._links.delete_link(ep.host_if))
                raise
            self._store.put_endpoint(ep)
        LOG.info("endpoint %s created on network %s", endpoint_id[:12], network_id[:12])
        return None if mac else ep.mac

    def _plumb_endpoint(self, net: Network, ep: Endpoint) -> None:
        """Flows and published ports of an endpoint whose port exists (idempotent)."""
        if net.port_security:
            ofport = self._switch.ofport(ep.host_if)
            if ofport is None:
                raise BackendError(f"port {ep.host_if} has no OpenFlow port number")
            self._flows.install_endpoint(net, ep, ofport)
        if ep.port_mappings:
            self._firewall.set_port_mappings(net, ep)

    def _remove_endpoint(self, net: Network | None, ep: Endpoint) -> None:
        """Undo everything of an endpoint; it leaves the cache last, so a failure mid-way
        leaves it known (and recorded in OVSDB) for the next attempt or the reconciler."""
        if net is not None:
            if ep.port_mappings:
                self._firewall.set_port_mappings(net, dataclasses.replace(ep, port_mappings=()))
            if net.port_security:
                self._flows.remove_endpoint(net, ep)
            self._switch.delete_port(net.bridge, ep.host_if)
        self._links.delete_link(ep.host_if)
        self._store.remove_endpoint_if_current(ep)

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        with self._hold(network_id):
            net, ep = self._store.network_and_endpoint(network_id, endpoint_id)
            if ep is None:
                LOG.info("delete of unknown endpoint %s: nothing to do", endpoint_id[:12])
                return
            if self._reaper is None:
                self._remove_endpoint(net, ep)
                LOG.info("endpoint %s deleted", endpoint_id[:12])
                return
            # Docker is done with it: from now on it is only work to finish.
            self._store.remove_endpoint(endpoint_id)
        self._reaper.submit(
            network_id,
            f"deletion of endpoint {endpoint_id[:12]}",
            lambda: self._reap_endpoint(net, ep),
        )

    def _reap_endpoint(self, net: Network | None, ep: Endpoint) -> None:
        self._remove_endpoint(net, ep)
        LOG.info("endpoint %s deleted", ep.endpoint_id[:12])

    def collect_recorded(self, ep: Endpoint) -> None:
        """Remove an endpoint that OVSDB records but this plugin does not know (a deletion
        that failed half-way, or a request killed with the plugin)."""
        net, served = self._store.network_and_endpoint(ep.network_id, ep.endpoint_id)
        if served is not None:
            return
        if net is None:
            bridge = self._switch.port_bridge(ep.host_if)
            if bridge is not None:
                self._switch.delete_port(bridge, ep.host_if)
            self._links.delete_link(ep.host_if)
            return
        with self._hold(ep.network_id):
            self._remove_endpoint(net, ep)

    def flush(self, timeout: float = 30.0) -> None:
        """Finish queued deletions (at shutdown)."""
        if self._reaper is not None:
            self._reaper.stop(timeout)

    def join(self, network_id: str, endpoint_id: str) -> JoinInfo:
        net = self._network(network_id)
        ep = self._endpoint(network_id, endpoint_id)
        # flat: the gateway is a router on the uplink's L2, as IPAM gave it.
        gw4 = None if net.internal else net.gateway_for(ep.ipv4)
        gw6 = None if net.internal else net.gateway_for(ep.ipv6)
        return JoinInfo(
            src_name=ep.container_if,
            dst_prefix=net.iface_prefix,
            gateway=str(gw4.ip) if gw4 else None,
            gateway_ipv6=str(gw6.ip) if gw6 else None,
            # An internal network has no way out; do not let Docker add docker_gwbridge.
            disable_gateway_service=net.internal,
        )

    def leave(self, network_id: str, endpoint_id: str) -> None:
        # Docker moves the interface back after Leave; deleting it here would break that.
        self._endpoint(network_id, endpoint_id)

    def endpoint_info(self, network_id: str, endpoint_id: str) -> dict[str, Any]:
        ep = self._endpoint(network_id, endpoint_id)
        net = self._network(network_id)
        info: dict[str, Any] = {"bridge": net.bridge, "port": ep.host_if, "mac": ep.mac}
        if ep.ipv4:
            info["ipv4"] = str(ep.ipv4)
        if ep.ipv6:
            info["ipv6"] = str(ep.ipv6)
        if ep.port_mappings:
            info["ports"] = [str(p) for p in ep.port_mappings]
        return info

    # -- published ports -------------------------------------------------------------------

    def program_external(
        self, network_id: str, endpoint_id: str, mappings: Sequence[PortMapping]
    ) -> None:
        with self._hold(network_id):
            net = self._network(network_id)
            ep = self._endpoint(network_id, endpoint_id)
            wanted = tuple(self._with_default_host_ip(net, m) for m in mappings)
            if wanted == ep.port_mappings:
                return
            if wanted and not net.host_gateway:
                raise InvalidRequest(
                    f"publishing ports needs ovs.mode=nat or routed; network {network_id[:12]} "
                    f"is {'internal' if net.internal else net.mode.value}"
                )
            if wanted and ep.ipv4 is None:
                raise InvalidRequest("publishing ports needs an IPv4 address on the container")
            self._check_ports_free(ep, wanted)
            self._set_mappings(net, dataclasses.replace(ep, port_mappings=wanted))

    def revoke_external(self, network_id: str, endpoint_id: str) -> None:
        with self._hold(network_id):
            net = self._network(network_id)
            ep = self._endpoint(network_id, endpoint_id)
            if ep.port_mappings:
                self._set_mappings(net, dataclasses.replace(ep, port_mappings=()))

    @staticmethod
    def _with_default_host_ip(net: Network, m: PortMapping) -> PortMapping:
        if m.host_ip is None and net.host_binding_ipv4 is not None:
            return dataclasses.replace(m, host_ip=net.host_binding_ipv4)
        return m

    def _check_ports_free(self, ep: Endpoint, wanted: Sequence[PortMapping]) -> None:
        for m in wanted:
            if m.host_port == 0:
                raise InvalidRequest(
                    f"publish {m.container_port}/{m.proto} with an explicit host port "
                    f"(-p HOST:{m.container_port}); this driver does not pick ports"
                )
        others = [e for e in self._store.endpoints() if e.endpoint_id != ep.endpoint_id]
        for m in wanted:
            for other in others:
                for taken in other.port_mappings:
                    same_ip = (
                        m.host_ip is None or taken.host_ip is None or m.host_ip == taken.host_ip
                    )
                    if (taken.proto, taken.host_port) == (m.proto, m.host_port) and same_ip:
                        raise Conflict(
                            f"host port {m.host_port}/{m.proto} is already published by "
                            f"endpoint {other.endpoint_id[:12]}"
                        )

    def _set_mappings(self, net: Network, new: Endpoint) -> None:
        old = self._endpoint(net.network_id, new.endpoint_id)
        self._switch.update_endpoint(new)
        try:
            self._firewall.set_port_mappings(net, new)
        except Exception:
            undo("restore port mappings", lambda: self._switch.update_endpoint(old))
            undo("restore rules", lambda: self._firewall.set_port_mappings(net, old))
            raise
        self._store.put_endpoint(new)
        LOG.info(
            "endpoint %s publishes %s",
            new.endpoint_id[:12],
            ", ".join(str(m) for m in new.port_mappings) or "nothing",
        )
