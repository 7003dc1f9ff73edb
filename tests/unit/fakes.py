"""In-memory stand-ins for the adapters, with the behaviour the driver relies on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_interface, ip_network
from typing import Protocol

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.service.errors import BackendError, Conflict, NotFound
from docker_ovs_plugin.service.ipam import GATEWAY_TYPE, REQUEST_ADDRESS_TYPE, Ipam
from docker_ovs_plugin.service.model import (
    OWNER,
    OWNER_KEY,
    Endpoint,
    IPInterface,
    Network,
    Subnet,
    network_key,
    networks_on_bridge,
    owned,
)
from docker_ovs_plugin.service.networks import Networks
from docker_ovs_plugin.service.ports import (
    BridgeState,
    Chassis,
    ClusterNetwork,
    LocalNetwork,
    Pool,
    Reservation,
    Tombstone,
)


@dataclass
class FakeBridge:
    external_ids: dict[str, str]
    datapath: str = "netdev"
    uplink: str | None = None
    trunks: list[int] = field(default_factory=list)
    gateway_ports: dict[str, int] = field(default_factory=dict)  # name -> tag


@dataclass
class FakeSwitch:
    bridges: dict[str, FakeBridge] = field(default_factory=dict)
    ports: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # name -> bridge
    port_columns: dict[str, dict[str, object]] = field(default_factory=dict)
    fail_add_port: bool = False
    foreign_ports: dict[str, str] = field(default_factory=dict)  # port -> bridge not ours
    # OpenFlow port numbers: given once when OVS opens a port, kept while it exists.
    ofports: dict[str, int] = field(default_factory=dict)
    _last_ofport: int = 0

    def list_networks(self) -> list[Network]:
        return [
            n
            for name, b in self.bridges.items()
            if b.external_ids.get(OWNER_KEY) == OWNER
            for n in networks_on_bridge(name, b.external_ids)
        ]

    def list_endpoints(self) -> list[Endpoint]:
        return [Endpoint.from_external_ids(ids) for _, ids in self.ports.values()]

    def bridge_state(self, bridge: str) -> BridgeState | None:
        b = self.bridges.get(bridge)
        if b is None:
            return None
        if b.external_ids.get(OWNER_KEY) != OWNER:
            return BridgeState(owned=False)
        return BridgeState(True, networks_on_bridge(bridge, b.external_ids), b.uplink)

    def port_bridge(self, port: str) -> str | None:
        if port in self.ports:
            return self.ports[port][0]
        for name, b in self.bridges.items():
            if b.uplink == port or port in b.gateway_ports:
                return name
        return self.foreign_ports.get(port)

    def _open(self, port: str) -> None:
        if port not in self.ofports:
            self._last_ofport += 1
            self.ofports[port] = self._last_ofport

    def _drop_bridge(self, bridge: str) -> None:
        """Deleting a bridge deletes its ports, ours or not, as OVSDB does."""
        b = self.bridges.pop(bridge)
        gone = {n for n, p in self.ports.items() if p[0] == bridge}
        gone |= {n for n, br in self.foreign_ports.items() if br == bridge}
        gone |= set(b.gateway_ports) | ({b.uplink} if b.uplink else set())
        self.ports = {n: p for n, p in self.ports.items() if n not in gone}
        self.port_columns = {n: c for n, c in self.port_columns.items() if n not in gone}
        self.foreign_ports = {n: br for n, br in self.foreign_ports.items() if n not in gone}
        self.ofports = {n: o for n, o in self.ofports.items() if n not in gone}

    def add_network(self, network: Network, datapath_type: str, peers: Sequence[Network]) -> None:
        b = self.bridges.setdefault(network.bridge, FakeBridge(owned(), datapath_type))
        b.external_ids[network_key(network.network_id)] = network.to_json()
        if network.vlan is not None and network.host_gateway:
            b.gateway_ports[network.gateway_port] = network.vlan
            self._open(network.gateway_port)
        if b.uplink is None:
            b.uplink = network.uplink
            if b.uplink is not None:
                self._open(b.uplink)
        vlans = [n.vlan for n in [*peers, network]]
        b.trunks = [] if None in vlans else sorted(v for v in vlans if v is not None)

    def remove_network(self, network: Network, peers: Sequence[Network]) -> None:
        b = self.bridges.get(network.bridge)
        if b is None or b.external_ids.get(OWNER_KEY) != OWNER:
            return
        if not peers:
            self._drop_bridge(network.bridge)
            return
        b.external_ids.pop(network_key(network.network_id), None)
        b.gateway_ports.pop(network.gateway_port, None)
        self.ofports.pop(network.gateway_port, None)
        vlans = [n.vlan for n in peers]
        b.trunks = [] if None in vlans else sorted(v for v in vlans if v is not None)

    def add_port(self, network: Network, endpoint: Endpoint) -> None:
        if network.bridge not in self.bridges:
            raise BackendError(f"no bridge {network.bridge}")
        self.ports[endpoint.host_if] = (network.bridge, endpoint.to_external_ids())
        self.port_columns[endpoint.host_if] = {"tag": network.vlan, "protected": not network.icc}
        if self.fail_add_port:
            # As OVS: the rows stay (with an error and no OpenFlow port number).
            raise BackendError("could not open interface")
        self._open(endpoint.host_if)

    def update_endpoint(self, endpoint: Endpoint) -> None:
        # No port, nothing rewritten, no error: what the OVSDB adapter does.
        if endpoint.host_if in self.ports:
            bridge, _ = self.ports[endpoint.host_if]
            self.ports[endpoint.host_if] = (bridge, endpoint.to_external_ids())

    def delete_port(self, bridge: str, port: str) -> None:
        self.ports.pop(port, None)
        self.port_columns.pop(port, None)
        self.ofports.pop(port, None)

    def ofport(self, name: str) -> int | None:
        if name in self.bridges:
            return 65534  # OFPP_LOCAL, the bridge's own port
        return self.ofports.get(name)

    def empty_bridges(self) -> list[str]:
        return [
            name
            for name, b in self.bridges.items()
            if b.external_ids.get(OWNER_KEY) == OWNER
            and not networks_on_bridge(name, b.external_ids)
        ]

    def delete_bridge(self, bridge: str) -> None:
        if self.bridges.get(bridge, FakeBridge({})).external_ids.get(OWNER_KEY) == OWNER:
            self._drop_bridge(bridge)


@dataclass
class FakeLinks:
    links: dict[str, str] = field(default_factory=dict)  # name -> peer
    host_devices: set[str] = field(default_factory=lambda: {"eth0", "eth1"})
    default_route: set[str] = field(default_factory=lambda: {"eth0"})
    up: set[str] = field(default_factory=set)
    tx_checksum_off: set[str] = field(default_factory=set)
    assigned: dict[str, list[IPInterface]] = field(default_factory=dict)  # device -> addresses
    fail_bridge_port: bool = False
    # address -> MTU of the device holding it (eth0's, as in tests/contract/test_links.py)
    mtus: dict[str, int] = field(default_factory=lambda: {"192.0.2.2": 1500})
    veth_mtus: dict[str, int] = field(default_factory=dict)

    def exists(self, name: str) -> bool:
        return name in self.host_devices or name in self.links

    def names(self, prefixes: tuple[str, ...]) -> list[str]:
        return sorted(n for n in self.links if n.startswith(prefixes))

    def addresses(self, name: str) -> list[IPInterface]:
        return list(self.assigned.get(name, []))

    def default_route_interfaces(self) -> set[str]:
        return set(self.default_route)

    def set_up(self, name: str) -> None:
        if not self.exists(name):
            raise BackendError(f"interface {name} does not exist")
        self.up.add(name)

    def create_veth(
        self, host: str, peer: str, *, mtu: int, peer_mac: str, peer_tx_checksum: bool
    ) -> None:
        self.links[host] = peer
        self.links[peer] = host
        self.veth_mtus[host] = self.veth_mtus[peer] = mtu
        self.up.add(host)  # the container end stays down until it is in its namespace
        if not peer_tx_checksum:
            self.tx_checksum_off.add(peer)

    def delete_link(self, name: str) -> None:
        peer = self.links.pop(name, None)
        if peer is not None:
            self.links.pop(peer, None)
            self.up -= {name, peer}

    def mtu_of_address(self, address: str) -> int | None:
        return self.mtus.get(address)

    def configure_bridge_port(self, name: str, addresses: Sequence[IPInterface]) -> None:
        if self.fail_bridge_port:
            raise BackendError(f"device {name} did not appear")
        self.assigned.setdefault(name, [])
        for a in addresses:
            if a not in self.assigned[name]:
                self.assigned[name].append(a)
        self.up.add(name)


@dataclass
class FakeFlows:
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    extra_cookies: set[int] = field(default_factory=set)  # stale flows, seen on every bridge
    # The switch whose bridges hold the flows (None: any bridge exists). As in ovs-vswitchd,
    # flows need their bridge and vanish with it, also when a bridge of that name comes back.
    switch: FakeSwitch | None = None
    homes: dict[str, tuple[str, FakeBridge | None]] = field(default_factory=dict)

    def _on(self, endpoint_id: str, bridge: str) -> bool:
        name, home = self.homes.get(endpoint_id, (bridge, None))
        if self.switch is not None and endpoint_id in self.homes:
            return name == bridge and self.switch.bridges.get(name) is home
        return name == bridge

    def install_endpoint(self, network: Network, endpoint: Endpoint, ofport: int) -> None:
        assert ofport >= 1
        home = None
        if self.switch is not None:
            home = self.switch.bridges.get(network.bridge)
            if home is None:
                raise BackendError(f"cannot program flows on bridge {network.bridge}: no bridge")
        self.endpoints[endpoint.endpoint_id] = endpoint
        self.homes[endpoint.endpoint_id] = (network.bridge, home)

    def remove_endpoint(self, network: Network, endpoint: Endpoint) -> None:
        self.remove_cookie(network.bridge, endpoint.cookie)

    def cookies(self, bridge: str) -> set[int]:
        if self.switch is not None and bridge not in self.switch.bridges:
            return set()
        installed = {e.cookie for k, e in self.endpoints.items() if self._on(k, bridge)}
        return installed | self.extra_cookies

    def remove_cookie(self, bridge: str, cookie: int) -> None:
        self.extra_cookies.discard(cookie)
        gone = [k for k, e in self.endpoints.items() if e.cookie == cookie and self._on(k, bridge)]
        for k in gone:
            del self.endpoints[k]
            self.homes.pop(k, None)


@dataclass
class FakeFirewall:
    networks: dict[str, Network] = field(default_factory=dict)
    published: dict[str, Endpoint] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)  # short ids of rules of no known network

    def add_network(self, network: Network) -> None:
        self.networks[network.network_id] = network

    def remove_network(self, network: Network) -> None:
        self.networks.pop(network.network_id, None)
        self.published = {
            k: e for k, e in self.published.items() if e.network_id != network.network_id
        }

    def set_port_mappings(self, network: Network, endpoint: Endpoint) -> None:
        if endpoint.port_mappings:
            self.published[endpoint.endpoint_id] = endpoint
        else:
            self.published.pop(endpoint.endpoint_id, None)

    def has_network(self, network: Network) -> bool:
        return network.network_id in self.networks

    def tagged_networks(self) -> set[str]:
        return {n[:12] for n in self.networks} | self.unknown

    def remove_tagged(self, short_id: str) -> None:
        self.unknown.discard(short_id)
        self.networks = {k: n for k, n in self.networks.items() if k[:12] != short_id}
        # The network's tag prefixes its endpoints' tags: their published ports go too.
        self.published = {k: e for k, e in self.published.items() if e.network_id[:12] != short_id}


def make_driver(datapath_type: str = "netdev") -> Driver:
    switch = FakeSwitch()
    return Driver(
        switch, FakeLinks(), FakeFirewall(), FakeFlows(switch=switch), datapath_type=datapath_type
    )


@dataclass
class FakeDocker:
    networks: dict[str, set[str]] = field(default_factory=dict)
    down: bool = False

    asked: list[list[str]] = field(default_factory=list)

    def endpoints_of(self, network_ids: Iterable[str]) -> dict[str, set[str]]:
        if self.down:
            raise ConnectionError("docker.sock: connection refused")
        ids = list(network_ids)
        self.asked.append(ids)
        return {k: set(self.networks[k]) for k in ids if k in self.networks}


# -- OVN ------------------------------------------------------------------------------------


@dataclass
class FakeLogicalPort:
    external_ids: dict[str, str]
    addresses: list[str] = field(default_factory=list)
    port_security: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeLogicalSwitch:
    external_ids: dict[str, str]
    ports: dict[str, FakeLogicalPort] = field(default_factory=dict)


class FakeNorthbound:
    """The OVN northbound database as the adapter uses it: one lock stands for OVSDB's
    serialised transactions, a dict of port names for the unique name index."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.switches: dict[str, FakeLogicalSwitch] = {}
        self.tokens: dict[str, str] = {}  # token name -> switch name
        self.port_names: dict[str, str] = {}  # logical port name -> switch name
        self.name_tokens: dict[str, str] = {}  # name token -> switch name (unique index)
        self.routers: dict[str, dict[str, str]] = {}  # router NAME -> its switches' networks
        self.watchers: list[Callable[[], None]] = []
        self.clock = clock
        self._lock = threading.Lock()

    # reads

    def _pool(self, name: str, sw: FakeLogicalSwitch) -> Pool:
        ids = sw.external_ids
        gateway = ids.get(c.GATEWAY_KEY)
        return Pool(
            pool_id=name,
            subnet=IPv4Network(ids[c.SUBNET_KEY]),
            gateway=IPv4Address(gateway) if gateway else None,
            creator=ids[c.CREATOR_KEY],
            pool_hosts=frozenset(
                k.removeprefix(c.HOST_POOL_PREFIX) for k in ids if k.startswith(c.HOST_POOL_PREFIX)
            ),
            networks={
                k.removeprefix(c.HOST_NETWORK_PREFIX): v
                for k, v in ids.items()
                if k.startswith(c.HOST_NETWORK_PREFIX)
            },
        )

    def _reservation(self, pool_id: str, name: str, lsp: FakeLogicalPort) -> Reservation:
        ids = lsp.external_ids
        return Reservation(
            pool_id=pool_id,
            address=IPv4Address(ids[c.ADDRESS_KEY]),
            name=name,
            host=ids[c.HOST_KEY],
            reserved_at=float(ids[c.RESERVED_AT_KEY]),
            gateway=ids.get(c.ROLE_KEY) == c.ROLE_GATEWAY,
            endpoint_id=ids.get(c.ENDPOINT_ID_KEY),
        )

    def pools(self) -> list[Pool]:
        with self._lock:
            return [self._pool(n, sw) for n, sw in self.switches.items()]

    def pool(self, pool_id: str) -> Pool | None:
        with self._lock:
            sw = self.switches.get(pool_id)
            return self._pool(pool_id, sw) if sw is not None else None

    def reservation(self, pool_id: str, address: IPv4Address) -> Reservation | None:
        with self._lock:
            sw = self.switches.get(pool_id)
            name = c.reservation_name(pool_id, str(address))
            lsp = sw.ports.get(name) if sw is not None else None
            return self._reservation(pool_id, name, lsp) if lsp is not None else None

    def stale_reservations(self, host: str, older_than: float) -> list[Reservation]:
        with self._lock:
            found = [
                self._reservation(pool_id, name, lsp)
                for pool_id, sw in self.switches.items()
                for name, lsp in sw.ports.items()
            ]
        return sorted(
            (
                r
                for r in found
                if r.host == host
                and r.reserved_at < older_than
                and not r.gateway
                and r.endpoint_id is None
            ),
            key=lambda r: (r.pool_id, r.address),
        )

    # writes

    def acquire_pool(self, subnet: IPv4Network, host: str, driver: str) -> str:
        name = c.switch_name(str(subnet))
        key = c.host_pool_key(host)
        with self._lock:
            if name in self.switches:
                self._refuse_removed(self.switches[name], host)
                self.switches[name].external_ids[key] = f"{self.clock():.3f}"
                return name
            for sw in self.switches.values():
                other = IPv4Network(sw.external_ids[c.SUBNET_KEY])
                if other.overlaps(subnet):
                    raise Conflict(f"subnet {subnet} overlaps overlay subnet {other}")
            self.switches[name] = FakeLogicalSwitch(
                owned(
                    {
                        c.DRIVER_KEY: driver,
                        c.SUBNET_KEY: str(subnet),
                        c.CREATOR_KEY: host,
                        c.TOKEN_KEY: c.token_name(str(subnet)),
                        key: f"{self.clock():.3f}",
                    }
                )
            )
            self.tokens[c.token_name(str(subnet))] = name
            return name

    def release_pool(self, pool_id: str, host: str) -> bool:
        return self._drop_use(pool_id, c.host_pool_key(host))

    def _drop_use(self, pool_id: str, key: str) -> bool:
        with self._lock:
            sw = self.switches.get(pool_id)
            if sw is None:
                return False
            sw.external_ids.pop(key, None)
            users = [
                k
                for k in sw.external_ids
                if k.startswith((c.HOST_POOL_PREFIX, c.HOST_NETWORK_PREFIX))
            ]
            reserved = [
                p for p in sw.ports.values() if p.external_ids.get(c.ROLE_KEY) != c.ROLE_GATEWAY
            ]
            if users or reserved:
                return False
            del self.switches[pool_id]
            self.tokens.pop(sw.external_ids[c.TOKEN_KEY], None)
            name_token = sw.external_ids.get(c.NAME_TOKEN_KEY, "")
            if self.name_tokens.get(name_token) == pool_id:  # not when taken over
                del self.name_tokens[name_token]
            for name in sw.ports:
                self.port_names.pop(name, None)
            router = sw.external_ids.get(c.ROUTER_NAME_KEY)
            if router is not None:
                self.routers[router].pop(pool_id, None)
                if not self.routers[router]:
                    del self.routers[router]
            return True

    def join_router(self, pool_id: str, router: str, mac: str) -> None:
        with self._lock:
            sw = self._switch(pool_id)
            joined = sw.external_ids.get(c.ROUTER_NAME_KEY)
            if joined not in (None, router):
                raise Conflict(f"overlay pool {pool_id} is joined to router {joined}")
            gateway = sw.external_ids.get(c.GATEWAY_KEY)
            if gateway is None:
                raise BackendError(f"overlay pool {pool_id} has no gateway address")
            prefix = IPv4Network(sw.external_ids[c.SUBNET_KEY]).prefixlen
            sw.external_ids[c.ROUTER_NAME_KEY] = router
            port = sw.ports[c.reservation_name(pool_id, gateway)]
            port.addresses = ["router"]
            port.options["router-port"] = c.router_port_name(pool_id)
            self.routers.setdefault(router, {})[pool_id] = f"{gateway}/{prefix}"

    def routed_subnets(self, pool_id: str) -> list[IPv4Network]:
        with self._lock:
            sw = self.switches.get(pool_id)
            router = sw.external_ids.get(c.ROUTER_NAME_KEY) if sw is not None else None
            if router is None:
                return []
            return sorted(
                IPv4Interface(n).network
                for other, n in self.routers[router].items()
                if other != pool_id
            )

    def set_host_network(self, pool_id: str, host: str, record: str | None) -> None:
        if record is None:
            self._drop_use(pool_id, c.host_network_key(host))
            self._notify()
            return
        with self._lock:
            sw = self.switches.get(pool_id)
            if sw is None:
                raise NotFound(f"overlay pool {pool_id} does not exist in OVN")
            sw.external_ids[c.host_network_key(host)] = record
        self._notify()

    def _insert(
        self, pool_id: str, sw: FakeLogicalSwitch, address: IPv4Address, host: str, **extra: str
    ) -> None:
        name = c.reservation_name(pool_id, str(address))
        self.port_names[name] = pool_id
        sw.ports[name] = FakeLogicalPort(
            owned(
                {
                    c.ADDRESS_KEY: str(address),
                    c.HOST_KEY: host,
                    c.RESERVED_AT_KEY: f"{self.clock():.3f}",
                    **extra,
                }
            )
        )

    def _switch(self, pool_id: str) -> FakeLogicalSwitch:
        sw = self.switches.get(pool_id)
        if sw is None:
            raise NotFound(f"overlay pool {pool_id} does not exist in OVN")
        return sw

    @staticmethod
    def _check(subnet: IPv4Network, address: IPv4Address) -> None:
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            raise Conflict(f"address {address} cannot be handed out in {subnet}")

    def gateway(self, pool_id: str, host: str, wanted: IPv4Address | None) -> IPv4Address:
        with self._lock:
            sw = self._switch(pool_id)
            subnet = IPv4Network(sw.external_ids[c.SUBNET_KEY])
            recorded = sw.external_ids.get(c.GATEWAY_KEY)
            if recorded is not None:
                if wanted is not None and str(wanted) != recorded:
                    raise Conflict(f"the gateway of {subnet} is {recorded} on every host")
                return IPv4Address(recorded)
            gateway = wanted or next(subnet.hosts())
            self._check(subnet, gateway)
            if c.reservation_name(pool_id, str(gateway)) in self.port_names:
                raise Conflict(f"gateway {gateway} is taken")
            sw.external_ids[c.GATEWAY_KEY] = str(gateway)
            self._insert(pool_id, sw, gateway, host, **{c.ROLE_KEY: c.ROLE_GATEWAY})
            return gateway

    def reserve(self, pool_id: str, host: str, address: IPv4Address | None) -> Reservation:
        with self._lock:
            sw = self._switch(pool_id)
            subnet = IPv4Network(sw.external_ids[c.SUBNET_KEY])
            taken = {IPv4Address(p.external_ids[c.ADDRESS_KEY]) for p in sw.ports.values()}
            if address is not None:
                self._check(subnet, address)
                if address in taken:
                    holder = sw.ports[c.reservation_name(pool_id, str(address))]
                    raise Conflict(
                        f"address {address} is already reserved by host "
                        f"{holder.external_ids[c.HOST_KEY]}"
                    )
                chosen = address
            else:
                free = next((a for a in subnet.hosts() if a not in taken), None)
                if free is None:
                    raise Conflict(f"no free address left in overlay subnet {subnet}")
                chosen = free
            self._insert(pool_id, sw, chosen, host)
            name = c.reservation_name(pool_id, str(chosen))
            return self._reservation(pool_id, name, sw.ports[name])

    def release(self, pool_id: str, address: IPv4Address, host: str) -> bool:
        with self._lock:
            sw = self.switches.get(pool_id)
            name = c.reservation_name(pool_id, str(address))
            lsp = sw.ports.get(name) if sw is not None else None
            if sw is None or lsp is None:
                return False
            ids = lsp.external_ids
            if ids.get(c.ROLE_KEY) == c.ROLE_GATEWAY or ids[c.HOST_KEY] != host:
                return False
            del sw.ports[name]
            del self.port_names[name]
            return True

    def bind(
        self,
        pool_id: str,
        address: IPv4Address,
        *,
        host: str,
        endpoint_id: str,
        mac: str,
        port_security: bool,
    ) -> None:
        with self._lock:
            sw = self.switches.get(pool_id)
            lsp = sw.ports.get(c.reservation_name(pool_id, str(address))) if sw else None
            if lsp is None:
                raise NotFound(f"address {address} is not reserved in overlay pool {pool_id}")
            ids = lsp.external_ids
            if ids.get(c.ROLE_KEY) == c.ROLE_GATEWAY or ids[c.HOST_KEY] != host:
                raise Conflict(f"address {address} is reserved by host {ids[c.HOST_KEY]}")
            if ids.get(c.ENDPOINT_ID_KEY, endpoint_id) != endpoint_id:
                raise Conflict(f"address {address} is already another endpoint")
            lsp.addresses = [f"{mac} {address}"]
            lsp.port_security = list(lsp.addresses) if port_security else []
            lsp.options[c.REQUESTED_CHASSIS] = host
            ids[c.ENDPOINT_ID_KEY] = endpoint_id

    def unbind(self, pool_id: str, address: IPv4Address, host: str, endpoint_id: str) -> None:
        with self._lock:
            sw = self.switches.get(pool_id)
            lsp = sw.ports.get(c.reservation_name(pool_id, str(address))) if sw else None
            if lsp is None or lsp.external_ids.get(c.ENDPOINT_ID_KEY) != endpoint_id:
                return
            if lsp.external_ids[c.HOST_KEY] != host:
                return
            lsp.addresses, lsp.port_security = [], []
            lsp.options.pop(c.REQUESTED_CHASSIS, None)
            del lsp.external_ids[c.ENDPOINT_ID_KEY]

    # the cluster's Docker networks

    def _notify(self) -> None:
        for callback in list(self.watchers):
            callback()

    def watch(self, callback: Callable[[], None]) -> None:
        self.watchers.append(callback)

    @staticmethod
    def _refuse_removed(sw: FakeLogicalSwitch, host: str) -> None:
        ids = sw.external_ids
        if c.DELETED_KEY in ids and c.host_network_key(host) not in ids:
            holders = sorted(
                k.removeprefix(c.HOST_NETWORK_PREFIX)
                for k in ids
                if k.startswith(c.HOST_NETWORK_PREFIX)
            )
            raise Conflict(
                f"overlay network {ids.get(c.NAME_KEY)} is being removed on every host; hosts "
                f"still removing it: {', '.join(holders)}; try again in a moment"
            )

    def cluster_networks(self) -> list[ClusterNetwork]:
        with self._lock:
            out = []
            for name, sw in self.switches.items():
                ids = sw.external_ids
                deleted = None
                if c.DELETED_KEY in ids:
                    t = json.loads(ids[c.DELETED_KEY])
                    r = c.TombstoneRecord
                    deleted = Tombstone(t[r.HOST], float(t[r.AT]), dict(t[r.NETWORKS]))
                token = ids.get(c.NAME_TOKEN_KEY)
                out.append(
                    ClusterNetwork(
                        pool=self._pool(name, sw),
                        name=ids.get(c.NAME_KEY),
                        driver_options=json.loads(ids.get(c.DRIVER_OPTIONS_KEY, "{}")),
                        ipam_options=json.loads(ids.get(c.IPAM_OPTIONS_KEY, "{}")),
                        publisher=ids.get(c.PUBLISHER_KEY, ""),
                        holds_name=token is not None and self.name_tokens.get(token) == name,
                        deleted=deleted,
                        left={
                            k.removeprefix(c.HOST_LEFT_PREFIX): v
                            for k, v in ids.items()
                            if k.startswith(c.HOST_LEFT_PREFIX)
                        },
                    )
                )
            return out

    def publish(
        self,
        pool_id: str,
        *,
        name: str,
        driver_options: Mapping[str, str],
        ipam_options: Mapping[str, str],
        host: str,
    ) -> str | None:
        with self._lock:
            sw = self.switches.get(pool_id)
            if sw is None:
                return None
            if c.NAME_KEY in sw.external_ids:
                return pool_id
            token = c.name_token(name)
            holder = self.name_tokens.get(token)
            held = self.switches.get(holder) if holder is not None else None
            if held is not None and c.DELETED_KEY not in held.external_ids:
                return holder
            self.name_tokens[token] = pool_id  # new, or a removed network's taken over
            sw.external_ids.update(
                {
                    c.NAME_KEY: name,
                    c.NAME_TOKEN_KEY: token,
                    c.PUBLISHER_KEY: host,
                    c.DRIVER_OPTIONS_KEY: json.dumps(dict(driver_options), sort_keys=True),
                    c.IPAM_OPTIONS_KEY: json.dumps(dict(ipam_options), sort_keys=True),
                }
            )
        self._notify()
        return pool_id

    def remove_everywhere(self, pool_id: str, host: str, network_id: str) -> dict[str, int]:
        with self._lock:
            sw = self.switches.get(pool_id)
            if sw is None or c.DELETED_KEY in sw.external_ids:
                return {}
            used: dict[str, int] = {}
            for lsp in sw.ports.values():
                ids = lsp.external_ids
                if ids.get(c.ENDPOINT_ID_KEY) and ids[c.HOST_KEY] != host:
                    used[ids[c.HOST_KEY]] = used.get(ids[c.HOST_KEY], 0) + 1
            if used:
                sw.external_ids[c.host_left_key(host)] = network_id
            else:
                r = c.TombstoneRecord
                networks = {
                    k.removeprefix(c.HOST_NETWORK_PREFIX): json.loads(v)["network_id"]
                    for k, v in sw.external_ids.items()
                    if k.startswith(c.HOST_NETWORK_PREFIX)
                }
                sw.external_ids[c.DELETED_KEY] = json.dumps(
                    {r.HOST: host, r.AT: self.clock(), r.NETWORKS: networks}
                )
        self._notify()
        return used

    def rejoin(self, pool_id: str, host: str) -> None:
        with self._lock:
            sw = self.switches.get(pool_id)
            if sw is not None:
                sw.external_ids.pop(c.host_left_key(host), None)


class DockerConflict(Exception):
    """What the Docker API answers to a name taken or a network in use (HTTP 409)."""


@dataclass
class FakeDockerNetwork:
    network_id: str
    name: str
    driver: str
    options: dict[str, str]
    ipam_driver: str
    ipam_options: dict[str, str]
    subnet: str
    gateway: str  # bare IP, as Docker shows it
    pool_id: str = ""  # what the IPAM driver answered to RequestPool
    containers: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (ep, CIDR)


class PluginSide(Protocol):
    """What dockerd calls on a host: its plugin's IPAM and network driver."""

    ipam: Ipam
    networks: Networks


class FakeDockerd:
    """One host's dockerd: its networks by id (and name), and the calls it makes to the
    plugin in 20.10's order (RequestPool, gateway RequestAddress, CreateNetwork; on rm
    ReleaseAddress(gateway), ReleasePool, DeleteNetwork), as the lab showed."""

    def __init__(self, host: str, driver: str, plugin: PluginSide) -> None:
        self.host, self.driver, self.plugin = host, driver, plugin
        self.nets: dict[str, FakeDockerNetwork] = {}
        self.down = False
        self.counter = 0

    def _new_id(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}{self.host}{self.counter:04d}".ljust(64, "0")

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("docker.sock: connection refused")

    def _local(self, n: FakeDockerNetwork) -> LocalNetwork:
        return LocalNetwork(
            network_id=n.network_id,
            name=n.name,
            driver=n.driver,
            options=dict(n.options),
            ipam_driver=n.ipam_driver,
            ipam_options=dict(n.ipam_options),
            subnets=((n.subnet, n.gateway),),
            containers=len(n.containers),
        )

    def by_name(self, name: str) -> FakeDockerNetwork | None:
        return next((n for n in self.nets.values() if n.name == name), None)

    # the API the sync uses

    def network(self, network_id: str) -> LocalNetwork | None:
        self._check()
        n = self.nets.get(network_id)
        return self._local(n) if n is not None else None

    def network_named(self, name: str) -> LocalNetwork | None:
        self._check()
        n = self.by_name(name)
        return self._local(n) if n is not None else None

    def create_network(
        self,
        name: str,
        *,
        driver: str,
        options: Mapping[str, str],
        ipam_driver: str,
        subnet: str,
        gateway: str | None,
        ipam_options: Mapping[str, str],
    ) -> str:
        self._check()
        if self.by_name(name) is not None:
            raise DockerConflict(f"network with name {name} already exists")
        n = FakeDockerNetwork(
            self._new_id("n"),
            name,
            driver,
            dict(options),
            ipam_driver,
            dict(ipam_options),
            subnet,
            gateway or "",
        )
        if driver == self.driver:
            ipam = self.plugin.ipam
            n.pool_id, pool = ipam.request_pool(pool=subnet, sub_pool="", v6=False)
            gw = ipam.request_address(
                n.pool_id, gateway or "", {REQUEST_ADDRESS_TYPE: GATEWAY_TYPE}
            )
            try:
                self.plugin.networks.create_network(
                    n.network_id,
                    dict(options),
                    [Subnet(ip_network(pool), ip_interface(gw))],
                    [],
                    internal=False,
                    address_space=ipam.address_space,
                )
            except Exception:
                ipam.release_address(n.pool_id, gw)
                ipam.release_pool(n.pool_id)
                raise
            n.gateway = str(ip_interface(gw).ip)
        self.nets[n.network_id] = n
        return n.network_id

    def remove_network(self, network_id: str) -> None:
        self._check()
        n = self.nets.get(network_id)
        if n is None:
            raise DockerConflict(f"network {network_id} not found")
        if n.containers:
            raise DockerConflict(
                f"error while removing network: network {n.name} has active endpoints"
            )
        if n.driver == self.driver:
            self.plugin.ipam.release_address(n.pool_id, n.gateway)
            self.plugin.ipam.release_pool(n.pool_id)
            self.plugin.networks.backend(network_id).delete_network(network_id)
        del self.nets[network_id]

    # what a user does on this host

    def run(self, name: str) -> str:
        """docker run --net NAME: the container's id."""
        n = self.by_name(name)
        assert n is not None, name
        address = self.plugin.ipam.request_address(n.pool_id, "", {})
        container, endpoint = self._new_id("c"), self._new_id("e")
        backend = self.plugin.networks.backend(n.network_id)
        backend.create_endpoint(
            n.network_id, endpoint, ipv4=IPv4Interface(address), ipv6=None, mac=None
        )
        backend.join(n.network_id, endpoint)
        n.containers[container] = (endpoint, address)
        return container

    def stop(self, name: str, container: str) -> None:
        n = self.by_name(name)
        assert n is not None, name
        endpoint, address = n.containers.pop(container)
        backend = self.plugin.networks.backend(n.network_id)
        backend.leave(n.network_id, endpoint)
        backend.delete_endpoint(n.network_id, endpoint)
        self.plugin.ipam.release_address(n.pool_id, address)


@dataclass
class FakeIntegration:
    """br-int and its Interface rows; `claims` stands for ovn-controller (True: it sets
    ovn-installed on every new port at once)."""

    system_id: str | None = "h1"
    bridge: str = "br-int"
    encap_ip: str | None = "192.0.2.2"  # FakeLinks' eth0
    encap_types: tuple[str, ...] = ("geneve",)
    datapath_type: str | None = "netdev"
    claims: bool = True
    fail_add_port: bool = False  # as OVS: the rows stay, the interface has an error
    ports: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> Interface ids
    installed_ports: set[str] = field(default_factory=set)
    waited: list[float] = field(default_factory=list)

    def chassis(self) -> Chassis:
        if not self.system_id:
            raise BackendError("this host's Open vSwitch has no external_ids:system-id")
        return Chassis(
            self.system_id, self.bridge, self.encap_ip, self.encap_types, self.datapath_type
        )

    def add_port(self, bridge: str, name: str, external_ids: Mapping[str, str]) -> None:
        if bridge != self.bridge:
            raise BackendError(f"the integration bridge {bridge} does not exist")
        self.ports[name] = dict(external_ids)
        if self.fail_add_port:
            raise BackendError(f"Open vSwitch could not open interface {name}")
        if self.claims:
            self.installed_ports.add(name)

    def delete_port(self, bridge: str, name: str) -> None:
        self.ports.pop(name, None)
        self.installed_ports.discard(name)

    def installed(self, name: str) -> bool:
        return name in self.installed_ports

    def wait_installed(self, name: str, timeout: float) -> bool:
        self.waited.append(timeout)
        return self.installed(name)

    def list_endpoints(self) -> list[dict[str, str]]:
        return [dict(ids) for ids in self.ports.values()]
