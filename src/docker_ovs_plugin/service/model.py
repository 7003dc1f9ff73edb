"""Networks and endpoints, and how they are written into OVSDB external_ids.

OVSDB is the durable store. A network lives on its bridge as one external_ids key
`docker-ovs:network:<id>` holding JSON (several VLAN networks may share a bridge); an endpoint
lives in the external_ids of its Interface row. This module is the one place that knows the keys,
so a restarted plugin (or a later cluster store) reads exactly what was written.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any

from docker_ovs_plugin.service import naming
from docker_ovs_plugin.service.options import DEFAULT_IFACE_PREFIX, Mode

OWNER_KEY = "owner"
OWNER = "docker-ovs-plugin"
_NS = "docker-ovs:"
NETWORK_ID_KEY = _NS + "network-id"
DRIVER_KEY = _NS + "driver"  # which plugin instance (driver name) owns the row
DEFAULT_DRIVER = "ovs"
NETWORK_KEY_PREFIX = _NS + "network:"
PORTMAP_KEY = _NS + "portmap"
ROLE_KEY = _NS + "role"
SCHEMA_KEY = _NS + "schema"
SCHEMA_VERSION = "1"

IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface


class CorruptState(ValueError):
    """external_ids that carry our owner tag but cannot be read back."""


def owned(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags every row we create carries."""
    return {OWNER_KEY: OWNER, SCHEMA_KEY: SCHEMA_VERSION, **(extra or {})}


def network_cookie(network_id: str) -> int:
    """The upper 32 bits of the OpenFlow cookies of a network's flows."""
    return int(network_id[:8], 16)


def network_key(network_id: str) -> str:
    return NETWORK_KEY_PREFIX + network_id


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
    # Several plugin instances (driver names) may share one OVS; each manages only its own.
    driver: str = DEFAULT_DRIVER
    mode: Mode = Mode.NAT
    internal: bool = False
    vlan: int | None = None
    uplink: str | None = None
    icc: bool = True
    masquerade: bool = True
    port_security: bool = True
    host_binding_ipv4: IPv4Address | None = None
    iface_prefix: str = DEFAULT_IFACE_PREFIX
    ipv4: tuple[Subnet, ...] = ()
    ipv6: tuple[Subnet, ...] = ()
    # The -o options as the user gave them, kept for operators (status/doctor), never re-parsed.
    options: dict[str, str] = field(default_factory=dict)

    @property
    def host_gateway(self) -> bool:
        """Whether the host holds the gateway addresses and routes the network's traffic."""
        return not self.internal and self.mode is not Mode.FLAT

    @property
    def gateway_port(self) -> str:
        """The internal port that holds the gateway: the bridge's own, or the VLAN's own."""
        return self.bridge if self.vlan is None else naming.gateway_port_name(self.network_id)

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

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "driver": self.driver,
            "mtu": self.mtu,
            "mode": self.mode.value,
            "internal": self.internal,
            "vlan": self.vlan,
            "uplink": self.uplink,
            "icc": self.icc,
            "masquerade": self.masquerade,
            "port_security": self.port_security,
            "host_binding_ipv4": str(self.host_binding_ipv4) if self.host_binding_ipv4 else None,
            "iface_prefix": self.iface_prefix,
            "ipv4": [s.to_json() for s in self.ipv4],
            "ipv6": [s.to_json() for s in self.ipv6],
            "options": self.options,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, network_id: str, bridge: str, text: str) -> Network:
        try:
            data = json.loads(text)
            binding = data.get("host_binding_ipv4")
            return cls(
                network_id=network_id,
                bridge=bridge,
                mtu=int(data["mtu"]),
                driver=str(data.get("driver", DEFAULT_DRIVER)),
                mode=Mode(data.get("mode", Mode.NAT.value)),
                internal=bool(data.get("internal", False)),
                vlan=int(data["vlan"]) if data.get("vlan") is not None else None,
                uplink=data.get("uplink"),
                icc=bool(data.get("icc", True)),
                masquerade=bool(data.get("masquerade", True)),
                port_security=bool(data.get("port_security", True)),
                host_binding_ipv4=IPv4Address(binding) if binding else None,
                iface_prefix=str(data.get("iface_prefix", DEFAULT_IFACE_PREFIX)),
                ipv4=tuple(Subnet.from_json(s) for s in data.get("ipv4", [])),
                ipv6=tuple(Subnet.from_json(s) for s in data.get("ipv6", [])),
                options={str(k): str(v) for k, v in data.get("options", {}).items()},
            )
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise CorruptState(
                f"bridge {bridge}: unreadable network {network_id[:12]} ({e})"
            ) from e


def networks_on_bridge(bridge: str, ids: dict[str, str]) -> list[Network]:
    """Every network recorded in a bridge's external_ids."""
    return [
        Network.from_json(key[len(NETWORK_KEY_PREFIX) :], bridge, value)
        for key, value in sorted(ids.items())
        if key.startswith(NETWORK_KEY_PREFIX)
    ]


@dataclass(frozen=True)
class PortMapping:
    """One `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]` of a container."""

    proto: str  # tcp, udp or sctp
    container_port: int
    host_port: int
    host_ip: IPv4Address | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "container_port": self.container_port,
            "host_port": self.host_port,
            "host_ip": str(self.host_ip) if self.host_ip else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortMapping:
        host_ip = data.get("host_ip")
        return cls(
            proto=str(data["proto"]),
            container_port=int(data["container_port"]),
            host_port=int(data["host_port"]),
            host_ip=IPv4Address(host_ip) if host_ip else None,
        )

    def __str__(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        return f"{host}{self.host_port}->{self.container_port}/{self.proto}"


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    network_id: str
    mac: str
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    port_mappings: tuple[PortMapping, ...] = ()
    driver: str = DEFAULT_DRIVER

    @property
    def host_if(self) -> str:
        return naming.host_veth_name(self.endpoint_id)

    @property
    def container_if(self) -> str:
        return naming.container_veth_name(self.endpoint_id)

    @property
    def cookie(self) -> int:
        """OpenFlow cookie of the endpoint's flows: network id prefix, then endpoint id prefix."""
        return (network_cookie(self.network_id) << 32) | int(self.endpoint_id[:8], 16)

    def to_external_ids(self) -> dict[str, str]:
        # iface-id / attached-mac / iface-status follow OVS's integration guide, so other OVS
        # tooling (and a future controller) recognises the port.
        ids = owned(
            {
                "iface-id": self.endpoint_id,
                "attached-mac": self.mac,
                "iface-status": "active",
                NETWORK_ID_KEY: self.network_id,
                DRIVER_KEY: self.driver,
                PORTMAP_KEY: json.dumps([p.to_json() for p in self.port_mappings]),
            }
        )
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
                port_mappings=tuple(
                    PortMapping.from_json(p) for p in json.loads(ids.get(PORTMAP_KEY, "[]"))
                ),
                driver=ids.get(DRIVER_KEY, DEFAULT_DRIVER),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise CorruptState(f"interface with external_ids {ids}: unreadable ({e})") from e
