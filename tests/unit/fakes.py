"""In-memory stand-ins for the adapters, with the behaviour the driver relies on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import OWNER, OWNER_KEY, Endpoint, IPInterface, Network


@dataclass
class FakeSwitch:
    bridges: dict[str, dict[str, str]] = field(default_factory=dict)
    datapaths: dict[str, str] = field(default_factory=dict)
    ports: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # name -> bridge
    fail_add_port: bool = False

    def list_networks(self) -> list[Network]:
        return [
            Network.from_external_ids(name, ids)
            for name, ids in self.bridges.items()
            if ids.get(OWNER_KEY) == OWNER
        ]

    def list_endpoints(self) -> list[Endpoint]:
        return [Endpoint.from_external_ids(ids) for _, ids in self.ports.values()]

    def bridge_external_ids(self, bridge: str) -> dict[str, str] | None:
        ids = self.bridges.get(bridge)
        return None if ids is None else dict(ids)

    def create_bridge(self, network: Network, datapath_type: str) -> None:
        if network.bridge in self.bridges:
            raise BackendError(f"bridge {network.bridge} exists")
        self.bridges[network.bridge] = network.to_external_ids()
        self.datapaths[network.bridge] = datapath_type

    def delete_bridge(self, bridge: str) -> None:
        if self.bridges.get(bridge, {}).get(OWNER_KEY) == OWNER:
            del self.bridges[bridge]
            self.ports = {n: p for n, p in self.ports.items() if p[0] != bridge}

    def add_port(self, bridge: str, endpoint: Endpoint) -> None:
        if bridge not in self.bridges:
            raise BackendError(f"no bridge {bridge}")
        self.ports[endpoint.host_if] = (bridge, endpoint.to_external_ids())
        if self.fail_add_port:
            raise BackendError("could not open interface")

    def delete_port(self, bridge: str, port: str) -> None:
        self.ports.pop(port, None)


@dataclass
class FakeLinks:
    links: dict[str, str] = field(default_factory=dict)  # name -> peer
    tx_checksum_off: set[str] = field(default_factory=set)
    addresses: dict[str, list[IPInterface]] = field(default_factory=dict)
    fail_bridge_port: bool = False

    def create_veth(
        self, host: str, peer: str, *, mtu: int, peer_mac: str, peer_tx_checksum: bool
    ) -> None:
        self.links[host] = peer
        self.links[peer] = host
        if not peer_tx_checksum:
            self.tx_checksum_off.add(peer)

    def delete_link(self, name: str) -> None:
        peer = self.links.pop(name, None)
        if peer is not None:
            self.links.pop(peer, None)

    def configure_bridge_port(self, name: str, addresses: Sequence[IPInterface]) -> None:
        if self.fail_bridge_port:
            raise BackendError(f"device {name} did not appear")
        self.addresses.setdefault(name, [])
        for a in addresses:
            if a not in self.addresses[name]:
                self.addresses[name].append(a)


@dataclass
class FakeFirewall:
    networks: dict[str, Network] = field(default_factory=dict)

    def add_network(self, network: Network) -> None:
        self.networks[network.network_id] = network

    def remove_network(self, network: Network) -> None:
        self.networks.pop(network.network_id, None)
