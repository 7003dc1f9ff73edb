"""Read-only view of OVS ports for `docker-ovs-plugin status` (Docker's names come from
adapters.docker_api). Never used while serving Docker."""

from __future__ import annotations

from typing import Any, cast

from docker_ovs_plugin.service.ports import PortInfo

_COUNTERS = (
    "rx_packets",
    "tx_packets",
    "rx_bytes",
    "tx_bytes",
    "rx_dropped",
    "tx_dropped",
    "rx_errors",
    "tx_errors",
)


def _optional_int(value: Any) -> int | None:
    """An optional OVSDB integer column: the IDL gives a list of zero or one element."""
    if isinstance(value, list):
        return int(value[0]) if value else None
    return int(value) if value is not None else None


def _optional_str(value: Any) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return str(value) if value is not None else None


class OvsdbPorts:
    """Ports, their interfaces and bridges from the OVSDB IDL's replica (no transaction)."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def _rows(self, table: str) -> list[Any]:
        return cast(list[Any], self._api.db_find_rows(table).execute(check_error=True))

    def ports(self) -> dict[str, PortInfo]:
        bridge_of = {str(p.name): str(br.name) for br in self._rows("Bridge") for p in br.ports}
        tags = {str(p.name): _optional_int(p.tag) for p in self._rows("Port")}
        out = {}
        for iface in self._rows("Interface"):
            name = str(iface.name)
            stats = {str(k): int(v) for k, v in dict(iface.statistics).items()}
            out[name] = PortInfo(
                bridge=bridge_of.get(name),
                ofport=_optional_int(iface.ofport),
                vlan=tags.get(name),
                link_state=_optional_str(iface.link_state),
                statistics={k: stats[k] for k in _COUNTERS if k in stats},
            )
        return out
