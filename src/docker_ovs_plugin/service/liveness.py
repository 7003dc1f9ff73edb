"""Host liveness and fencing for overlay networks.

Every plugin writes a heartbeat for its host into the northbound database (Hosts.beat). The
one host that holds the housekeeping lock watches the others: a host whose heartbeat has not
changed for the fence period, as this host observes it (its own monotonic clock, so clock skew
between hosts does not matter), is fenced: its reservations (and so its endpoints' logical
ports) and per-host keys are deleted and it is marked fenced, in one compare-and-swap
transaction that does nothing if the heartbeat moved meanwhile. Two fencers at once (a lock
changing hands) cannot free anything twice: the second finds the mark and does nothing.

A host that finds itself fenced (its heartbeat write says so) tears down its own endpoints of
the deleted reservations, says so per container, and only then clears the mark. Within the
fence period nothing is removed; a host that is back by then loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import CorruptState, OverlayEndpoint
from docker_ovs_plugin.service.overlay import Overlay
from docker_ovs_plugin.service.ports import DockerNetwork, Integration, Links, Northbound

LOG = logging.getLogger(__name__)

MIN_INTERVAL, MAX_INTERVAL = 1.0, 5.0
NOTICE_BEATS = 3  # heartbeats missed before a host is reported lost


@dataclass(frozen=True)
class HostState:
    """A host's row in the northbound database."""

    system_id: str
    heartbeat: str  # the last heartbeat (unix time as written); only compared for change
    fenced_at: float | None = None
    fenced_after: float | None = None  # seconds without a heartbeat

    @property
    def fenced(self) -> bool:
        return self.fenced_at is not None


@dataclass(frozen=True)
class Freed:
    """A reservation a fence deleted."""

    pool_id: str
    address: IPv4Address
    endpoint_id: str | None


class Hosts(Protocol):
    """Heartbeat rows in the northbound database."""

    def hosts(self) -> list[HostState]: ...

    def host(self, system_id: str) -> HostState | None: ...

    def beat(self, system_id: str, driver: str) -> HostState:
        """Write a heartbeat (creating the row) unless the host is fenced; the row after."""

    def clear_fence(self, system_id: str) -> None:
        """Drop the fenced mark and write a heartbeat."""

    def fence(self, system_id: str, seen_heartbeat: str, silent_for: float) -> list[Freed] | None:
        """If the host's heartbeat is still `seen_heartbeat` and it is not fenced: delete its
        reservations (not the shared gateway) and per-host keys (and a switch left unused),
        mark it fenced; the freed reservations. None when it did nothing."""


class DockerNames(Protocol):
    def networks(self, network_ids: Iterable[str]) -> dict[str, DockerNetwork]: ...


def heartbeat_interval(fence_period: float) -> float:
    return min(MAX_INTERVAL, max(MIN_INTERVAL, fence_period / 6))


class Liveness:
    def __init__(
        self,
        hosts: Hosts,
        nb: Northbound,
        integration: Integration,
        links: Links,
        overlay: Overlay,
        *,
        name: str,
        fence_period: float,
        elected: Callable[[], bool],
        docker: DockerNames | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hosts = hosts
        self._nb = nb
        self._integration = integration
        self._links = links
        self._overlay = overlay
        self._name = name
        self.fence_period = fence_period
        self.interval = heartbeat_interval(fence_period)
        self._elected = elected
        self._docker = docker
        self._clock = clock
        # other host -> (heartbeat last seen, when this host first saw that value)
        self._seen: dict[str, tuple[str, float]] = {}
        self._noticed: set[str] = set()
        self._was_elected = False
        # fences this host recovered from, to report: (its row, endpoints lost, networks gone)
        self._pending: list[tuple[HostState, list[OverlayEndpoint], set[str]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one round -------------------------------------------------------------------------

    def tick(self) -> None:
        """Heartbeat; recover if fenced; fence lost hosts when this host is elected."""
        me = self._integration.chassis().system_id
        try:
            state = self._hosts.beat(me, self._name)
        except BackendError:
            # Our view of the others may be stale while we cannot write: observe afresh.
            self._seen.clear()
            raise
        if state.fenced:
            self.recover(state)
        elif self._elected():
            if not self._was_elected:
                LOG.info("this host does the cluster's housekeeping (it holds the lock)")
            self._was_elected = True
            self.housekeep(me)
        else:
            if self._was_elected:
                LOG.info("another host does the cluster's housekeeping now")
            self._was_elected = False
            self._seen.clear()  # a host elected later starts its observation afresh
        if self._overlay.loaded:
            self.report()

    def housekeep(self, me: str) -> list[Freed]:
        now = self._clock()
        freed: list[Freed] = []
        hosts = self._hosts.hosts()
        for h in hosts:
            if h.system_id == me or h.fenced:
                self._seen.pop(h.system_id, None)
                self._noticed.discard(h.system_id)
                continue
            seen = self._seen.get(h.system_id)
            if seen is None or seen[0] != h.heartbeat:
                if h.system_id in self._noticed:
                    LOG.warning(
                        "host %s is back (heartbeat again); nothing was removed", h.system_id
                    )
                    self._noticed.discard(h.system_id)
                self._seen[h.system_id] = (h.heartbeat, now)
                continue
            silent = now - seen[1]
            if silent >= self.fence_period:
                done = self._hosts.fence(h.system_id, h.heartbeat, silent)
                self._seen.pop(h.system_id, None)
                self._noticed.discard(h.system_id)
                if done is not None:
                    LOG.error(
                        "host %s fenced after %.0f s without heartbeat: freed %d address(es)%s",
                        h.system_id,
                        silent,
                        len(done),
                        f" ({', '.join(str(f.address) for f in done)})" if done else "",
                    )
                    freed.extend(done)
            elif silent >= NOTICE_BEATS * self.interval and h.system_id not in self._noticed:
                self._noticed.add(h.system_id)
                LOG.warning(
                    "host %s: no heartbeat for %.0f s; its endpoints and addresses are freed "
                    "if it stays silent for %.0f s more (--ovn-fence-period %.0f)",
                    h.system_id,
                    silent,
                    self.fence_period - silent,
                    self.fence_period,
                )
        known = {h.system_id for h in hosts}
        self._seen = {k: v for k, v in self._seen.items() if k in known}
        return freed

    # -- the way back ----------------------------------------------------------------------

    def recover(self, state: HostState) -> None:
        """This host was fenced: tear down its endpoints whose reservations are gone, forget
        its networks whose records are gone, then clear the mark. What was lost is reported
        by report() (it asks Docker for names, which must not delay loading the state:
        a restarting dockerd answers its API only once its plugins answered it)."""
        me = state.system_id
        bridge = self._integration.chassis().bridge
        lost: list[OverlayEndpoint] = []
        for ids in self._integration.list_endpoints():
            try:
                ep = OverlayEndpoint.from_external_ids(ids)
            except CorruptState:
                continue
            if ep.driver != self._name:
                continue
            r = self._nb.reservation(ep.pool_id, ep.ipv4.ip)
            if r is None or r.host != me or r.endpoint_id != ep.endpoint_id:
                lost.append(ep)
        gone = self._gone_networks(me)
        for ep in lost:
            self._integration.delete_port(bridge, ep.host_if)
            self._links.delete_link(ep.host_if)
            if any(e.endpoint_id == ep.endpoint_id for e in self._overlay.endpoints()):
                self._overlay.delete_endpoint(ep.network_id, ep.endpoint_id)
        for network_id in gone:
            self._overlay.delete_network(network_id, by_docker=False)
        self._hosts.clear_fence(me)
        self._pending.append((state, lost, gone))
        LOG.warning("this host (%s) was fenced; its fenced mark is cleared", me)

    def report(self) -> list[str]:
        """Say, per container and network, what the fence took (the messages)."""
        messages = []
        while self._pending:
            state, lost, gone = self._pending.pop(0)
            after = f"{state.fenced_after:.0f}" if state.fenced_after is not None else "?"
            names = self._names({ep.network_id for ep in lost} | gone)
            for ep in lost:
                net = names.get(ep.network_id)
                container = net.attachments.get(ep.endpoint_id) if net is not None else None
                messages.append(
                    f"container {container.container if container else ep.endpoint_id[:12]} "
                    f"lost its address {ep.ipv4.ip} on network "
                    f"{net.name if net is not None else ep.network_id[:12]}: this host was "
                    f"fenced after {after} s without heartbeat; reconnect it (docker network "
                    "disconnect, then connect)"
                )
            for network_id in sorted(gone):
                net = names.get(network_id)
                messages.append(
                    f"network {net.name if net is not None else network_id[:12]} was dropped "
                    "from OVN when this host was fenced; remove it and create it again on this "
                    "host"
                )
        for text in messages:
            LOG.error("%s", text)
        return messages

    def _gone_networks(self, me: str) -> set[str]:
        """This host's loaded networks whose record is no longer in OVN."""
        gone = set()
        for net in self._overlay.networks():
            pool = self._nb.pool(net.pool_id)
            if pool is None or me not in pool.networks:
                gone.add(net.network_id)
        return gone

    def _names(self, network_ids: set[str]) -> dict[str, DockerNetwork]:
        if self._docker is None or not network_ids:
            return {}
        try:
            return self._docker.networks(network_ids)
        except Exception as e:  # names are for the message only
            LOG.warning("cannot ask Docker for container names (%s)", e)
            return {}

    # -- the thread ------------------------------------------------------------------------

    def start(self, ready: Callable[[], bool]) -> None:
        """tick() every interval once `ready()` (the northbound connection is up)."""

        def loop() -> None:
            while not self._stop.wait(self.interval):
                if not ready():
                    continue
                try:
                    self.tick()
                except BackendError as e:
                    LOG.warning("heartbeat: %s", e)
                except Exception:
                    LOG.exception("heartbeat round failed")

        self._thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
