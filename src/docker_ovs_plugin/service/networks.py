"""Which use cases serve a request: bridge networks (Driver) or overlay ones (Overlay).

CreateNetwork decides by `-o ovs.mode`; every later request by the network it names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Interface, IPv6Interface
from typing import Any, Protocol

from docker_ovs_plugin.contract import ADDRESS_SPACE, MODE_OVERLAY
from docker_ovs_plugin.service.driver import Driver, JoinInfo
from docker_ovs_plugin.service.errors import InvalidRequest
from docker_ovs_plugin.service.model import PortMapping, Subnet
from docker_ovs_plugin.service.options import MODE, is_overlay
from docker_ovs_plugin.service.overlay import Overlay


class Backend(Protocol):
    """What Driver and Overlay both serve, once a network exists."""

    def delete_network(self, network_id: str) -> None: ...

    def create_endpoint(
        self,
        network_id: str,
        endpoint_id: str,
        *,
        ipv4: IPv4Interface | None,
        ipv6: IPv6Interface | None,
        mac: str | None,
    ) -> str | None: ...

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None: ...

    def join(self, network_id: str, endpoint_id: str) -> JoinInfo: ...

    def leave(self, network_id: str, endpoint_id: str) -> None: ...

    def endpoint_info(self, network_id: str, endpoint_id: str) -> dict[str, Any]: ...

    def program_external(
        self, network_id: str, endpoint_id: str, mappings: Sequence[PortMapping]
    ) -> None: ...

    def revoke_external(self, network_id: str, endpoint_id: str) -> None: ...


class Networks:
    def __init__(self, driver: Driver, overlay: Overlay | None) -> None:
        self._driver = driver
        self._overlay = overlay

    def create_network(
        self,
        network_id: str,
        generic_options: Mapping[str, Any],
        ipv4: Sequence[Subnet],
        ipv6: Sequence[Subnet],
        *,
        internal: bool,
        address_space: str,
    ) -> None:
        if is_overlay(dict(generic_options)):
            if self._overlay is None:
                raise InvalidRequest(
                    f"{MODE}={MODE_OVERLAY} needs the plugin started with --ovn-nb REMOTES "
                    "(the OVN northbound database of the cluster)"
                )
            self._overlay.create_network(
                network_id,
                generic_options,
                ipv4,
                ipv6,
                internal=internal,
                address_space=address_space,
            )
            return
        if address_space == ADDRESS_SPACE:
            raise InvalidRequest(
                f"the {self._driver.name} IPAM driver serves overlay networks only: add "
                f"-o {MODE}={MODE_OVERLAY}, or leave out --ipam-driver"
            )
        self._driver.create_network(network_id, generic_options, ipv4, ipv6, internal=internal)

    def backend(self, network_id: str) -> Backend:
        if self._overlay is not None and self._overlay.has_network(network_id):
            return self._overlay
        if (
            self._overlay is not None
            and not self._overlay.loaded
            and all(n.network_id != network_id for n in self._driver.networks())
        ):
            # Perhaps an overlay network whose state is not loaded (northbound unreachable):
            # say so rather than "no such network".
            self._overlay.check_ready()
        return self._driver
