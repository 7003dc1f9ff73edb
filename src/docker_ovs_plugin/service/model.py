"""Networks and endpoints, and how they are written into OVSDB external_ids.

OVSDB is the durable store: a network lives in the external_ids of its Bridge row, an endpoint in
those of its Interface row. This module is the one place that knows the keys, so a restarted plugin
(or a later cluster store) reads exactly what was written.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

from docker_ovs_plugin.service import naming

OWNER_KEY = "owner"
OWNER = "docker-ovs-plugin"
_NS = "docker-ovs:"
NETWORK_ID_KEY = _NS + "network-id"
SCHEMA_KEY = _NS + "schema"
SCHEMA_VERSION = "1"

IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface


class CorruptState(ValueError):
    """external_ids that carry our owner tag but cannot be read back."""


@dataclass(frozen=True)
class Subnet:
    """One IPAM pool of a network and the gateway Docker's IPAM chose in it (prefix included)."""

    pool: IPNetwork
    gateway: IPInterface | None = None

    def to_json(self) -> dict[str, str]:
        out = {"pool": str(self.pool)}
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        return out

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Subnet:
        gateway = data.get("gateway")
        return cls(
            pool=ipaddress.ip_network(data["pool"]),
            gateway=ipaddress.ip_interface(gateway) if gateway else None,
        )


@dataclass(frozen=True)
class Network:
    network_id: str
    bridge: str
    mtu: int
    internal: bool = False
    ipv4: tuple[Subnet, ...] = ()
    ipv6: tuple[Subnet, ...] = ()
    # The -o options as the user gave them, kept for operators (status/doctor), never re-parsed.
    options: dict[str, str] = field(default_factory=dict)

    @property
    def gateways(self) -> tuple[IPInterface, ...]:
        return tuple(s.gateway for s in (*self.ipv4, *self.ipv6) if s.gateway is not None)

    def gateway_for(self, address: IPInterface | None) -> IPInterface | None:
        """The gateway of the subnet that holds `address` (Docker may give several pools)."""
        if address is None:
            return None
        for subnet in (*self.ipv4, *self.ipv6):
            if subnet.gateway is not None and address.ip in subnet.pool:
                return subnet.gateway
        return None

    def to_external_ids(self) -> dict[str, str]:
        return {
            OWNER_KEY: OWNER,
            SCHEMA_KEY: SCHEMA_VERSION,
            NETWORK_ID_KEY: self.network_id,
            _NS + "mtu": str(self.mtu),
            _NS + "internal": "true" if self.internal else "false",
            _NS + "ipv4": json.dumps([s.to_json() for s in self.ipv4]),
            _NS + "ipv6": json.dumps([s.to_json() for s in self.ipv6]),
            _NS + "options": json.dumps(self.options, sort_keys=True),
        }

    @classmethod
    def from_external_ids(cls, bridge: str, ids: dict[str, str]) -> Network:
        try:
            return cls(
                network_id=ids[NETWORK_ID_KEY],
                bridge=bridge,
                mtu=int(ids[_NS + "mtu"]),
                internal=ids.get(_NS + "internal") == "true",
                ipv4=tuple(Subnet.from_json(s) for s in json.loads(ids.get(_NS + "ipv4", "[]"))),
                ipv6=tuple(Subnet.from_json(s) for s in json.loads(ids.get(_NS + "ipv6", "[]"))),
                options=dict(json.loads(ids.get(_NS + "options", "{}"))),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise CorruptState(f"bridge {bridge}: unreadable external_ids ({e})") from e


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    network_id: str
    mac: str
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None

    @property
    def host_if(self) -> str:
        return naming.host_veth_name(self.endpoint_id)

    @property
    def container_if(self) -> str:
        return naming.container_veth_name(self.endpoint_id)

    def to_external_ids(self) -> dict[str, str]:
        # iface-id / attached-mac / iface-status follow OVS's integration guide, so other OVS
        # tooling (and a future controller) recognises the port.
        ids = {
            OWNER_KEY: OWNER,
            SCHEMA_KEY: SCHEMA_VERSION,
            "iface-id": self.endpoint_id,
            "attached-mac": self.mac,
            "iface-status": "active",
            NETWORK_ID_KEY: self.network_id,
        }
        if self.ipv4 is not None:
            ids[_NS + "ipv4-address"] = str(self.ipv4)
        if self.ipv6 is not None:
            ids[_NS + "ipv6-address"] = str(self.ipv6)
        return ids

    @classmethod
    def from_external_ids(cls, ids: dict[str, str]) -> Endpoint:
        try:
            v4 = ids.get(_NS + "ipv4-address")
            v6 = ids.get(_NS + "ipv6-address")
            return cls(
                endpoint_id=ids["iface-id"],
                network_id=ids[NETWORK_ID_KEY],
                mac=ids["attached-mac"],
                ipv4=IPv4Interface(v4) if v4 else None,
                ipv6=IPv6Interface(v6) if v6 else None,
            )
        except (KeyError, ValueError) as e:
            raise CorruptState(f"interface with external_ids {ids}: unreadable ({e})") from e
