"""`docker-ovs-plugin status`: which container sits on which OVS port.

The networks and endpoints come from OVSDB (the plugin's own records), the ports' ofport, VLAN
tag and packet counters from the Interface/Port rows (ovs-vswitchd refreshes `statistics` every
few seconds), and network and container names from Docker's API. Works whether or not the plugin
is running; what Docker does not know (or Docker being down) shows as "-" with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from docker_ovs_plugin.service.model import Endpoint, Network, PortMapping
from docker_ovs_plugin.service.ports import DockerNetwork, PortInfo

MISSING = "-"


class Records(Protocol):
    def list_networks(self) -> list[Network]: ...

    def list_endpoints(self) -> list[Endpoint]: ...


class Ports(Protocol):
    def ports(self) -> dict[str, PortInfo]:
        """Every interface by name."""


class DockerNames(Protocol):
    def networks(self, network_ids: Iterable[str]) -> dict[str, DockerNetwork]:
        """The networks Docker knows among `network_ids`, by id. Raises when Docker fails."""


@dataclass(frozen=True)
class EndpointStatus:
    endpoint_id: str
    container: str | None
    container_id: str | None
    ipv4: str | None
    ipv6: str | None
    mac: str
    port: str
    ofport: int | None
    vlan: int | None
    link_state: str | None
    statistics: Mapping[str, int]
    # Published ports, as `docker ps` would show them (it shows none for remote drivers).
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkStatus:
    network_id: str
    name: str | None
    driver: str
    bridge: str
    mode: str
    vlan: int | None
    uplink: str | None
    internal: bool
    subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    endpoints: tuple[EndpointStatus, ...]


@dataclass(frozen=True)
class Report:
    driver: str | None  # None: every driver name (every plugin instance) on this OVS
    networks: tuple[NetworkStatus, ...]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "networks": [
                {
                    "id": n.network_id,
                    **{k: v for k, v in asdict(n).items() if k not in ("network_id", "endpoints")},
                    "subnets": list(n.subnets),
                    "gateways": list(n.gateways),
                    "endpoints": [
                        {
                            "id": e.endpoint_id,
                            **{k: v for k, v in asdict(e).items() if k != "endpoint_id"},
                            "statistics": dict(e.statistics),
                            "ports": list(e.ports),
                        }
                        for e in n.endpoints
                    ],
                }
                for n in self.networks
            ],
            "warnings": list(self.warnings),
        }


def collect(
    records: Records, ports: Ports, docker: DockerNames | None, driver: str | None
) -> Report:
    """The report for one driver name (or all of them when `driver` is None)."""
    networks = [n for n in records.list_networks() if driver is None or n.driver == driver]
    ids = {n.network_id for n in networks}
    endpoints = [e for e in records.list_endpoints() if e.network_id in ids]
    warnings: list[str] = []
    known: dict[str, DockerNetwork] = {}
    asked = docker is not None and bool(networks)
    if docker is not None and networks:
        try:
            known = docker.networks(sorted(ids))
        except Exception as e:  # Docker down: OVS's side is still worth showing
            asked = False
            warnings.append(f"cannot ask Docker for names ({e}); showing OVS's side only")
    port_info = ports.ports()
    out = []
    for net in sorted(networks, key=lambda n: (n.driver, n.bridge, n.network_id)):
        dnet = known.get(net.network_id)
        if asked and dnet is None:
            warnings.append(f"network {net.network_id[:12]} (bridge {net.bridge}) is not in Docker")
        eps = []
        for ep in sorted(
            (e for e in endpoints if e.network_id == net.network_id), key=lambda e: e.host_if
        ):
            attached = dnet.attachments.get(ep.endpoint_id) if dnet is not None else None
            info = port_info.get(ep.host_if)
            if info is None:
                warnings.append(
                    f"port {ep.host_if} of endpoint {ep.endpoint_id[:12]} is not in OVS"
                )
            eps.append(
                EndpointStatus(
                    endpoint_id=ep.endpoint_id,
                    container=attached.container if attached else None,
                    container_id=attached.container_id if attached else None,
                    ipv4=str(ep.ipv4) if ep.ipv4 else None,
                    ipv6=str(ep.ipv6) if ep.ipv6 else None,
                    mac=ep.mac,
                    port=ep.host_if,
                    ofport=info.ofport if info else None,
                    vlan=info.vlan if info else None,
                    link_state=info.link_state if info else None,
                    statistics=dict(info.statistics) if info else {},
                    ports=tuple(_published(m) for m in ep.port_mappings),
                )
            )
        eps.sort(key=lambda e: (e.container is None, e.container or "", e.port))
        out.append(
            NetworkStatus(
                network_id=net.network_id,
                name=dnet.name if dnet else None,
                driver=net.driver,
                bridge=net.bridge,
                mode=net.mode.value,
                vlan=net.vlan,
                uplink=net.uplink,
                internal=net.internal,
                subnets=tuple(str(s.pool) for s in (*net.ipv4, *net.ipv6)),
                gateways=tuple(str(g.ip) for g in net.gateways),
                endpoints=tuple(eps),
            )
        )
    return Report(driver=driver, networks=tuple(out), warnings=tuple(warnings))


# -- rendering -------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None or value == "":
        return MISSING
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _published(m: PortMapping) -> str:
    host = str(m.host_ip) if m.host_ip else "0.0.0.0"  # noqa: S104 (a label, not a bind)
    return f"{host}:{m.host_port}->{m.container_port}/{m.proto}"


def _address(ep: EndpointStatus) -> str:
    addrs = [a.split("/")[0] for a in (ep.ipv4, ep.ipv6) if a]
    return ",".join(addrs)


def _counter(ep: EndpointStatus, key: str) -> str:
    return _cell(ep.statistics.get(key))


def render_table(report: Report) -> str:
    """Two aligned tables: networks, then endpoints (one row per container port)."""
    if not report.networks:
        who = f"driver {report.driver!r}" if report.driver is not None else "any driver"
        lines = [f"no networks of {who} in Open vSwitch"]
    else:
        nets = [
            [
                n.network_id[:12],
                _cell(n.name),
                n.driver,
                n.bridge,
                n.mode + (" internal" if n.internal else ""),
                _cell(n.vlan),
                _cell(",".join(n.subnets)),
                _cell(",".join(n.gateways)),
                str(len(n.endpoints)),
            ]
            for n in report.networks
        ]
        lines = _table(
            ["NETWORK ID", "NAME", "DRIVER", "BRIDGE", "MODE", "VLAN", "SUBNETS", "GATEWAYS",
             "ENDPOINTS"],
            nets,
            numeric={8},
        )  # fmt: skip
        eps = [
            [
                _cell(e.container),
                _cell(n.name) if n.name else n.network_id[:12],
                _cell(_address(e)),
                e.mac,
                e.port,
                _cell(e.ofport),
                _cell(e.vlan),
                _counter(e, "rx_packets"),
                _counter(e, "tx_packets"),
                _counter(e, "rx_dropped"),
                _counter(e, "tx_dropped"),
                _cell(",".join(e.ports)),
            ]
            for n in report.networks
            for e in n.endpoints
        ]
        lines.append("")
        if eps:
            lines += _table(
                ["CONTAINER", "NETWORK", "IP", "MAC", "OVS PORT", "OFPORT", "VLAN", "RX PKTS",
                 "TX PKTS", "RX DROP", "TX DROP", "PORTS"],
                eps,
                numeric={5, 6, 7, 8, 9, 10},
            )  # fmt: skip
        else:
            lines.append("no endpoints")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"
