"""Northbound: OvnNorthbound on a private OVN northbound ovsdb-server against FakeNorthbound.

Two "hosts" are two adapters, each with a connection (an IDL replica) of its own, as two
plugins on two machines; the fake is one object both use. Then, on the real side only: many
threads of two hosts racing for addresses and for creating the same subnet, and writes through
a Raft leader election (a 3-member cluster on unix sockets, its leader killed).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from typing import Any, NoReturn, Protocol

import pytest
from ovsdbapp.backend.ovs_idl import idlutils

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.adapters import ovn_nb
from docker_ovs_plugin.adapters.ovn_nb import OvnNorthbound
from docker_ovs_plugin.service.errors import BackendError, Conflict, NotFound
from docker_ovs_plugin.service.ports import Catalog, ClusterNetwork, Northbound
from testbed import ovn_sandbox
from testbed.ovn_sandbox import OvnNbCluster, OvnNbSandbox
from unit.fakes import FakeNorthbound

from .conftest import IMPLEMENTATIONS

TIMEOUT = 10.0
SUBNET = IPv4Network("10.90.0.0/16")
POOL = c.switch_name(str(SUBNET))
EP = "e" * 64
MAC = "02:42:0a:5a:00:02"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"OVN NB contract requirements not met (CI=true): {reason}", pytrace=False)
    pytest.skip(f"OVN NB contract requirements not met: {reason}")


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """The other host's replica shows a write a moment after it committed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class NbWorld(Protocol):
    h1: Northbound
    h2: Northbound

    def switch_count(self, subnet: IPv4Network) -> int:
        """Logical switches recorded for the subnet, as the database holds them."""


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeNorthbound()
        self.h1: Northbound = self.fake
        self.h2: Northbound = self.fake

    def switch_count(self, subnet: IPv4Network) -> int:
        return sum(p.subnet == subnet for p in self.fake.pools())


def connect(remote: str, retry_window: float = 5.0) -> OvnNorthbound:
    return OvnNorthbound(ovn_nb.connect(remote, TIMEOUT), TIMEOUT, retry_window, "ovs")


class RealWorld:
    def __init__(self, remote: str) -> None:
        self.adapters = [connect(remote), connect(remote)]
        self.h1: Northbound = self.adapters[0]
        self.h2: Northbound = self.adapters[1]

    def switch_count(self, subnet: IPv4Network) -> int:
        # Every row the database has, ours or not (as a twin would be).
        api = self.adapters[0]._api
        with api.ovsdb_connection.lock:
            return sum(
                r.external_ids.get(c.SUBNET_KEY) == str(subnet)
                for r in api.tables["Logical_Switch"].rows.values()
            )

    def close(self) -> None:
        for a in self.adapters:
            a.close()


@pytest.fixture
def nb_server() -> Iterator[OvnNbSandbox]:
    reason = ovn_sandbox.missing()
    if reason is not None:
        _unavailable(reason)
    with OvnNbSandbox() as box:
        yield box


@pytest.fixture
def real(nb_server: OvnNbSandbox) -> Iterator[RealWorld]:
    world = RealWorld(nb_server.remote)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture(params=IMPLEMENTATIONS)
def world(request: pytest.FixtureRequest) -> NbWorld:
    if request.param == "fake":
        return FakeWorld()
    real_world: RealWorld = request.getfixturevalue("real")
    return real_world


def both_see(world: NbWorld, check: Callable[[Northbound], bool]) -> bool:
    return eventually(lambda: check(world.h1) and check(world.h2))


def two_hosts_on_the_pool(world: NbWorld) -> None:
    assert world.h1.acquire_pool(SUBNET, "h1", "ovs") == POOL
    assert both_see(world, lambda nb: nb.pool(POOL) is not None)
    assert world.h2.acquire_pool(SUBNET, "h2", "ovs") == POOL
    assert both_see(world, lambda nb: (p := nb.pool(POOL)) is not None and len(p.pool_hosts) == 2)


# -- pools ------------------------------------------------------------------------------------


def test_one_pool_per_subnet_for_every_host(world: NbWorld) -> None:
    two_hosts_on_the_pool(world)
    pool = world.h2.pool(POOL)
    assert pool is not None
    assert (pool.subnet, pool.creator, set(pool.pool_hosts)) == (SUBNET, "h1", {"h1", "h2"})
    assert world.switch_count(SUBNET) == 1
    assert [p.pool_id for p in world.h1.pools()] == [POOL]


def test_an_overlapping_subnet_is_refused(world: NbWorld) -> None:
    world.h1.acquire_pool(SUBNET, "h1", "ovs")
    assert both_see(world, lambda nb: nb.pool(POOL) is not None)
    with pytest.raises(Conflict, match="overlaps"):
        world.h2.acquire_pool(IPv4Network("10.90.3.0/24"), "h2", "ovs")
    world.h2.acquire_pool(IPv4Network("10.91.0.0/24"), "h2", "ovs")


def test_the_gateway_is_chosen_once(world: NbWorld) -> None:
    two_hosts_on_the_pool(world)
    assert world.h1.gateway(POOL, "h1", None) == IPv4Address("10.90.0.1")
    assert both_see(world, lambda nb: (p := nb.pool(POOL)) is not None and p.gateway is not None)
    assert world.h2.gateway(POOL, "h2", None) == IPv4Address("10.90.0.1")
    assert world.h2.gateway(POOL, "h2", IPv4Address("10.90.0.1")) == IPv4Address("10.90.0.1")
    with pytest.raises(Conflict):
        world.h2.gateway(POOL, "h2", IPv4Address("10.90.0.9"))
    r = world.h1.reservation(POOL, IPv4Address("10.90.0.1"))
    assert r is not None and r.gateway and r.host == "h1"


def test_addresses_lowest_free_exact_and_taken(world: NbWorld) -> None:
    two_hosts_on_the_pool(world)
    world.h1.gateway(POOL, "h1", None)
    a = world.h1.reserve(POOL, "h1", None)
    assert (a.address, a.name, a.host) == (IPv4Address("10.90.0.2"), f"{POOL}-10.90.0.2", "h1")
    assert world.h1.reserve(POOL, "h1", IPv4Address("10.90.9.9")).address == IPv4Address(
        "10.90.9.9"
    )
    # The other host, even before its replica shows the row, is refused with the holder.
    with pytest.raises(Conflict, match=r"10\.90\.9\.9 is already reserved by host h1"):
        world.h2.reserve(POOL, "h2", IPv4Address("10.90.9.9"))
    assert both_see(world, lambda nb: nb.reservation(POOL, IPv4Address("10.90.0.2")) is not None)
    assert world.h2.reserve(POOL, "h2", None).address == IPv4Address("10.90.0.3")
    with pytest.raises(Conflict):
        world.h2.reserve(POOL, "h2", IPv4Address("10.90.255.255"))  # broadcast
    with pytest.raises(Conflict):
        world.h2.reserve(POOL, "h2", IPv4Address("10.1.0.1"))  # outside
    with pytest.raises(NotFound):
        world.h2.reserve("dop-nothing", "h2", None)


def test_release_deletes_only_this_hosts_plain_reservation(world: NbWorld) -> None:
    two_hosts_on_the_pool(world)
    gw = world.h1.gateway(POOL, "h1", None)
    a = world.h1.reserve(POOL, "h1", None).address
    assert both_see(world, lambda nb: nb.reservation(POOL, a) is not None)
    assert not world.h2.release(POOL, a, "h2")
    assert not world.h1.release(POOL, gw, "h1")  # the gateway stays: every host uses it
    assert world.h1.release(POOL, a, "h1")
    assert not world.h1.release(POOL, a, "h1")  # gone already
    assert world.h1.reservation(POOL, a) is None
    assert world.h1.reservation(POOL, gw) is not None


def test_bind_and_unbind(world: NbWorld) -> None:
    two_hosts_on_the_pool(world)
    a = world.h1.reserve(POOL, "h1", None).address
    assert both_see(world, lambda nb: nb.reservation(POOL, a) is not None)
    with pytest.raises(Conflict, match="host h1"):
        world.h2.bind(POOL, a, host="h2", endpoint_id=EP, mac=MAC, port_security=True)
    world.h1.bind(POOL, a, host="h1", endpoint_id=EP, mac=MAC, port_security=True)
    world.h1.bind(POOL, a, host="h1", endpoint_id=EP, mac=MAC, port_security=True)  # again
    assert eventually(
        lambda: (r := world.h1.reservation(POOL, a)) is not None and r.endpoint_id == EP
    )
    with pytest.raises(Conflict, match="endpoint"):
        world.h1.bind(POOL, a, host="h1", endpoint_id="f" * 64, mac=MAC, port_security=True)
    world.h1.unbind(POOL, a, "h1", "f" * 64)  # not its endpoint: nothing changes
    assert eventually(
        lambda: (r := world.h1.reservation(POOL, a)) is not None and r.endpoint_id == EP
    )
    world.h1.unbind(POOL, a, "h1", EP)
    assert eventually(
        lambda: (r := world.h1.reservation(POOL, a)) is not None and r.endpoint_id is None
    )


def test_the_pool_is_deleted_only_when_provably_unused(world: NbWorld) -> None:
    two_hosts_on_the_pool(world)
    world.h1.gateway(POOL, "h1", None)
    world.h1.set_host_network(POOL, "h1", '{"network_id":"n1"}')
    assert both_see(world, lambda nb: (p := nb.pool(POOL)) is not None and "h1" in p.networks)
    assert not world.h2.release_pool(POOL, "h2")  # h1 still uses it
    assert not world.h1.release_pool(POOL, "h1")  # h1's network is still there
    a = world.h1.reserve(POOL, "h1", None).address
    world.h1.set_host_network(POOL, "h1", None)  # the last use, but an address is reserved
    assert world.h1.pool(POOL) is not None
    assert world.h1.release(POOL, a, "h1")
    assert eventually(lambda: world.h2.reservation(POOL, a) is None)
    world.h2.acquire_pool(SUBNET, "h2", "ovs")
    assert eventually(lambda: "h2" in getattr(world.h1.pool(POOL), "pool_hosts", ()))
    assert world.h1.release_pool(POOL, "h2")  # no user, only the gateway left: gone
    assert both_see(world, lambda nb: nb.pools() == [])
    assert world.switch_count(SUBNET) == 0
    # and it can be made again
    assert world.h2.acquire_pool(SUBNET, "h2", "ovs") == POOL


def test_stale_reservations(world: NbWorld) -> None:
    two_hosts_on_the_pool(world)
    world.h1.gateway(POOL, "h1", None)
    old = world.h1.reserve(POOL, "h1", None).address
    bound = world.h1.reserve(POOL, "h1", None).address
    world.h1.bind(POOL, bound, host="h1", endpoint_id=EP, mac=MAC, port_security=True)
    world.h2.reserve(POOL, "h2", None)
    assert eventually(
        lambda: [r.address for r in world.h1.stale_reservations("h1", time.time() + 1)] == [old]
    )
    assert world.h1.stale_reservations("h1", time.time() - 3600) == []


# -- races between hosts (real database only) -------------------------------------------------


def test_two_hosts_reserving_at_once_never_share_an_address(real: RealWorld) -> None:
    threads_per_host, per_host = 8, 100
    a, b = real.adapters
    a.acquire_pool(SUBNET, "h1", "ovs")
    assert eventually(lambda: b.pool(POOL) is not None)
    b.acquire_pool(SUBNET, "h2", "ovs")
    got: dict[str, list[IPv4Address]] = {"h1": [], "h2": []}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(2 * threads_per_host)

    def work(nb: OvnNorthbound, host: str, count: int) -> None:
        try:
            start.wait()
            for _ in range(count):
                r = nb.reserve(POOL, host, None)
                with lock:
                    got[host].append(r.address)
        except BaseException as e:  # reported below; a thread must not die silently
            errors.append(e)

    shares = [per_host // threads_per_host + (i < per_host % threads_per_host) for i in range(8)]
    threads = [
        threading.Thread(target=work, args=(nb, host, n))
        for nb, host in ((a, "h1"), (b, "h2"))
        for n in shares
    ]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - began
    assert errors == []
    every = got["h1"] + got["h2"]
    assert (len(got["h1"]), len(got["h2"])) == (per_host, per_host)
    assert len(set(every)) == len(every) == 2 * per_host
    # The database agrees: one logical port per address, each with its host.
    assert eventually(lambda: len(_ports(a)) == 2 * per_host)
    ports = _ports(a)
    assert len(set(ports)) == len(ports)
    assert {h for _, h in ports.values()} == {"h1", "h2"}
    # Lowest free: together they used exactly the first 200 host addresses.
    assert sorted(every) == [IPv4Address("10.90.0.1") + i for i in range(2 * per_host)]
    print(f"\n{2 * per_host} reservations, 2 hosts x {threads_per_host} threads: {elapsed:.2f} s")


def _ports(nb: OvnNorthbound) -> dict[str, tuple[str, str]]:
    api = nb._api
    with api.ovsdb_connection.lock:
        return {
            str(r.name): (r.external_ids.get(c.ADDRESS_KEY, ""), r.external_ids.get(c.HOST_KEY, ""))
            for r in api.tables["Logical_Switch_Port"].rows.values()
        }


def _race(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls at the same instant, each on a thread of its own."""
    start = threading.Barrier(len(calls))
    results: list[object] = [RuntimeError("did not finish")] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def _used_by_both(nb: OvnNorthbound, pool_id: str) -> bool:
    pool = nb.pool(pool_id)
    return pool is not None and set(pool.pool_hosts) == {"h1", "h2"}


def test_two_hosts_creating_the_same_subnet_at_once_make_one_switch(real: RealWorld) -> None:
    a, b = real.adapters
    for attempt in range(5):  # several rounds: the race must be hit, not dodged
        subnet = IPv4Network(f"10.{100 + attempt}.0.0/16")
        name = c.switch_name(str(subnet))
        results = _race(
            [
                partial(a.acquire_pool, subnet, "h1", "ovs"),
                partial(b.acquire_pool, subnet, "h2", "ovs"),
            ]
        )
        assert results == [name, name]
        assert eventually(partial(_used_by_both, a, name))
        assert real.switch_count(subnet) == 1


def test_two_hosts_creating_overlapping_subnets_at_once_one_is_refused(real: RealWorld) -> None:
    a, b = real.adapters
    results = _race(
        [
            partial(a.acquire_pool, IPv4Network("10.80.0.0/16"), "h1", "ovs"),
            partial(b.acquire_pool, IPv4Network("10.80.5.0/24"), "h2", "ovs"),
        ]
    )
    assert sum(isinstance(r, Conflict) for r in results) == 1, results
    assert sum(isinstance(r, str) for r in results) == 1, results


# -- a leader election ------------------------------------------------------------------------


def test_writes_retry_through_a_leader_election() -> None:
    reason = ovn_sandbox.missing()
    if reason is not None:
        _unavailable(reason)
    with OvnNbCluster(3) as cluster:
        nb = connect(cluster.remote, retry_window=10.0)
        try:
            nb.acquire_pool(SUBNET, "h1", "ovs")
            nb.gateway(POOL, "h1", None)
            leader = cluster.wait_leader()
            killed = time.monotonic()
            leader.kill()
            r = nb.reserve(POOL, "h1", None)  # must not fail: retried until a new leader
            first_write = time.monotonic() - killed
            assert r.address == IPv4Address("10.90.0.2")
            new = cluster.wait_leader()
            assert new is not leader
            print(f"\nleader killed; first write committed after {first_write:.2f} s")
        finally:
            nb.close()


# -- the cluster's Docker networks ("create once") --------------------------------------------


def _record(network_id: str) -> str:
    return json.dumps({c.OverlayRecord.NETWORK_ID: network_id})


def _named(nb: Northbound | OvnNorthbound, name: str) -> list[ClusterNetwork]:
    catalog: Catalog = nb  # type: ignore[assignment]
    return [n for n in catalog.cluster_networks() if n.name == name]


def test_a_removal_is_a_tombstone_unless_other_hosts_use_it(world: NbWorld) -> None:
    two_hosts_on_the_pool(world)
    world.h1.set_host_network(POOL, "h1", _record("n1" * 32))
    world.h2.set_host_network(POOL, "h2", _record("n2" * 32))
    c1: Catalog = world.h1  # type: ignore[assignment]
    c2: Catalog = world.h2  # type: ignore[assignment]
    assert c1.publish(POOL, name="web", driver_options={"a": "1"}, ipam_options={}, host="h1")
    assert both_see(world, lambda nb: len(_named(nb, "web")) == 1)
    [net] = _named(world.h2, "web")
    assert (net.holds_name, net.publisher, dict(net.driver_options)) == (True, "h1", {"a": "1"})
    # A container of h2 on it: h1's removal is h1 leaving it, and says who uses it.
    world.h2.gateway(POOL, "h2", None)
    r = world.h2.reserve(POOL, "h2", None)
    assert both_see(world, lambda nb: nb.reservation(POOL, r.address) is not None)
    world.h2.bind(POOL, r.address, host="h2", endpoint_id=EP, mac=MAC, port_security=True)
    assert both_see(
        world, lambda nb: (x := nb.reservation(POOL, r.address)) is not None and x.endpoint_id == EP
    )
    assert c1.remove_everywhere(POOL, "h1", "n1" * 32) == {"h2": 1}
    assert both_see(world, lambda nb: _named(nb, "web")[0].left == {"h1": "n1" * 32})
    assert _named(world.h1, "web")[0].deleted is None
    c1.rejoin(POOL, "h1")
    assert both_see(world, lambda nb: _named(nb, "web")[0].left == {})
    # No container anywhere: a tombstone naming every host's network id.
    world.h2.unbind(POOL, r.address, "h2", EP)
    world.h2.release(POOL, r.address, "h2")
    assert both_see(world, lambda nb: nb.reservation(POOL, r.address) is None)
    assert c2.remove_everywhere(POOL, "h2", "n2" * 32) == {}
    assert both_see(world, lambda nb: _named(nb, "web")[0].deleted is not None)
    deleted = _named(world.h1, "web")[0].deleted
    assert deleted is not None
    assert (deleted.host, dict(deleted.networks)) == ("h2", {"h1": "n1" * 32, "h2": "n2" * 32})
    with pytest.raises(Conflict, match="being removed"):
        world.h1.acquire_pool(SUBNET, "h3", "ovs")
    # The switch and its name token go with the last use.
    for host, nb in (("h1", world.h1), ("h2", world.h2)):
        nb.release_pool(POOL, host)
        nb.set_host_network(POOL, host, None)
    assert both_see(world, lambda nb: nb.pool(POOL) is None)
    c3: Catalog = world.h1  # type: ignore[assignment]
    assert c3.cluster_networks() == []


def test_two_hosts_claiming_one_name_at_once_one_wins(real: RealWorld) -> None:
    a, b = real.adapters
    for attempt in range(5):  # several rounds: the race must be hit, not dodged
        mine, theirs = (
            IPv4Network(f"10.{110 + attempt}.0.0/16"),
            IPv4Network(f"10.{120 + attempt}.0.0/16"),
        )
        pa = a.acquire_pool(mine, "h1", "ovs")
        pb = b.acquire_pool(theirs, "h2", "ovs")
        assert eventually(lambda: a.pool(pb) is not None and b.pool(pa) is not None)  # noqa: B023
        name = f"web-{attempt}"
        results = _race([partial(_claim, a, pa, name, "h1"), partial(_claim, b, pb, name, "h2")])
        assert results[0] == results[1], results
        assert results[0] in (pa, pb)
        assert eventually(lambda: len(_named(a, name)) == 1)  # noqa: B023
        [winner] = _named(a, name)
        assert winner.pool.pool_id == results[0] and winner.holds_name
        tokens = _port_groups(a)
        assert tokens.count(c.name_token(name)) == 1


def _claim(nb: OvnNorthbound, pool_id: str, name: str, host: str) -> str:
    return str(nb.publish(pool_id, name=name, driver_options={}, ipam_options={}, host=host))


def _port_groups(nb: OvnNorthbound) -> list[str]:
    api = nb._api
    with api.ovsdb_connection.lock:
        return [str(r.name) for r in api.tables["Port_Group"].rows.values()]


def test_a_removed_networks_name_is_taken_over(real: RealWorld) -> None:
    a, b = real.adapters
    old, new = IPv4Network("10.130.0.0/16"), IPv4Network("10.131.0.0/16")
    po = a.acquire_pool(old, "h1", "ovs")
    a.set_host_network(po, "h1", _record("n1" * 32))
    assert a.publish(po, name="web", driver_options={}, ipam_options={}, host="h1") == po
    assert a.remove_everywhere(po, "h1", "n1" * 32) == {}
    pn = b.acquire_pool(new, "h2", "ovs")
    assert eventually(lambda: (p := _named(b, "web")) != [] and p[0].deleted is not None)
    assert b.publish(pn, name="web", driver_options={}, ipam_options={}, host="h2") == pn
    assert eventually(
        lambda: (
            {n.pool.pool_id: n.holds_name for n in _named(a, "web")}
            == {
                po: False,
                pn: True,
            }
        )
    )
    # The old switch's last use goes: the name token, now the new one's, stays.
    a.release_pool(po, "h1")
    a.set_host_network(po, "h1", None)
    assert eventually(lambda: a.pool(po) is None)
    assert c.name_token("web") in _port_groups(a)
    assert [n.pool.pool_id for n in _named(a, "web")] == [pn]


def test_watchers_hear_of_every_change_of_our_switches(real: RealWorld) -> None:
    a, b = real.adapters
    heard = threading.Event()
    a.watch(heard.set)
    b.acquire_pool(SUBNET, "h2", "ovs")
    assert heard.wait(5.0)
    heard.clear()
    b.set_host_network(POOL, "h2", _record("n2" * 32))
    began = time.monotonic()
    assert heard.wait(5.0)
    print(f"\nanother host's write heard after {(time.monotonic() - began) * 1000:.1f} ms")


# -- routers (-o ovs.router=NAME) -------------------------------------------------------------

SUBNET2 = IPv4Network("10.91.0.0/24")
POOL2 = c.switch_name(str(SUBNET2))


def pool_with_gateway(nb: Northbound, subnet: IPv4Network, host: str) -> str:
    pool_id = nb.acquire_pool(subnet, host, "ovs")
    nb.gateway(pool_id, host, None)
    return pool_id


def test_pools_on_one_router_route_to_each_other_until_the_last_goes(world: NbWorld) -> None:
    pool_with_gateway(world.h1, SUBNET, "h1")
    pool_with_gateway(world.h2, SUBNET2, "h2")
    assert both_see(world, lambda nb: len(nb.pools()) == 2)
    world.h1.join_router(POOL, "r1", "02:42:0a:5a:00:01")
    world.h1.join_router(POOL, "r1", "02:42:0a:5a:00:01")  # again: a no-op
    world.h2.join_router(POOL2, "r1", "02:42:0a:5b:00:01")
    assert both_see(world, lambda nb: nb.routed_subnets(POOL) == [SUBNET2])
    assert world.h2.routed_subnets(POOL2) == [SUBNET]
    with pytest.raises(Conflict, match="joined to router r1"):
        world.h2.join_router(POOL, "r2", "02:42:0a:5a:00:01")
    # The router stays while one pool is on it, and goes with the last.
    assert world.h1.release_pool(POOL, "h1")
    assert both_see(world, lambda nb: nb.routed_subnets(POOL2) == [])
    world.h2.join_router(POOL2, "r1", "02:42:0a:5b:00:01")  # still joined: a no-op
    assert world.h2.release_pool(POOL2, "h2")
    assert both_see(world, lambda nb: nb.pools() == [])
    # The name is free again, for a new router.
    pool_with_gateway(world.h1, SUBNET, "h1")
    world.h1.join_router(POOL, "r1", "02:42:0a:5a:00:01")
    assert world.h1.routed_subnets(POOL) == []


def test_joining_a_router_needs_the_gateway(world: NbWorld) -> None:
    world.h1.acquire_pool(SUBNET, "h1", "ovs")
    with pytest.raises(BackendError, match="no gateway"):
        world.h1.join_router(POOL, "r1", "02:42:0a:5a:00:01")


def _routers(real: RealWorld, name: str) -> list[Any]:
    api = real.adapters[0]._api
    with api.ovsdb_connection.lock:
        return [
            r for r in api.tables["Logical_Router"].rows.values() if r.name == c.router_name(name)
        ]


def test_a_joined_pool_is_an_ovn_router_port_and_leaves_nothing(real: RealWorld) -> None:
    a, _ = real.adapters
    pool_with_gateway(a, SUBNET, "h1")
    a.join_router(POOL, "r1", "02:42:0a:5a:00:01")
    (router,) = _routers(real, "r1")
    (lrp,) = router.ports
    assert (lrp.name, lrp.mac, lrp.networks) == (
        c.router_port_name(POOL),
        "02:42:0a:5a:00:01",
        ["10.90.0.1/16"],
    )
    api = a._api
    with api.ovsdb_connection.lock:
        gw = idlutils.row_by_value(api.idl, "Logical_Switch_Port", "name", f"{POOL}-10.90.0.1")
        assert (gw.type, gw.addresses, dict(gw.options)) == (
            "router",
            ["router"],
            {"router-port": lrp.name},
        )
    assert a.release_pool(POOL, "h1")
    assert eventually(lambda: _routers(real, "r1") == [])
    with api.ovsdb_connection.lock:
        assert not api.tables["Logical_Router_Port"].rows
        assert not api.tables["Port_Group"].rows.values() or all(
            not pg.name.startswith(c.ROUTER_TOKEN_PREFIX)
            for pg in api.tables["Port_Group"].rows.values()
        )


def test_two_hosts_making_one_router_at_once_make_one(real: RealWorld) -> None:
    a, b = real.adapters
    for attempt in range(5):  # several rounds: the race must be hit, not dodged
        name = f"race{attempt}"
        s1, s2 = (
            IPv4Network(f"10.{110 + attempt}.0.0/24"),
            IPv4Network(f"10.{120 + attempt}.0.0/24"),
        )
        p1, p2 = pool_with_gateway(a, s1, "h1"), pool_with_gateway(b, s2, "h2")
        assert eventually(lambda: a.pool(p2) is not None and b.pool(p1) is not None)  # noqa: B023
        results = _race(
            [
                partial(a.join_router, p1, name, "02:42:00:00:00:01"),
                partial(b.join_router, p2, name, "02:42:00:00:00:02"),
            ]
        )
        assert results == [None, None]
        assert len(_routers(real, name)) == 1
        assert eventually(lambda: a.routed_subnets(p1) == [s2])  # noqa: B023
        assert eventually(lambda: b.routed_subnets(p2) == [s1])  # noqa: B023
