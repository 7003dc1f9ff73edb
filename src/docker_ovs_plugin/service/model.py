"""Networks and endpoints, and how they are written into OVSDB external_ids.

OVSDB is the durable store. A network lives on its bridge as one external_ids key
`docker-ovs:network:<id>` holding JSON (several VLAN networks may share a bridge); an endpoint
lives in the external_ids of its Interface row. The keys and values are those of
docker_ovs_plugin.contract; this module turns them into objects and back, so a restarted plugin
(or a later cluster store) reads exactly what was written.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any

from docker_ovs_plugin import contract
from docker_ovs_plugin.contract import (
    DEFAULT_DRIVER,
    DEFAULT_IFACE_PREFIX,
    NETWORK_KEY_PREFIX,
    NetworkRecord,
    PortRecord,
    SubnetRecord,
)

# Re-exported for the test fakes, which read records the way the adapters do.
from docker_ovs_plugin.contract import OWNER as OWNER  # noqa: PLC0414
from docker_ovs_plugin.contract import OWNER_KEY as OWNER_KEY  # noqa: PLC0414
from docker_ovs_plugin.contract import network_key as network_key  # noqa: PLC0414
from docker_ovs_plugin.contract import owned as owned  # noqa: PLC0414

IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface


class Mode(StrEnum):
    NAT = contract.MODE_NAT  # gateway on the host, masquerade to the outside
    ROUTED = contract.MODE_ROUTED  # gateway on the host, no masquerade: the subnet is routed
    # no host address: containers sit on the uplink's L2, the router is outside
    FLAT = contract.MODE_FLAT


class CorruptState(ValueError):
    """external_ids that carry our owner tag but cannot be read back."""


@dataclass(frozen=True)
class Subnet:
    """One IPAM pool of a network and the gateway Docker's IPAM chose in it (prefix included)."""

    pool: IPNetwork
    gateway: IPInterface | None = None

    def to_json(self) -> dict[str, str]:
        out = {SubnetRecord.POOL: str(self.pool)}
        if self.gateway is not None:
            out[SubnetRecord.GATEWAY] = str(self.gateway)
        return out

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Subnet:
        gateway = data.get(SubnetRecord.GATEWAY)
        return cls(
            pool=ipaddress.ip_network(data[SubnetRecord.POOL]),
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
        return self.bridge if self.vlan is None else contract.gateway_port_name(self.network_id)

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
        r = NetworkRecord
        binding = str(self.host_binding_ipv4) if self.host_binding_ipv4 else None
        data: dict[str, Any] = {
            r.DRIVER: self.driver,
            r.MTU: self.mtu,
            r.MODE: self.mode.value,
            r.INTERNAL: self.internal,
            r.VLAN: self.vlan,
            r.UPLINK: self.uplink,
            r.ICC: self.icc,
            r.MASQUERADE: self.masquerade,
            r.PORT_SECURITY: self.port_security,
            r.HOST_BINDING_IPV4: binding,
            r.IFACE_PREFIX: self.iface_prefix,
            r.IPV4: [s.to_json() for s in self.ipv4],
            r.IPV6: [s.to_json() for s in self.ipv6],
            r.OPTIONS: self.options,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, network_id: str, bridge: str, text: str) -> Network:
        r = NetworkRecord
        try:
            data = json.loads(text)
            binding = data.get(r.HOST_BINDING_IPV4)
            return cls(
                network_id=network_id,
                bridge=bridge,
                mtu=int(data[r.MTU]),
                driver=str(data.get(r.DRIVER, DEFAULT_DRIVER)),
                mode=Mode(data.get(r.MODE, Mode.NAT.value)),
                internal=bool(data.get(r.INTERNAL, False)),
                vlan=int(data[r.VLAN]) if data.get(r.VLAN) is not None else None,
                uplink=data.get(r.UPLINK),
                icc=bool(data.get(r.ICC, True)),
                masquerade=bool(data.get(r.MASQUERADE, True)),
                port_security=bool(data.get(r.PORT_SECURITY, True)),
                host_binding_ipv4=IPv4Address(binding) if binding else None,
                iface_prefix=str(data.get(r.IFACE_PREFIX, DEFAULT_IFACE_PREFIX)),
                ipv4=tuple(Subnet.from_json(s) for s in data.get(r.IPV4, [])),
                ipv6=tuple(Subnet.from_json(s) for s in data.get(r.IPV6, [])),
                options={str(k): str(v) for k, v in data.get(r.OPTIONS, {}).items()},
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
            PortRecord.PROTO: self.proto,
            PortRecord.CONTAINER_PORT: self.container_port,
            PortRecord.HOST_PORT: self.host_port,
            PortRecord.HOST_IP: str(self.host_ip) if self.host_ip else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortMapping:
        host_ip = data.get(PortRecord.HOST_IP)
        return cls(
            proto=str(data[PortRecord.PROTO]),
            container_port=int(data[PortRecord.CONTAINER_PORT]),
            host_port=int(data[PortRecord.HOST_PORT]),
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
        return contract.host_veth_name(self.endpoint_id)

    @property
    def container_if(self) -> str:
        return contract.container_veth_name(self.endpoint_id)

    @property
    def cookie(self) -> int:
        """OpenFlow cookie of the endpoint's flows: network id prefix, then endpoint id prefix."""
        return contract.endpoint_cookie(self.network_id, self.endpoint_id)

    def to_external_ids(self) -> dict[str, str]:
        c = contract
        ids = owned(
            {
                c.IFACE_ID_KEY: self.endpoint_id,
                c.ATTACHED_MAC_KEY: self.mac,
                c.IFACE_STATUS_KEY: c.IFACE_STATUS_ACTIVE,
                c.NETWORK_ID_KEY: self.network_id,
                c.DRIVER_KEY: self.driver,
                c.PORTMAP_KEY: json.dumps([p.to_json() for p in self.port_mappings]),
            }
        )
        if self.ipv4 is not None:
            ids[c.IPV4_ADDRESS_KEY] = str(self.ipv4)
        if self.ipv6 is not None:
            ids[c.IPV6_ADDRESS_KEY] = str(self.ipv6)
        return ids

    @classmethod
    def from_external_ids(cls, ids: dict[str, str]) -> Endpoint:
        c = contract
        try:
            v4 = ids.get(c.IPV4_ADDRESS_KEY)
            v6 = ids.get(c.IPV6_ADDRESS_KEY)
            return cls(
                endpoint_id=ids[c.IFACE_ID_KEY],
                network_id=ids[c.NETWORK_ID_KEY],
                mac=ids[c.ATTACHED_MAC_KEY],
                ipv4=IPv4Interface(v4) if v4 else None,
                ipv6=IPv6Interface(v6) if v6 else None,
                port_mappings=tuple(
                    PortMapping.from_json(p) for p in json.loads(ids.get(c.PORTMAP_KEY, "[]"))
                ),
                driver=ids.get(c.DRIVER_KEY, DEFAULT_DRIVER),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise CorruptState(f"interface with external_ids {ids}: unreadable ({e})") from e


# -- overlay networks (OVN) -------------------------------------------------------------------


@dataclass(frozen=True)
class OverlayNetwork:
    """This host's Docker network on a cluster-wide overlay pool (a Logical_Switch).

    The pool (subnet, gateway) is the cluster's; the rest is this host's, recorded as JSON under
    the switch's host_network_key(<system-id>)."""

    network_id: str
    pool_id: str
    subnet: IPv4Network
    bridge: str  # the integration bridge its ports go on
    mtu: int
    gateway: IPv4Address | None = None
    port_security: bool = True
    iface_prefix: str = DEFAULT_IFACE_PREFIX
    driver: str = DEFAULT_DRIVER
    options: dict[str, str] = field(default_factory=dict)
    router: str | None = None  # -o ovs.router=NAME

    def to_json(self) -> str:
        r = contract.OverlayRecord
        data: dict[str, Any] = {
            r.NETWORK_ID: self.network_id,
            r.MTU: self.mtu,
            r.PORT_SECURITY: self.port_security,
            r.IFACE_PREFIX: self.iface_prefix,
            r.OPTIONS: self.options,
        }
        if self.router is not None:
            data[r.ROUTER] = self.router
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(
        cls,
        text: str,
        *,
        pool_id: str,
        subnet: IPv4Network,
        gateway: IPv4Address | None,
        bridge: str,
        driver: str,
    ) -> OverlayNetwork:
        r = contract.OverlayRecord
        try:
            data = json.loads(text)
            return cls(
                network_id=str(data[r.NETWORK_ID]),
                pool_id=pool_id,
                subnet=subnet,
                gateway=gateway,
                bridge=bridge,
                mtu=int(data[r.MTU]),
                port_security=bool(data.get(r.PORT_SECURITY, True)),
                iface_prefix=str(data.get(r.IFACE_PREFIX, DEFAULT_IFACE_PREFIX)),
                driver=driver,
                options={str(k): str(v) for k, v in data.get(r.OPTIONS, {}).items()},
                router=str(data[r.ROUTER]) if data.get(r.ROUTER) is not None else None,
            )
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise CorruptState(f"switch {pool_id}: unreadable network record ({e})") from e


def recorded_network_id(record: str) -> str | None:
    """The Docker network id in an OverlayRecord (None when unreadable)."""
    try:
        return str(json.loads(record)[contract.OverlayRecord.NETWORK_ID])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class OverlayEndpoint:
    """A container's port on an overlay network: its reservation's logical port, bound."""

    endpoint_id: str
    network_id: str
    pool_id: str
    mac: str
    ipv4: IPv4Interface
    driver: str = DEFAULT_DRIVER

    @property
    def host_if(self) -> str:
        return contract.overlay_host_veth_name(self.endpoint_id)

    @property
    def container_if(self) -> str:
        return contract.overlay_container_veth_name(self.endpoint_id)

    @property
    def logical_port(self) -> str:
        return contract.reservation_name(self.pool_id, str(self.ipv4.ip))

    def to_external_ids(self) -> dict[str, str]:
        c = contract
        return owned(
            {
                # iface-id is what ovn-controller matches to the logical port
                c.IFACE_ID_KEY: self.logical_port,
                c.ATTACHED_MAC_KEY: self.mac,
                c.IFACE_STATUS_KEY: c.IFACE_STATUS_ACTIVE,
                c.ROLE_KEY: c.ROLE_OVERLAY,
                c.ENDPOINT_ID_KEY: self.endpoint_id,
                c.NETWORK_ID_KEY: self.network_id,
                c.POOL_SWITCH_KEY: self.pool_id,
                c.IPV4_ADDRESS_KEY: str(self.ipv4),
                c.DRIVER_KEY: self.driver,
            }
        )

    @classmethod
    def from_external_ids(cls, ids: dict[str, str]) -> OverlayEndpoint:
        c = contract
        try:
            return cls(
                endpoint_id=ids[c.ENDPOINT_ID_KEY],
                network_id=ids[c.NETWORK_ID_KEY],
                pool_id=ids[c.POOL_SWITCH_KEY],
                mac=ids[c.ATTACHED_MAC_KEY],
                ipv4=IPv4Interface(ids[c.IPV4_ADDRESS_KEY]),
                driver=ids.get(c.DRIVER_KEY, DEFAULT_DRIVER),
            )
        except (KeyError, ValueError) as e:
            raise CorruptState(f"overlay interface {ids}: unreadable ({e})") from e
