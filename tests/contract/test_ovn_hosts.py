"""Heartbeat rows, fencing and the housekeeping lock: OvnHosts on a private northbound
ovsdb-server against FakeHosts; the NB connection made before the server exists; the lock on
a Raft cluster whose leader is killed (real side only)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.adapters import ovn_hosts, ovn_nb
from docker_ovs_plugin.adapters.ovn_hosts import OvnHosts
from docker_ovs_plugin.adapters.ovn_link import NorthboundLink
from docker_ovs_plugin.adapters.ovn_nb import OvnNorthbound
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.liveness import Hosts
from docker_ovs_plugin.service.ports import Northbound
from testbed import ovn_sandbox
from testbed.ovn_sandbox import OvnNbCluster, OvnNbSandbox
from unit.fake_hosts import FakeHosts
from unit.fakes import FakeNorthbound

from .conftest import IMPLEMENTATIONS
from .test_ovn_nb import (  # nb_server: the fixture, shared
    POOL,
    SUBNET,
    TIMEOUT,
    _unavailable,
    connect,
    eventually,
    nb_server,  # noqa: F401
)

EP = "e" * 64
MAC = "02:42:0a:5a:00:02"


class World:
    def __init__(self, nb: list[Northbound], hosts: list[Hosts]) -> None:
        self.nb, self.hosts = nb, hosts


@pytest.fixture(params=IMPLEMENTATIONS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "fake":
        fake = FakeNorthbound()
        hosts = FakeHosts(fake)
        yield World([fake, fake], [hosts, hosts])
        return
    server: OvnNbSandbox = request.getfixturevalue("nb_server")
    adapters = [connect(server.remote), connect(server.remote)]
    try:
        yield World(
            list(adapters),
            [OvnHosts(lambda a=a: a, "ovs") for a in adapters],  # type: ignore[misc]
        )
    finally:
        for a in adapters:
            a.close()


def test_heartbeats_and_a_fence_that_frees_only_that_hosts_addresses(world: World) -> None:
    (nb1, nb2), (hosts1, hosts2) = world.nb, world.hosts
    nb1.acquire_pool(SUBNET, "h1", "ovs")
    nb1.gateway(POOL, "h1", None)
    assert eventually(lambda: nb2.pool(POOL) is not None)
    nb2.acquire_pool(SUBNET, "h2", "ovs")
    nb2.set_host_network(POOL, "h2", '{"network_id":"n2"}')
    kept = nb1.reserve(POOL, "h1", None).address
    lost = nb2.reserve(POOL, "h2", None).address
    nb2.bind(POOL, lost, host="h2", endpoint_id=EP, mac=MAC, port_security=True)
    plain = nb2.reserve(POOL, "h2", None).address
    first = hosts2.beat("h2", "ovs")
    assert not first.fenced and first.heartbeat
    hosts1.beat("h1", "ovs")
    assert eventually(lambda: {h.system_id for h in hosts1.hosts()} == {"h1", "h2"})
    seen = next(h for h in hosts1.hosts() if h.system_id == "h2").heartbeat
    time.sleep(0.002)  # the real heartbeat is the time, in ms
    hosts2.beat("h2", "ovs")  # alive after all: a fence on the old value does nothing
    assert eventually(lambda: (s := hosts1.host("h2")) is not None and s.heartbeat != seen)
    assert hosts1.fence("h2", seen, 130.0) is None
    seen = hosts1.host("h2").heartbeat  # type: ignore[union-attr]
    freed = hosts1.fence("h2", seen, 130.0)
    assert freed is not None
    assert sorted((f.address, f.endpoint_id) for f in freed) == sorted([(lost, EP), (plain, None)])
    assert hosts1.fence("h2", seen, 130.0) is None  # a second fencer: nothing twice
    assert eventually(lambda: (s := hosts2.host("h2")) is not None and s.fenced)
    state = hosts2.host("h2")
    assert state is not None and state.fenced_after == 130.0
    assert eventually(lambda: nb2.reservation(POOL, lost) is None)
    pool = nb1.pool(POOL)
    assert pool is not None and "h2" not in pool.networks and "h2" not in pool.pool_hosts
    assert nb1.reservation(POOL, kept) is not None  # h1's
    assert nb1.pool(POOL) is not None and nb1.reservation(POOL, IPv4Address("10.90.0.1"))
    # the fenced host's heartbeat does not clear the mark; only clear_fence does
    assert hosts2.beat("h2", "ovs").fenced
    hosts2.clear_fence("h2")
    assert eventually(lambda: (s := hosts1.host("h2")) is not None and not s.fenced)
    # and the freed address is another host's to take
    assert nb1.reserve(POOL, "h1", lost).address == lost


def test_a_fence_deletes_a_switch_only_the_fenced_host_used(world: World) -> None:
    (nb1, nb2), (hosts1, hosts2) = world.nb, world.hosts
    nb2.acquire_pool(SUBNET, "h2", "ovs")
    nb2.gateway(POOL, "h2", None)
    nb2.set_host_network(POOL, "h2", '{"network_id":"n2"}')
    nb2.reserve(POOL, "h2", None)
    nb2.join_router(POOL, "r1", "02:42:0a:5a:00:01")
    hosts2.beat("h2", "ovs")
    assert eventually(lambda: hosts1.host("h2") is not None and nb1.pool(POOL) is not None)
    seen = hosts1.host("h2").heartbeat  # type: ignore[union-attr]
    assert hosts1.fence("h2", seen, 200.0) is not None
    assert eventually(lambda: nb2.pools() == [])
    # Its router went with it (it was the router's only switch), and the subnet is free again.
    api = getattr(nb1, "_api", None)
    if api is not None:  # the real database: no router, router port or token of ours left
        assert eventually(lambda: not api.tables["Logical_Router"].rows)
        assert not api.tables["Logical_Router_Port"].rows
        assert [pg.name for pg in api.tables["Port_Group"].rows.values()
                if pg.name.startswith(c.ROUTER_TOKEN_PREFIX)] == []  # fmt: skip
    nb1.acquire_pool(SUBNET, "h1", "ovs")


# -- the connection made in the background ----------------------------------------------------


def test_the_link_connects_once_the_database_comes_up() -> None:
    reason = ovn_sandbox.missing()
    if reason is not None:
        _unavailable(reason)
    box = OvnNbSandbox()  # its socket does not exist yet
    loaded: list[bool] = []

    def make() -> OvnNorthbound:
        return OvnNorthbound(ovn_nb.connect(box.remote, 2.0), TIMEOUT, 5.0, "ovs")

    link = NorthboundLink(box.remote, make, on_connected=lambda: loaded.append(True))
    try:
        began = time.monotonic()
        assert not link.connect_once()
        assert time.monotonic() - began < 5.0  # bounded, not hanging
        with pytest.raises(BackendError, match=r"not connected to the OVN northbound database"):
            link.pools()
        box.start()
        link.start()
        assert link.wait_ready(15.0)
        assert loaded == [True] and link.pools() == []
        assert link.acquire_pool(SUBNET, "h1", "ovs") == POOL
    finally:
        link.close()
        box.stop()


# -- the housekeeping lock on a Raft cluster ---------------------------------------------------


def test_one_host_holds_the_lock_and_it_moves_when_the_leader_dies() -> None:
    reason = ovn_sandbox.missing()
    if reason is not None:
        _unavailable(reason)
    with OvnNbCluster(3) as cluster:
        conns = [ovn_hosts.connect_lock(cluster.remote, TIMEOUT) for _ in range(2)]
        nb = connect(cluster.remote, retry_window=10.0)
        try:
            assert eventually(lambda: sum(ovn_hosts.lock_held(c) for c in conns) == 1, 10.0)
            # the main connection's writes do not depend on the lock
            nb.acquire_pool(SUBNET, "h1", "ovs")
            leader = cluster.wait_leader()
            killed = time.monotonic()
            leader.kill()
            # one of them holds it again (on the new leader), never both at once
            both = []

            def one_again() -> bool:
                held = [ovn_hosts.lock_held(c) for c in conns]
                both.append(all(held))
                return sum(held) == 1 and time.monotonic() - killed > 0.5

            assert eventually(one_again, 30.0)
            print(f"\nlock held again {time.monotonic() - killed:.2f} s after the leader died")
            # Not asserted: "never both at once". During the failover the old holder's session
            # can still look live until its inactivity probe fires while the new leader grants
            # the lock (seen once in CI); README "Faults and fencing" says so, and the fence is
            # a compare-and-swap that is safe to run twice for that reason.
            print(f"samples where both clients thought they held it: {sum(both)}/{len(both)}")
        finally:
            nb.close()
            for c in conns:
                c.close()
