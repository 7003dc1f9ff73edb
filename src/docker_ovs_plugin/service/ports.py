"""What the driver needs from the outside world. Adapters implement these; tests use fakes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from docker_ovs_plugin.service.model import Endpoint, IPInterface, Network


class Switch(Protocol):
    """Open vSwitch configuration (OVSDB): bridges, ports and their external_ids."""

    def list_networks(self) -> list[Network]:
        """Every network recorded on a bridge that carries our owner tag."""

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint recorded on an interface that carries our owner tag."""

    def bridge_external_ids(self, bridge: str) -> dict[str, str] | None:
        """The bridge's external_ids, or None when there is no such bridge."""

    def create_bridge(self, network: Network, datapath_type: str) -> None:
        """Create the network's bridge with its external_ids in one transaction."""

    def delete_bridge(self, bridge: str) -> None:
        """Delete the bridge if it exists and is ours."""

    def add_port(self, bridge: str, endpoint: Endpoint) -> None:
        """Attach the endpoint's host veth with its external_ids; fail if OVS cannot open it."""

    def delete_port(self, bridge: str, port: str) -> None:
        """Delete the port if it exists and is ours."""


class Links(Protocol):
    """Kernel network devices (netlink)."""

    def create_veth(
        self, host: str, peer: str, *, mtu: int, peer_mac: str, peer_tx_checksum: bool
    ) -> None:
        """Create a veth pair (replacing a stale one of the same name), host end up."""

    def delete_link(self, name: str) -> None:
        """Delete the device if present (deleting one veth end removes both)."""

    def configure_bridge_port(self, name: str, addresses: Sequence[IPInterface]) -> None:
        """Wait (bounded) for the bridge's internal device, give it the addresses, bring it up."""


class Firewall(Protocol):
    """Packet filter rules of the plugin's own chains."""

    def add_network(self, network: Network) -> None:
        """Forwarding, isolation and masquerade for the network (idempotent)."""

    def remove_network(self, network: Network) -> None:
        """Remove every rule the network added (idempotent)."""
