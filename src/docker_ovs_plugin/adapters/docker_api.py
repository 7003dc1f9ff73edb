"""What Docker knows about our networks, through its API (docker SDK over the unix socket).

Only the background reconciler calls this: dockerd holds its network locks while it waits for a
plugin, so asking Docker from inside a request handler can deadlock both.
"""

from __future__ import annotations

from typing import Any

import docker


class DockerApi:
    def __init__(self, driver_name: str, base_url: str, timeout: float = 10.0) -> None:
        self._driver_name = driver_name
        self._base_url = base_url
        self._timeout = timeout

    def endpoints_by_network(self) -> dict[str, set[str]]:
        client: Any = docker.APIClient(base_url=self._base_url, timeout=self._timeout)
        try:
            found: dict[str, set[str]] = {}
            for net in client.networks(filters={"driver": self._driver_name}):
                info = client.inspect_network(net["Id"])
                containers = info.get("Containers") or {}
                found[info["Id"]] = {c["EndpointID"] for c in containers.values()}
            return found
        finally:
            client.close()
