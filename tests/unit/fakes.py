"""In-memory stand-ins for the adapters, with the behaviour the driver relies on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import (
    OWNER,
    OWNER_KEY,
    Endpoint,
    IPInterface,
    Network,
    network_key,
    networks_on_bridge,
    owned,
)
from docker_ovs_plugin.service.ports import BridgeState


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
        self.up.add(host)  # the container end stays down until it is in its namespace
        if not peer_tx_checksum:
            self.tx_checksum_off.add(peer)

    def delete_link(self, name: str) -> None:
        peer = self.links.pop(name, None)
        if peer is not None:
            self.links.pop(peer, None)
            self.up -= {name, peer}

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

    def endpoints_by_network(self) -> dict[str, set[str]]:
        if self.down:
            raise ConnectionError("docker.sock: connection refused")
        return {k: set(v) for k, v in self.networks.items()}
