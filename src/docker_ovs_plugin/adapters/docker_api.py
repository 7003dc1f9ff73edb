"""What Docker knows about our networks, through its API (docker SDK over the unix socket).

Only the background reconciler and the status command call this: dockerd holds its network
locks while it waits for a plugin, so asking Docker from inside a request handler can deadlock
both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from ipaddress import IPv4Interface
from typing import Any

from docker_ovs_plugin.service.overlay_reconcile import DockerNetworkView
from docker_ovs_plugin.service.ports import Attachment, DockerNetwork


class DockerApi:
    def __init__(self, driver_name: str, base_url: str, timeout: float = 10.0) -> None:
        self._driver_name = driver_name
        self._base_url = base_url
        self._timeout = timeout

    def _client(self) -> Any:
        # Imported here, off the start path: it costs a tenth of the plugin's start.
        import docker  # noqa: PLC0415

        return docker.APIClient(base_url=self._base_url, timeout=self._timeout)

    def endpoints_by_network(self) -> dict[str, set[str]]:
        client = self._client()
        try:
            found: dict[str, set[str]] = {}
            for net in client.networks(filters={"driver": self._driver_name}):
                info = client.inspect_network(net["Id"])
                containers = info.get("Containers") or {}
                found[info["Id"]] = {c["EndpointID"] for c in containers.values()}
            return found
        finally:
            client.close()

    def network_view(self) -> dict[str, DockerNetworkView]:
        """Endpoints, container addresses and subnets of every network of this driver."""
        client = self._client()
        try:
            found = {}
            for net in client.networks(filters={"driver": self._driver_name}):
                info = client.inspect_network(net["Id"])
                containers = (info.get("Containers") or {}).values()
                addresses = set()
                for c in containers:
                    with contextlib.suppress(ValueError):
                        addresses.add(IPv4Interface(c.get("IPv4Address") or "").ip)
                config = (info.get("IPAM") or {}).get("Config") or []
                found[str(info["Id"])] = DockerNetworkView(
                    endpoints=frozenset(str(c["EndpointID"]) for c in containers),
                    addresses=frozenset(addresses),
                    subnets=frozenset(str(s["Subnet"]) for s in config if s.get("Subnet")),
                )
            return found
        finally:
            client.close()

    def networks(self, network_ids: Iterable[str]) -> dict[str, DockerNetwork]:
        """Names of networks and which container holds which endpoint (for status)."""
        import docker.errors  # noqa: PLC0415

        client = self._client()
        try:
            found = {}
            for network_id in network_ids:
                try:
                    info = client.inspect_network(network_id)
                except docker.errors.NotFound:
                    continue
                containers = info.get("Containers") or {}
                found[str(info["Id"])] = DockerNetwork(
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
