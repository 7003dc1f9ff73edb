"""This host's Docker networks, read and changed through its API, for the network sync.

Only the background sync calls this (see service/sync.py): dockerd holds its locks while it
waits for a plugin, so a Docker call from inside a request, or while dockerd activates the
plugin, can deadlock both. Every call is bounded by the client's timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from docker_ovs_plugin.adapters.docker_api import DockerApi
from docker_ovs_plugin.service.ports import LocalNetwork


def _local(info: Mapping[str, Any]) -> LocalNetwork:
    ipam = info.get("IPAM") or {}
    return LocalNetwork(
        network_id=str(info["Id"]),
        name=str(info.get("Name", "")),
        driver=str(info.get("Driver", "")),
        options={str(k): str(v) for k, v in (info.get("Options") or {}).items()},
        ipam_driver=str(ipam.get("Driver", "")),
        ipam_options={str(k): str(v) for k, v in (ipam.get("Options") or {}).items()},
        subnets=tuple(
            (str(cfg.get("Subnet", "")), str(cfg.get("Gateway", "")))
            for cfg in ipam.get("Config") or []
        ),
        containers=len(info.get("Containers") or {}),
    )


class DockerNetworksApi(DockerApi):
    def network(self, network_id: str) -> LocalNetwork | None:
        client = self._client()
        try:
            info = self._inspect(client, network_id)
            return None if info is None else _local(info)
        finally:
            client.close()

    def network_named(self, name: str) -> LocalNetwork | None:
        import docker.errors  # noqa: PLC0415

        client = self._client()
        try:
            # The name filter matches substrings: keep the exact name only.
            for net in client.networks(names=[name]):
                if net.get("Name") == name:
                    try:
                        return _local(client.inspect_network(net["Id"]))
                    except docker.errors.NotFound:
                        return None
            return None
        finally:
            client.close()

    def create_network(
        self,
        name: str,
        *,
        driver: str,
        options: Mapping[str, str],
        ipam_driver: str,
        subnet: str,
        gateway: str | None,
        ipam_options: Mapping[str, str],
    ) -> str:
        from docker.types import IPAMConfig, IPAMPool  # noqa: PLC0415

        client = self._client()
        try:
            created = client.create_network(
                name,
                driver=driver,
                options=dict(options),
                ipam=IPAMConfig(
                    driver=ipam_driver,
                    pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)],
                    options=dict(ipam_options) or None,
                ),
                check_duplicate=True,
            )
            return str(created["Id"])
        finally:
            client.close()

    def remove_network(self, network_id: str) -> None:
        client = self._client()
        try:
            client.remove_network(network_id)
        finally:
            client.close()
