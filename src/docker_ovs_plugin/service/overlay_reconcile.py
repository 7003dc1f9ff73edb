"""Drift of this host's overlay state against Docker, br-int, the kernel and the northbound DB.

Findings for the background reconciler and `doctor` (service/reconcile.py applies them, with
its grace period for removals). Only what is provably this plugin's (owner tag, driver name)
and this host's (its system-id) is ever touched, and only when it is provably gone:

* an endpoint Docker no longer has: its port and veth go, its logical port becomes a plain
  reservation (which the collector below then frees);
* a network Docker no longer has: its endpoints go and this host's record on the pool is
  dropped (then a switch no host uses is deleted, compare-and-swap);
* an overlay port on br-int that no endpoint of ours serves, a veth of ours of no endpoint;
* a reservation of this host older than the grace that is no endpoint's port and whose address
  no container of Docker has (a crash between RequestAddress and CreateEndpoint; Docker's
  ReleaseAddress is not reliable): deleted;
* this host's pool key (RequestPool) on a subnet that neither this host's network records nor
  any Docker network of ours uses (removed while the plugin was down): dropped, since it makes
  a later RequestPool refuse.

Nothing is judged while the northbound database is not connected or the state not loaded, and
nothing against Docker while Docker does not answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address
from typing import Protocol

from docker_ovs_plugin.contract import OVERLAY_CONTAINER_VETH_PREFIX, OVERLAY_HOST_VETH_PREFIX
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import CorruptState, OverlayEndpoint, OverlayNetwork
from docker_ovs_plugin.service.overlay import Overlay
from docker_ovs_plugin.service.ports import Integration, Links, Northbound
from docker_ovs_plugin.service.reconcile import Finding

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DockerNetworkView:
    """What Docker holds of one of our networks."""

    endpoints: frozenset[str]
    addresses: frozenset[IPv4Address]
    subnets: frozenset[str]


class DockerOverlayView(Protocol):
    def network_view(
        self, network_ids: Iterable[str], subnets: Iterable[str]
    ) -> dict[str, DockerNetworkView]:
        """Each of `network_ids` Docker still has (asked by its own id; left out only when
        Docker has no such network), and every other network on one of `subnets` whatever its
        driver is called. Raises when Docker fails."""


class OverlayDrift:
    def __init__(
        self,
        overlay: Overlay,
        nb: Northbound,
        integration: Integration,
        links: Links,
        *,
        name: str,
        docker: DockerOverlayView | None,
        grace: float,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._overlay = overlay
        self._nb = nb
        self._integration = integration
        self._links = links
        self._name = name
        self._docker = docker
        self._grace = grace  # also the least age of a reservation the collector frees
        self._wall = wall

    def findings(self) -> list[Finding]:
        if not self._overlay.loaded:
            return []
        try:
            me = self._integration.chassis()
            out = self._leftovers(me.system_id, me.bridge)
            networks = self._overlay.networks()  # judged: exactly those Docker was asked about
            docker = self._docker_view([n.network_id for n in networks])
            if docker is not None:
                out += self._against_docker(me.system_id, networks, docker)
        except BackendError as e:
            LOG.warning("overlay check skipped: %s", e)
            return []
        return out

    def _docker_view(self, ids: list[str]) -> dict[str, DockerNetworkView] | None:
        if self._docker is None:
            return None
        subnets = [str(p.subnet) for p in self._nb.pools()]
        try:
            return self._docker.network_view(ids, subnets)
        except Exception as e:  # Docker down or restarting: judge nothing against it
            LOG.warning("cannot ask Docker for its networks (%s); skipping overlay checks", e)
            return None

    def _against_docker(
        self, me: str, networks: list[OverlayNetwork], docker: dict[str, DockerNetworkView]
    ) -> list[Finding]:
        ov = self._overlay
        out = []
        for net in networks:
            if net.network_id not in docker:
                out.append(
                    Finding(
                        f"overlay-network:{net.network_id}",
                        f"overlay network {net.network_id[:12]} (subnet {net.subnet}) no longer "
                        "exists in Docker; removing its endpoints and this host's record on "
                        f"{net.pool_id}",
                        partial(ov.delete_network, net.network_id, by_docker=False),
                        removal=True,
                    )
                )
        for ep in ov.endpoints():
            known = docker.get(ep.network_id)
            if known is not None and ep.endpoint_id not in known.endpoints:
                out.append(
                    Finding(
                        f"overlay-endpoint:{ep.endpoint_id}",
                        f"overlay endpoint {ep.endpoint_id[:12]} ({ep.ipv4.ip}, port "
                        f"{ep.host_if}) is gone from Docker (its container stopped while the "
                        "plugin was down); removing its port and veth, its address becomes a "
                        "plain reservation",
                        partial(ov.delete_endpoint, ep.network_id, ep.endpoint_id),
                        removal=True,
                    )
                )
        held = {a for v in docker.values() for a in v.addresses}
        subnets = {s for v in docker.values() for s in v.subnets}
        for r in self._nb.stale_reservations(me, self._wall() - self._grace):
            if r.address in held:
                continue
            out.append(
                Finding(
                    f"reservation:{r.name}",
                    f"address {r.address} of {r.pool_id} is reserved by this host but no "
                    "endpoint or container has it (Docker never released it); freeing it",
                    partial(_ignore_result, partial(self._nb.release, r.pool_id, r.address, me)),
                    removal=True,
                )
            )
        for pool in self._nb.pools():
            unused = me not in pool.networks and str(pool.subnet) not in subnets
            if me in pool.pool_hosts and unused:
                out.append(
                    Finding(
                        f"pool-key:{pool.pool_id}",
                        f"this host still holds overlay pool {pool.pool_id} ({pool.subnet}) but "
                        "has no network on it, in OVN nor in Docker (removed while the plugin "
                        "was down); dropping its use (the switch goes when no host uses it)",
                        partial(_ignore_result, partial(self._nb.release_pool, pool.pool_id, me)),
                        removal=True,
                    )
                )
        return out

    def _leftovers(self, me: str, bridge: str) -> list[Finding]:
        ov = self._overlay
        out = []
        served = {ep.endpoint_id for ep in ov.endpoints()}
        rows = self._integration.list_endpoints()
        anyones = set()
        for ids in rows:
            try:
                ep = OverlayEndpoint.from_external_ids(ids)
            except CorruptState:
                continue
            anyones |= {ep.host_if, ep.container_if}
            if ep.driver == self._name and ep.endpoint_id not in served:
                out.append(
                    Finding(
                        f"overlay-port:{ep.host_if}",
                        f"br-int port {ep.host_if} (logical port {ep.logical_port}) belongs to no "
                        "overlay endpoint of this plugin; deleting it and its veth",
                        partial(self._drop_port, bridge, ep, me),
                        removal=True,
                    )
                )
        prefixes = (OVERLAY_HOST_VETH_PREFIX, OVERLAY_CONTAINER_VETH_PREFIX)
        for link in self._links.names(prefixes):
            if link not in anyones:
                out.append(
                    Finding(
                        f"overlay-link:{link}",
                        f"veth {link} belongs to no overlay endpoint; deleting it",
                        partial(self._links.delete_link, link),
                        removal=True,
                    )
                )
        return out

    def _drop_port(self, bridge: str, ep: OverlayEndpoint, me: str) -> None:
        self._integration.delete_port(bridge, ep.host_if)
        self._links.delete_link(ep.host_if)
        # A no-op unless the logical port is still this host's and this endpoint's.
        self._nb.unbind(ep.pool_id, ep.ipv4.ip, me, ep.endpoint_id)


def _ignore_result(action: Callable[[], object]) -> None:
    action()
