"""What the use cases need from the outside world, and what it answers. Adapters
implement these; tests use fakes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from docker_ovs_plugin.service.model import Endpoint, IPInterface, Network


@dataclass(frozen=True)
class BridgeState:
    """What OVSDB says about a bridge the driver is about to use."""

    owned: bool
    networks: list[Network] = field(default_factory=list)
    uplink: str | None = None


@dataclass(frozen=True)
class PortInfo:
    """What Open vSwitch says about one port (for status)."""

    bridge: str | None
    ofport: int | None
    vlan: int | None
    link_state: str | None = None
    statistics: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    container_id: str
    container: str  # Docker's container name


@dataclass(frozen=True)
class DockerNetwork:
    """What Docker says about one of our networks (for status)."""

    name: str
    driver: str
    attachments: Mapping[str, Attachment]  # by endpoint id


class Switch(Protocol):
    """Open vSwitch configuration (OVSDB): bridges, ports and their external_ids."""

    def list_networks(self) -> list[Network]:
        """Every network recorded on a bridge that carries our owner tag (any driver name)."""

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint recorded on an interface that carries our owner tag (any driver)."""

    def bridge_state(self, bridge: str) -> BridgeState | None:
        """None when there is no such bridge."""

    def port_bridge(self, port: str) -> str | None:
        """The bridge that holds a port of that name, if any."""

    def add_network(self, network: Network, datapath_type: str, peers: Sequence[Network]) -> None:
        """In one transaction: the bridge (unless it exists), the network's record, its VLAN
        gateway port, the uplink port and the uplink's trunks over `peers` and `network`."""

    def remove_network(self, network: Network, peers: Sequence[Network]) -> None:
        """Delete the bridge when `peers` is empty, else only what the network added."""

    def add_port(self, network: Network, endpoint: Endpoint) -> None:
        """Attach the endpoint's host veth with its external_ids; fail if OVS cannot open it."""

    def update_endpoint(self, endpoint: Endpoint) -> None:
        """Rewrite the endpoint's external_ids (e.g. its published ports)."""

    def delete_port(self, bridge: str, port: str) -> None:
        """Delete the port if it exists and is ours."""

    def ofport(self, name: str) -> int | None:
        """The OpenFlow port number of an interface (None: no such interface, or not open)."""

    def empty_bridges(self) -> list[str]:
        """Bridges tagged as ours that record no network (left by an interrupted delete)."""

    def delete_bridge(self, bridge: str) -> None:
        """Delete the bridge if it is ours."""


class Links(Protocol):
    """Kernel network devices (netlink)."""

    def exists(self, name: str) -> bool: ...

    def names(self, prefixes: tuple[str, ...]) -> list[str]:
        """Devices in the host namespace whose names start with one of the prefixes."""

    def addresses(self, name: str) -> list[IPInterface]:
        """The addresses of a device (empty when it does not exist)."""

    def default_route_interfaces(self) -> set[str]:
        """Names of the devices that carry a default route (IPv4 or IPv6)."""

    def set_up(self, name: str) -> None: ...

    def create_veth(
        self, host: str, peer: str, *, mtu: int, peer_mac: str, peer_tx_checksum: bool
    ) -> None:
        """Create a veth pair (replacing a stale one of the same name), host end up."""

    def delete_link(self, name: str) -> None:
        """Delete the device if present (deleting one veth end removes both)."""

    def configure_bridge_port(self, name: str, addresses: Sequence[IPInterface]) -> None:
        """Wait (bounded) for an internal port's device, give it the addresses, bring it up."""


class Flows(Protocol):
    """OpenFlow rules (they live in ovs-vswitchd only, not in OVSDB)."""

    def install_endpoint(self, network: Network, endpoint: Endpoint, ofport: int) -> None:
        """Port security: the endpoint may send only from its own MAC and addresses."""

    def remove_endpoint(self, network: Network, endpoint: Endpoint) -> None: ...

    def cookies(self, bridge: str) -> set[int]:
        """Cookies of the flows on the bridge (0, the NORMAL default, excluded)."""

    def remove_cookie(self, bridge: str, cookie: int) -> None: ...


class Firewall(Protocol):
    """Packet filter rules of the plugin's own chains."""

    def add_network(self, network: Network) -> None:
        """Forwarding, isolation and masquerade for the network (idempotent)."""

    def remove_network(self, network: Network) -> None:
        """Remove every rule the network or its endpoints added (idempotent)."""

    def set_port_mappings(self, network: Network, endpoint: Endpoint) -> None:
        """Make the endpoint's published ports exactly its `port_mappings`."""

    def has_network(self, network: Network) -> bool:
        """Whether every rule of the network is in place."""

    def tagged_networks(self) -> set[str]:
        """Short (12 hex) ids of the networks that have rules in our chains."""

    def remove_tagged(self, short_id: str) -> None:
        """Remove every rule tagged with that short network id."""


class DockerView(Protocol):
    """What Docker itself knows; asked only from the background, never inside a request."""

    def endpoints_by_network(self) -> dict[str, set[str]]:
        """Endpoint ids of every network of this driver, by network id. Raises on failure."""
