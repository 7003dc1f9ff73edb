"""The driver's in-memory view of its networks and endpoints.

Only a cache: OVSDB is the durable record, and `Driver.load()` refills this from it. Every method
takes the store's own lock for the time of one read or write and returns copies, so no caller
holds a lock while it talks to OVS, and a compound read (a network with its bridge's other
networks and its endpoints) is one consistent snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from docker_ovs_plugin.service.errors import NotFound


class _NetworkLike(Protocol):
    @property
    def network_id(self) -> str: ...

    @property
    def bridge(self) -> str: ...


class _EndpointLike(Protocol):
    @property
    def endpoint_id(self) -> str: ...

    @property
    def network_id(self) -> str: ...


N = TypeVar("N", bound=_NetworkLike)
E = TypeVar("E", bound=_EndpointLike)


@dataclass(frozen=True)
class NetworkView(Generic[N, E]):
    """A network, the other networks on a bridge, and its endpoints, read at one instant."""

    network: N
    peers: list[N]
    endpoints: list[E]


class Store(Generic[N, E]):
    """Bridge networks (Store[Network, Endpoint]) or overlay ones, each in a store of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._networks: dict[str, N] = {}
        self._endpoints: dict[str, E] = {}

    # -- reads -----------------------------------------------------------------------------

    def get_network(self, network_id: str) -> N | None:
        with self._lock:
            return self._networks.get(network_id)

    def get_endpoint(self, endpoint_id: str) -> E | None:
        with self._lock:
            return self._endpoints.get(endpoint_id)

    def require_network(self, network_id: str, unknown: str) -> N:
        """The network, or NotFound saying `unknown` (what kind of network it is not)."""
        net = self.get_network(network_id)
        if net is None:
            raise NotFound(f"network {network_id[:12]} is not {unknown}")
        return net

    def require_endpoint(self, network_id: str, endpoint_id: str) -> E:
        """The endpoint if it is on that network, or NotFound."""
        ep = self.get_endpoint(endpoint_id)
        if ep is None or ep.network_id != network_id:
            raise NotFound(
                f"endpoint {endpoint_id[:12]} does not exist on network {network_id[:12]}"
            )
        return ep

    def networks(self) -> list[N]:
        with self._lock:
            return list(self._networks.values())

    def endpoints(self) -> list[E]:
        with self._lock:
            return list(self._endpoints.values())

    def network_and_endpoint(self, network_id: str, endpoint_id: str) -> tuple[N | None, E | None]:
        """Both at one instant (the endpoint whatever network it is on)."""
        with self._lock:
            return self._networks.get(network_id), self._endpoints.get(endpoint_id)

    def view(self, network_id: str, bridge: str) -> NetworkView[N, E] | None:
        """The network with the others on `bridge` and its endpoints; None if it is unknown.

        `bridge` is the one the caller locked, named apart from the network's own in case
        the network was replaced meanwhile."""
        with self._lock:
            net = self._networks.get(network_id)
            if net is None:
                return None
            return NetworkView(
                network=net,
                peers=[
                    n
                    for n in self._networks.values()
                    if n.bridge == bridge and n.network_id != network_id
                ],
                endpoints=[e for e in self._endpoints.values() if e.network_id == network_id],
            )

    # -- writes ----------------------------------------------------------------------------

    def replace_all(self, networks: Iterable[N], endpoints: Iterable[E]) -> None:
        networks_by_id = {n.network_id: n for n in networks}
        endpoints_by_id = {e.endpoint_id: e for e in endpoints}
        with self._lock:
            self._networks = networks_by_id
            self._endpoints = endpoints_by_id

    def put_network(self, network: N) -> None:
        with self._lock:
            self._networks[network.network_id] = network

    def remove_network(self, network_id: str) -> None:
        with self._lock:
            self._networks.pop(network_id, None)

    def put_endpoint(self, endpoint: E) -> None:
        with self._lock:
            self._endpoints[endpoint.endpoint_id] = endpoint

    def remove_endpoint(self, endpoint_id: str) -> None:
        with self._lock:
            self._endpoints.pop(endpoint_id, None)

    def remove_endpoint_if_current(self, endpoint: E) -> None:
        """Remove the endpoint only if the store still holds this very record: a late
        removal of an old record must not drop a newer one of the same id."""
        with self._lock:
            if self._endpoints.get(endpoint.endpoint_id) is endpoint:
                del self._endpoints[endpoint.endpoint_id]
