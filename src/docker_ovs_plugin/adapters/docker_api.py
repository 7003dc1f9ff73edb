"""What Docker knows about our networks, through its API (docker SDK over the unix socket).

Only the background reconciler and the status command call this: dockerd holds its network
locks while it waits for a plugin, so asking Docker from inside a request handler can deadlock
both.

A network is asked about by its own id, never found by listing networks by driver name: the
name Docker shows as a network's driver is whatever the user typed (a managed plugin's alias,
NAME:TAG, a renamed driver), and a network missing from such a list is not gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Interface
from typing import Any

from docker_ovs_plugin.service.overlay_reconcile import DockerNetworkView
from docker_ovs_plugin.service.ports import Attachment, DockerNetwork


class DockerApi:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._base_url = base_url
        self._timeout = timeout

    def _client(self) -> Any:
        # Imported here, off the start path: it costs a tenth of the plugin's start.
        import docker  # noqa: PLC0415

        return docker.APIClient(base_url=self._base_url, timeout=self._timeout)

    @staticmethod
    def _inspect(client: Any, network_id: str) -> Mapping[str, Any] | None:
        """The network of exactly this id; None only when Docker says it has no such network."""
        import docker.errors  # noqa: PLC0415

        try:
            info: Mapping[str, Any] = client.inspect_network(network_id)
        except docker.errors.NotFound:
            return None
        # Inspect also matches names and id prefixes: only the exact id is this network.
        return info if info.get("Id") == network_id else None

    def endpoints_of(self, network_ids: Iterable[str]) -> dict[str, set[str]]:
        """Endpoint ids of each of these networks that Docker still has, by network id."""
        client = self._client()
        try:
            found: dict[str, set[str]] = {}
            for network_id in network_ids:
                info = self._inspect(client, network_id)
                if info is not None:
                    containers = info.get("Containers") or {}
                    found[network_id] = {str(c["EndpointID"]) for c in containers.values()}
            return found
        finally:
            client.close()

    def network_view(
        self, network_ids: Iterable[str], subnets: Iterable[str]
    ) -> dict[str, DockerNetworkView]:
        """Each of `network_ids` Docker still has, and every other network on one of `subnets`
        whatever its driver is called (it may hold addresses of our pools)."""
        client = self._client()
        try:
            infos = {}
            for network_id in network_ids:
                info = self._inspect(client, network_id)
                if info is not None:
                    infos[network_id] = info
            wanted = set(subnets)
            for net in client.networks():
                config = (net.get("IPAM") or {}).get("Config") or []
                on_ours = any(c.get("Subnet") in wanted for c in config)
                if on_ours and net["Id"] not in infos:
                    info = self._inspect(client, str(net["Id"]))
                    if info is not None:
                        infos[str(net["Id"])] = info
            return {network_id: _view(info) for network_id, info in infos.items()}
        finally:
            client.close()

    def networks(self, network_ids: Iterable[str]) -> dict[str, DockerNetwork]:
        """Names of networks and which container holds which endpoint (for status)."""
        client = self._client()
        try:
            found = {}
            for network_id in network_ids:
                info = self._inspect(client, network_id)
                if info is None:
                    continue
                containers = info.get("Containers") or {}
                found[network_id] = DockerNetwork(
                    name=str(info.get("Name", "")),
                    driver=str(info.get("Driver", "")),
                    attachments={
                        str(c["EndpointID"]): Attachment(
                            container_id=str(cid), container=str(c.get("Name", ""))
                        )
                        for cid, c in containers.items()
                    },
                )
            return found
        finally:
            client.close()


def _view(info: Mapping[str, Any]) -> DockerNetworkView:
    containers = (info.get("Containers") or {}).values()
    addresses = set()
    for c in containers:
        with contextlib.suppress(ValueError):
            addresses.add(IPv4Interface(c.get("IPv4Address") or "").ip)
    config = (info.get("IPAM") or {}).get("Config") or []
    return DockerNetworkView(
        endpoints=frozenset(str(c["EndpointID"]) for c in containers),
        addresses=frozenset(addresses),
        subnets=frozenset(str(s["Subnet"]) for s in config if s.get("Subnet")),
    )
