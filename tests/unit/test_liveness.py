"""Host loss and fencing: heartbeats, the fence after the period, the way back; a clock the
test moves (no sleeps)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.service.liveness import Liveness, heartbeat_interval

from .fake_hosts import FakeHosts
from .fakes import FakeNorthbound
from .test_overlay import SUBNET, Host

FENCE = 120.0


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Cluster:
    clock: Clock = field(default_factory=Clock)
    nb: FakeNorthbound = field(init=False)
    hosts: FakeHosts = field(init=False)
    leader: str = "h1"  # which host holds the housekeeping lock

    def __post_init__(self) -> None:
        self.nb = FakeNorthbound(clock=self.clock)
        self.hosts = FakeHosts(self.nb)

    def liveness(self, host: Host, *, elected: bool | None = None) -> Liveness:
        def chosen() -> bool:
            return elected if elected is not None else self.leader == host.system_id

        return Liveness(
            self.hosts,
            self.nb,
            host.integration,
            host.links,
            host.overlay,
            name="ovs",
            fence_period=FENCE,
            elected=(lambda: elected)
            if elected is not None
            else (lambda: self.leader == host.system_id),
            clock=self.clock,
        )

    def run_for(self, seconds: float, *alive: Liveness) -> None:
        """The live hosts' heartbeat rounds, every interval, for `seconds`."""
        step = heartbeat_interval(FENCE)
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now += step
            for live in alive:
                live.tick()


@pytest.fixture
def cl() -> Cluster:
    return Cluster()


def three(cl: Cluster) -> tuple[list[Host], list[Liveness], str, str]:
    hosts = [Host(cl.nb, f"h{i}") for i in (1, 2, 3)]
    net_pool = [h.create_network() for h in hosts]
    pool = net_pool[0][1]
    lives = [cl.liveness(h) for h in hosts]
    for live in lives:
        live.tick()
    return hosts, lives, net_pool[2][0], pool


def test_a_lost_host_is_fenced_only_after_the_period(cl: Cluster) -> None:
    (_h1, h2, h3), (l1, l2, _l3), net3, pool = three(cl)
    _, a2 = h2.run(h2.overlay.networks()[0].network_id, pool)
    _, a3 = h3.run(net3, pool)
    cl.run_for(FENCE - 10, l1, l2)  # h3 is silent
    assert cl.nb.reservation(pool, a3.ip) is not None  # nothing removed within the period
    assert not cl.hosts.host("h3").fenced  # type: ignore[union-attr]
    cl.run_for(20, l1, l2)
    state = cl.hosts.host("h3")
    assert state is not None and state.fenced and state.fenced_after is not None
    assert state.fenced_after >= FENCE
    assert cl.nb.reservation(pool, a3.ip) is None  # freed
    assert cl.nb.reservation(pool, a2.ip) is not None  # the others are not disturbed
    p = cl.nb.pool(pool)
    assert p is not None and "h3" not in p.networks and "h3" not in p.pool_hosts
    # the address can be had by another host
    _, again = h2.run(h2.overlay.networks()[0].network_id, pool, ip=str(a3.ip))
    assert again.ip == a3.ip


def test_only_the_elected_host_fences(cl: Cluster) -> None:
    (_h1, _h2, h3), (l1, l2, _l3), net3, pool = three(cl)
    _, a3 = h3.run(net3, pool)
    cl.leader = "nobody"
    cl.run_for(FENCE * 2, l1, l2)
    assert cl.nb.reservation(pool, a3.ip) is not None
    cl.leader = "h2"  # a newly elected host observes afresh: a full period again
    cl.run_for(FENCE - 10, l1, l2)
    assert cl.nb.reservation(pool, a3.ip) is not None
    cl.run_for(20, l1, l2)
    assert cl.nb.reservation(pool, a3.ip) is None


def test_a_host_back_within_the_period_loses_nothing(cl: Cluster) -> None:
    (_h1, _h2, h3), (l1, l2, l3), net3, pool = three(cl)
    e3, a3 = h3.run(net3, pool)
    cl.run_for(FENCE - 10, l1, l2)
    cl.run_for(FENCE - 10, l1, l2, l3)  # back: heartbeats again, then as long again
    assert not cl.hosts.host("h3").fenced  # type: ignore[union-attr]
    r = cl.nb.reservation(pool, a3.ip)
    assert r is not None and r.endpoint_id == e3
    assert h3.integration.ports and h3.overlay.endpoints()


def test_a_host_back_after_the_fence_brings_nothing_back(
    cl: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    (_h1, h2, h3), (l1, l2, l3), net3, pool = three(cl)
    _e3, a3 = h3.run(net3, pool)
    port = h3.overlay.endpoints()[0].host_if
    cl.run_for(FENCE + 10, l1, l2)
    assert cl.nb.reservation(pool, a3.ip) is None
    net2 = h2.overlay.networks()[0].network_id
    e2, _taken = h2.run(net2, pool, ip=str(a3.ip))  # given to someone else
    # h3 returns (its plugin kept running, or restarted and loaded): its first heartbeat
    # round finds the mark and tears down locally, then clears the mark.
    with caplog.at_level(logging.ERROR):
        l3.tick()
    assert f"lost its address {a3.ip} on network" in caplog.text
    assert "this host was fenced after 1" in caplog.text  # ~125 s
    assert port not in h3.integration.ports and not h3.links.exists(port)
    assert h3.overlay.endpoints() == [] and h3.overlay.networks() == []
    assert not cl.hosts.host("h3").fenced  # type: ignore[union-attr]
    r = cl.nb.reservation(pool, a3.ip)
    assert r is not None and (r.host, r.endpoint_id) == ("h2", e2)  # untouched
    # nothing of h3 came back in NB
    p = cl.nb.pool(pool)
    assert p is not None and "h3" not in p.networks
    assert all(
        lsp.external_ids[c.HOST_KEY] != "h3" or lsp.external_ids.get(c.ROLE_KEY) == c.ROLE_GATEWAY
        for lsp in cl.nb.switches[pool].ports.values()
    )
    l3.tick()  # and it is an ordinary host again
    assert not cl.hosts.host("h3").fenced  # type: ignore[union-attr]


def test_a_restarted_fenced_host_tears_down_before_it_loads(
    cl: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    (_h1, _h2, h3), (l1, l2, _l3), net3, pool = three(cl)
    _, a3 = h3.run(net3, pool)
    cl.run_for(FENCE + 10, l1, l2)
    h3.restart()
    # a new process, nothing loaded yet: the order bootstrap uses (fence check, then load)
    h3.overlay = type(h3.overlay)(
        cl.nb, h3.integration, h3.links, datapath_type="netdev", join_timeout=1.0
    )
    l3 = cl.liveness(h3)
    with caplog.at_level(logging.ERROR):
        l3.tick()
        assert h3.integration.ports == {}
        assert "lost its address" not in caplog.text  # not before the state is loaded
        h3.overlay.load()
        assert h3.overlay.networks() == [] and h3.overlay.endpoints() == []
        l3.tick()
    assert f"lost its address {a3.ip}" in caplog.text


def test_two_hosts_fencing_at_once_never_free_twice(cl: Cluster) -> None:
    (h1, h2, h3), _, net3, pool = three(cl)
    _, a3 = h3.run(net3, pool)
    both = [cl.liveness(h1, elected=True), cl.liveness(h2, elected=True)]
    for live in both:
        live.tick()
    cl.clock.now += FENCE + 1
    freed = [live.housekeep(h) for live, h in zip(both, ("h1", "h2"), strict=True)]
    assert [len(f) for f in freed] == [1, 0]
    assert freed[0][0].address == a3.ip
    # an address re-reserved after the first fence is not freed by a late second fencer
    cl.hosts.rows["h3"].pop(c.FENCED_AT_KEY)
    assert cl.hosts.fence("h3", "stale", FENCE) is None
    _, again = h2.run(h2.overlay.networks()[0].network_id, pool, ip=str(a3.ip))
    assert cl.nb.reservation(pool, IPv4Address(str(again.ip))) is not None


def test_a_fence_deletes_a_switch_only_the_fenced_host_used(cl: Cluster) -> None:
    h3 = Host(cl.nb, "h3")
    h1 = Host(cl.nb, "h1")
    net3, pool = h3.create_network(subnet="10.70.0.0/24")
    h3.run(net3, pool)
    l1, l3 = cl.liveness(h1), cl.liveness(h3)
    l1.tick()
    l3.tick()
    cl.run_for(FENCE + 10, l1)
    assert cl.nb.pool(pool) is None  # only h3 used it
    assert cl.nb.pool(c.switch_name(SUBNET)) is None
