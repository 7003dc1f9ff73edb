"""Create once, remove once: one Docker network per overlay network, on every host.

Docker has no cluster store here: each host's dockerd knows only the networks created through
it, and CreateNetwork does not carry the network's name. So the cluster's network lives in the
OVN northbound database (on its Logical_Switch: name, subnet, gateway, options; its name made
unique by a token row) and every host's sync makes its own Docker agree, through its local
Docker API, from a background thread (dockerd holds its locks while it waits for a plugin: a
Docker call inside a request, or while dockerd activates the plugin, can deadlock both):

* publish: this host's Docker network on a switch that has no name yet gets its name and
  options from Docker (inspect by this host's network id) and claims the name. Two hosts that
  created the same name at once: one claim wins; the loser's network, when no container uses
  it, is removed through its Docker and the winner's created in its place;
* propagate: every published network this host has not got (and did not leave) is created
  through this host's Docker (`docker network create` with the same name, subnet, gateway and
  options), which makes dockerd call this plugin's RequestPool/CreateNetwork: they join the
  existing switch;
* remove once: a `docker network rm` (this host's DeleteNetwork, which Docker cannot be
  refused) marks the switch deleted when no container on another host uses it; every host then
  removes its own Docker network of that id. When containers elsewhere use it, only this host
  leaves it (marked on the switch, so it is not created here again) and a warning names the
  hosts that still use it.

It wakes on every change of one of our switches (an OVSDB row event) and every `interval`
seconds. Every Docker failure is a warning and a retry on a later pass. It never removes a
Docker network that is not of this driver, that has containers, or whose id is not the one this
host recorded on the switch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from docker_ovs_plugin.contract import DEFAULT_DRIVER, MODE_OVERLAY
from docker_ovs_plugin.service.model import recorded_network_id
from docker_ovs_plugin.service.options import MODE
from docker_ovs_plugin.service.ports import (
    Catalog,
    ClusterNetwork,
    DockerNetworks,
    Integration,
    LocalNetwork,
)

LOG = logging.getLogger(__name__)

INTERVAL = 5.0  # seconds between passes when nothing changes (events wake it earlier)
QUICK = 0.1  # seconds before the next pass while a new network is not in Docker yet
# dockerd stores a network a moment after this plugin answered its CreateNetwork; this long
# the sync looks again quickly for a network it has to publish.
PUBLISH_WAIT = 10.0


def _users(used: dict[str, int]) -> str:
    return ", ".join(f"{h} ({n} container{'s' if n != 1 else ''})" for h, n in sorted(used.items()))


class NetworkSync:
    def __init__(
        self,
        catalog: Catalog,
        docker: DockerNetworks,
        integration: Integration,
        *,
        name: str = DEFAULT_DRIVER,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._docker = docker
        self._integration = integration
        self._name = name
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._removing: set[str] = set()  # Docker network ids this sync is removing
        self._creating: set[str] = set()  # pool ids this sync is creating a network on
        self._retry_at: dict[str, float] = {}  # what failed -> not before then
        self._said: dict[str, str] = {}  # what -> the last message logged about it
        self._unseen_since: dict[str, float] = {}  # network id -> first pass Docker lacked it
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- in the request (DeleteNetwork): northbound only, never Docker -------------------------

    def before_delete(self, network_id: str, pool_id: str) -> None:
        """This host's dockerd deletes its network (`docker network rm`, which a plugin cannot
        refuse): make it the cluster's removal, or this host's leaving it."""
        with self._lock:
            if network_id in self._removing or pool_id in self._creating:
                return  # the sync's own doing (a converge, a removal, a rolled back create)
        try:
            host = self._integration.chassis().system_id
            net = next(
                (n for n in self._catalog.cluster_networks() if n.pool.pool_id == pool_id), None
            )
            if net is None or net.name is None or not net.holds_name or net.deleted is not None:
                return
            if recorded_network_id(net.pool.networks.get(host, "")) != network_id:
                return  # not the network this host has on the cluster's switch
            used = self._catalog.remove_everywhere(pool_id, host, network_id)
        except Exception as e:  # Docker removes it anyway: say so, change nothing else
            LOG.warning("network %s: could not record its removal in OVN: %s", network_id[:12], e)
            return
        if used:
            LOG.warning(
                "network %s (%s) is removed on this host only: containers on other hosts still "
                "use it: %s. It stays on those hosts and is not created here again (a `docker "
                "network create` of it here rejoins it); `docker network rm %s` on those hosts "
                "once their containers are gone removes it everywhere",
                net.name,
                net.pool.subnet,
                _users(used),
                net.name,
            )
        else:
            LOG.info("network %s (%s) removed: every host removes it", net.name, net.pool.subnet)

    # -- the background pass ------------------------------------------------------------------

    def run_once(self) -> bool:
        """One pass; True when it should run again soon (a new network not in Docker yet)."""
        host = self._integration.chassis().system_id
        pending = False
        for net in self._catalog.cluster_networks():
            nid = recorded_network_id(net.pool.networks.get(host, ""))
            if nid is None:
                continue
            try:
                if net.deleted is not None:
                    self._follow_removal(net, nid, host)
                elif net.name is None:
                    pending |= self._publish(net, nid, host)
                elif host in net.left and net.left[host] != nid:
                    # A network created here since (not the removed one, which stays recorded
                    # until dockerd has finished removing it).
                    self._catalog.rejoin(net.pool.pool_id, host)
                    LOG.info("network %s is on this host again", net.name)
            except Exception as e:
                self._failed(f"own:{nid}", f"network {nid[:12]} ({net.pool.subnet}): {e}")
        for net in self._catalog.cluster_networks():  # again: the loop above changed some
            if (
                net.name is not None
                and net.holds_name
                and net.deleted is None
                and host not in net.pool.networks
                and host not in net.left
            ):
                try:
                    self._create_here(net, net.name)
                except Exception as e:
                    self._failed(
                        f"create:{net.pool.pool_id}",
                        f"cannot create network {net.name} ({net.pool.subnet}) here yet: {e}",
                    )
        return pending

    def _publish(self, net: ClusterNetwork, nid: str, host: str) -> bool:
        if not self._due(f"own:{nid}"):
            return False
        local = self._docker.network(nid)
        if local is None:
            since = self._unseen_since.setdefault(nid, self._clock())
            return self._clock() - since < PUBLISH_WAIT
        self._unseen_since.pop(nid, None)
        if local.driver != self._name:
            return False
        holder = self._catalog.publish(
            net.pool.pool_id,
            name=local.name,
            driver_options=local.options,
            ipam_options=local.ipam_options,
            host=host,
        )
        if holder is None or holder == net.pool.pool_id:
            LOG.info("network %s (%s) published to every host", local.name, net.pool.subnet)
            return False
        winner = next(
            (n for n in self._catalog.cluster_networks() if n.pool.pool_id == holder), None
        )
        self._converge(local, net, winner)
        return False

    def _converge(
        self, local: LocalNetwork, mine: ClusterNetwork, winner: ClusterNetwork | None
    ) -> None:
        """Another host's network got the name first (created at the same moment)."""
        theirs = f"{winner.pool.subnet}, made by host {winner.publisher}" if winner else "?"
        if local.containers:
            self._say(
                f"lost:{local.network_id}",
                logging.ERROR,
                f"network {local.name} here ({mine.pool.subnet}) and the cluster's network "
                f"{local.name} ({theirs}) were created at the same moment; the other got the "
                f"name. This one has {local.containers} container(s), so it stays as it is, on "
                f"this host only: stop them and `docker network rm {local.name}`, and the "
                "cluster's network is created here",
            )
            return
        LOG.warning(
            "network %s here (%s) lost its name to the cluster's network %s (%s), created at "
            "the same moment: replacing it with that one",
            local.name,
            mine.pool.subnet,
            local.name,
            theirs,
        )
        self._remove_local(local)

    def _follow_removal(self, net: ClusterNetwork, nid: str, host: str) -> None:
        deleted = net.deleted
        if deleted is None or deleted.networks.get(host) != nid or not self._due(f"own:{nid}"):
            return  # not provably the network that removal meant
        local = self._docker.network(nid)
        if local is None or local.driver != self._name:
            return
        if local.containers:
            self._say(
                f"removed:{nid}",
                logging.ERROR,
                f"network {local.name} was removed on host {deleted.host}, but "
                f"{local.containers} container(s) here use it (started meanwhile): it stays "
                f"here until they are gone and `docker network rm {local.name}`",
            )
            return
        LOG.info("network %s was removed on host %s: removing it here", local.name, deleted.host)
        self._remove_local(local)

    def _remove_local(self, local: LocalNetwork) -> None:
        with self._lock:
            self._removing.add(local.network_id)
        try:
            self._docker.remove_network(local.network_id)
        finally:
            with self._lock:
                self._removing.discard(local.network_id)

    def _create_here(self, net: ClusterNetwork, name: str) -> None:
        key = f"create:{net.pool.pool_id}"
        if not self._due(key):
            return
        existing = self._docker.network_named(name)
        if existing is not None:
            self._retry_at[key] = self._clock() + self._interval  # no Docker call per event
            if existing.driver != self._name:
                self._say(
                    key,
                    logging.WARNING,
                    f"cannot create the cluster's network {name} ({net.pool.subnet}) here: "
                    f"Docker has a network of that name of driver {existing.driver!r}",
                )
            # Ours on another subnet: it lost the name race; _converge said what happens.
            return
        gateway = net.pool.gateway
        with self._creating_on(net.pool.pool_id):
            network_id = self._docker.create_network(
                name,
                driver=self._name,
                options={**net.driver_options, MODE: MODE_OVERLAY},
                ipam_driver=self._name,
                subnet=str(net.pool.subnet),
                gateway=str(gateway) if gateway is not None else None,
                ipam_options=net.ipam_options,
            )
        self._said.pop(key, None)
        LOG.info(
            "network %s (%s, published by host %s) created here: %s",
            name,
            net.pool.subnet,
            net.publisher,
            network_id[:12],
        )

    @contextmanager
    def _creating_on(self, pool_id: str) -> Iterator[None]:
        with self._lock:
            self._creating.add(pool_id)
        try:
            yield
        finally:
            with self._lock:
                self._creating.discard(pool_id)

    # -- saying things once, retrying later ---------------------------------------------------

    def _say(self, key: str, level: int, message: str) -> None:
        if self._said.get(key) != message:
            self._said[key] = message
            LOG.log(level, "%s", message)

    def _due(self, key: str) -> bool:
        return self._clock() >= self._retry_at.get(key, 0.0)

    def _failed(self, key: str, message: str) -> None:
        """A warning (once per distinct message) and a retry on the pass after `interval`."""
        self._retry_at[key] = self._clock() + self._interval
        self._say(key, logging.WARNING, f"network sync: {message}; trying again")

    # -- the thread ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        """A first pass at once (catch up after a restart or a late join), then on every
        change of our switches and every `interval` seconds. Start it only once the plugin
        serves: the Docker calls it makes make dockerd call this plugin."""
        self._catalog.watch(self.wake)

        def loop() -> None:
            delay = 0.0
            while not self._stop.is_set():
                self._wake.wait(delay)
                self._wake.clear()
                if self._stop.is_set():
                    break
                pending = False
                try:
                    pending = self.run_once()
                except Exception as e:  # OVN or the chassis not there yet: next pass
                    LOG.warning("network sync pass stopped, tried again shortly: %s", e)
                delay = QUICK if pending else self._interval

        self._thread = threading.Thread(target=loop, name="network-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
