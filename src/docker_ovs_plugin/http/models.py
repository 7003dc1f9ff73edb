"""Request bodies of the libnetwork remote driver protocol, validated at the edge.

Field names are Docker's (Go-style capitals). Unknown fields are ignored, as Docker's own decoder
does; missing required ones and wrong types are refused before anything is changed.
"""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from docker_ovs_plugin.service.model import PortMapping, Subnet

DockerId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

GENERIC = "com.docker.network.generic"
INTERNAL = "com.docker.network.internal"
_MAC_RE = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class IPAMData(_Request):
    AddressSpace: str = ""
    Pool: str
    Gateway: str | None = None
    AuxAddresses: dict[str, str] | None = None

    def to_subnet(self) -> Subnet | None:
        """None for the null IPAM's placeholder pool 0.0.0.0/0 (no addresses managed)."""
        try:
            pool = ipaddress.ip_network(self.Pool)
        except ValueError as e:
            raise ValueError(f"Pool {self.Pool!r}: {e}") from None
        if pool.prefixlen == 0:
            return None
        gateway = None
        if self.Gateway:
            try:
                gw = self.Gateway if "/" in self.Gateway else f"{self.Gateway}/{pool.prefixlen}"
                gateway = ipaddress.ip_interface(gw)
            except ValueError as e:
                raise ValueError(f"Gateway {self.Gateway!r}: {e}") from None
            if gateway.ip not in pool or gateway.version != pool.version:
                raise ValueError(f"Gateway {self.Gateway} is not inside pool {self.Pool}")
        return Subnet(pool=pool, gateway=gateway)


class CreateNetworkRequest(_Request):
    NetworkID: DockerId
    Options: dict[str, Any] = Field(default_factory=dict)
    IPv4Data: list[IPAMData] | None = None
    IPv6Data: list[IPAMData] | None = None

    @field_validator("Options", mode="before")
    @classmethod
    def _null_options(cls, v: Any) -> Any:
        return {} if v is None else v

    @property
    def generic_options(self) -> dict[str, Any]:
        generic = self.Options.get(GENERIC) or {}
        if not isinstance(generic, dict):
            raise ValueError(f"Options.{GENERIC} must be an object")
        return generic

    @property
    def internal(self) -> bool:
        return self.Options.get(INTERNAL) is True

    @property
    def address_space(self) -> str:
        """The IPAM address space of the IPv4 pools ("" without any)."""
        return self.IPv4Data[0].AddressSpace if self.IPv4Data else ""

    def subnets(self, data: list[IPAMData] | None, version: int) -> list[Subnet]:
        out = []
        for item in data or []:
            subnet = item.to_subnet()
            if subnet is None:
                continue
            if subnet.pool.version != version:
                raise ValueError(f"IPv{version}Data holds an IPv{subnet.pool.version} pool")
            out.append(subnet)
        return out


class NetworkRequest(_Request):
    NetworkID: DockerId


class EndpointRequest(_Request):
    NetworkID: DockerId
    EndpointID: DockerId


class EndpointInterface(_Request):
    Address: str = ""
    AddressIPv6: str = ""
    MacAddress: str = ""

    @property
    def ipv4(self) -> IPv4Interface | None:
        return IPv4Interface(self.Address) if self.Address else None

    @property
    def ipv6(self) -> IPv6Interface | None:
        return IPv6Interface(self.AddressIPv6) if self.AddressIPv6 else None

    @field_validator("Address")
    @classmethod
    def _v4(cls, v: str) -> str:
        if v:
            IPv4Interface(v)
        return v

    @field_validator("MacAddress")
    @classmethod
    def _mac(cls, v: str) -> str:
        if v and not _MAC_RE.match(v):
            raise ValueError(f"{v!r} is not a MAC address like 02:42:0a:00:00:02")
        return v.lower()

    @field_validator("AddressIPv6")
    @classmethod
    def _v6(cls, v: str) -> str:
        if v:
            IPv6Interface(v)
        return v


class CreateEndpointRequest(EndpointRequest):
    Interface: EndpointInterface = Field(default_factory=EndpointInterface)
    Options: dict[str, Any] | None = None

    @field_validator("Interface", mode="before")
    @classmethod
    def _null_interface(cls, v: Any) -> Any:
        return {} if v is None else v


PORTMAP = "com.docker.network.portmap"
_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}


class PortBinding(_Request):
    """One entry of com.docker.network.portmap (libnetwork types.PortBinding)."""

    Proto: int
    IP: str = ""
    Port: int = Field(ge=1, le=65535)
    HostIP: str = ""
    HostPort: int = Field(default=0, ge=0, le=65535)
    HostPortEnd: int = Field(default=0, ge=0, le=65535)

    @field_validator("Proto")
    @classmethod
    def _proto(cls, v: int) -> int:
        if v not in _PROTOCOLS:
            raise ValueError(f"protocol number {v} is not tcp (6), udp (17) or sctp (132)")
        return v

    @field_validator("HostIP")
    @classmethod
    def _host_ip(cls, v: str) -> str:
        if v:
            ipaddress.ip_address(v)
        return v

    def to_mapping(self) -> PortMapping | None:
        """None for the IPv6 wildcard `::` (beside an IPv4 binding of the same port, see
        ExternalConnectivityRequest): published ports answer on the host's IPv4 addresses.
        An IPv6 host address is refused: nothing here could publish on it."""
        address = ipaddress.ip_address(self.HostIP) if self.HostIP else None
        if address is not None and not isinstance(address, IPv4Address):
            if not address.is_unspecified:
                raise ValueError(
                    f"-p [{address}]:{self.HostPort}: ovs networks publish ports on the host's "
                    "IPv4 addresses only; publish on an IPv4 address (or 0.0.0.0) instead"
                )
            return None
        host_ip = None if address is None or address.is_unspecified else address
        return PortMapping(
            proto=_PROTOCOLS[self.Proto],
            container_port=self.Port,
            host_port=self.HostPort,
            host_ip=host_ip,
        )


class ExternalConnectivityRequest(EndpointRequest):
    Options: dict[str, Any] | None = None

    @property
    def port_mappings(self) -> list[PortMapping]:
        raw = (self.Options or {}).get(PORTMAP) or []
        if not isinstance(raw, list):
            raise ValueError(f"Options.{PORTMAP} must be a list")
        bindings = [PortBinding.model_validate(b) for b in raw]
        mappings = [m for b in bindings if (m := b.to_mapping()) is not None]
        published = {(m.proto, m.host_port) for m in mappings}
        for b in bindings:
            # `-p [::]:8080:80` alone would publish nothing at all: say so.
            if (_PROTOCOLS[b.Proto], b.HostPort) not in published:
                raise ValueError(
                    f"-p [::]:{b.HostPort}: ovs networks publish ports on the host's IPv4 "
                    "addresses only; publish on 0.0.0.0 (or leave the address out) instead"
                )
        return mappings


class JoinRequest(EndpointRequest):
    SandboxKey: str = ""
    Options: dict[str, Any] | None = None


# -- remote IPAM (/IpamDriver.*) ------------------------------------------------------------


class RequestPoolRequest(_Request):
    AddressSpace: str = ""
    Pool: str = ""
    SubPool: str = ""
    Options: dict[str, Any] | None = None
    V6: bool = False


class PoolRequest(_Request):
    PoolID: str = Field(min_length=1)


class RequestAddressRequest(PoolRequest):
    Address: str = ""
    Options: dict[str, Any] | None = None


class ReleaseAddressRequest(PoolRequest):
    Address: str = Field(min_length=1)
