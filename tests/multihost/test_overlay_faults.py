"""Overlay networks while a daemon of the cluster fails: the data path of existing containers
goes on, and what was down serves again once it is back."""

from __future__ import annotations

import threading
import time

import pytest

from docker_ovs_plugin import contract
from testbed.multihost import Cluster
from testbed.ovn import NB

from .overlay import BackgroundPing, Member, overlay_network, tcp_send
from .support import TIMINGS

pytestmark = pytest.mark.multihost

#: At most this many pings of a background run may be lost while a daemon is down.
TOLERATED_LOSS = 2


def assert_ping_went_on(ping: BackgroundPing, what: str) -> None:
    counts = ping.result()
    assert counts.transmitted > 0 and counts.lost <= TOLERATED_LOSS, f"{what}:\n{counts.output}"
    TIMINGS[f"{what}: pings lost"] = counts.lost


def test_plugin_killed_traffic_goes_on_and_restart_serves(cluster: Cluster) -> None:
    h2 = cluster.host(2)
    with overlay_network(cluster, "10.71.0.0/24") as ov:
        a, b = ov.run(1), ov.run(2)
        a.first_reply(b.ip)
        ping = BackgroundPing(a, b.ip, count=30)
        try:
            h2.kill("plugin")
            time.sleep(1.5)  # the outage: the pings run meanwhile
            assert not h2.lever("plugin").running()
            started = time.monotonic()
            h2.start("plugin")
            TIMINGS["plugin kill -9: serving again after start (s)"] = time.monotonic() - started
        finally:
            if not h2.lever("plugin").running():
                h2.start("plugin")
        assert_ping_went_on(ping, "plugin on h2 killed")
        c = ov.run(2)
        assert c.ip not in (a.ip, b.ip)
        c.first_reply(a.ip)
        tcp_send(a, c, 7301)


def test_nb_leader_killed_during_allocations(cluster: Cluster) -> None:
    """Containers started on every host in a loop while the NB Raft leader is killed: every
    `docker run` succeeds (the plugin retries), no address twice."""
    per_host = 4
    with overlay_network(cluster, "10.72.0.0/24") as ov:
        ov.run(1)
        results: list[Member] = []
        failures: list[BaseException] = []
        killed_after = threading.Event()

        def loop(n: int) -> None:
            for i in range(per_host):
                try:
                    results.append(ov.run(n))
                except BaseException as exc:
                    failures.append(exc)
                if i == 0:
                    killed_after.set()

        threads = [threading.Thread(target=loop, args=(n,)) for n in (1, 2, 3)]
        for t in threads:
            t.start()
        old = None
        try:
            killed_after.wait(timeout=60)
            old = cluster.kill_leader(NB)
            started = time.monotonic()
            for t in threads:
                t.join(timeout=180)
            TIMINGS["NB leader killed: the allocations went on, done after (s)"] = (
                time.monotonic() - started
            )
        finally:
            for t in threads:
                t.join(timeout=180)
            if old is not None:
                old.start(NB.key)
                cluster.wait_for_members(NB)
        assert not failures, "\n---\n".join(str(f) for f in failures)
        assert len(results) == 3 * per_host
        ips = [m.ip for m in ov.members]
        assert len(set(ips)) == len(ips), sorted(ips)
        endpoints = [p for p in ov.lsps() if contract.ENDPOINT_ID_KEY in p]
        assert sorted(p[contract.ADDRESS_KEY] for p in endpoints) == sorted(ips)
        first, last = ov.members[0], ov.members[-1]
        if first.n == last.n:
            last = next(m for m in ov.members if m.n != first.n)
        first.first_reply(last.ip)


def test_ovn_controller_killed_traffic_goes_on_new_ports_bind_after(cluster: Cluster) -> None:
    h3 = cluster.host(3)
    with overlay_network(cluster, "10.73.0.0/24") as ov:
        a, b = ov.run(1), ov.run(3)
        a.first_reply(b.ip)
        ping = BackgroundPing(a, b.ip, count=30)
        try:
            h3.kill("ovn-controller")
            time.sleep(1.5)  # the outage: the pings run meanwhile
        finally:
            h3.start("ovn-controller")
        started = time.monotonic()
        assert_ping_went_on(ping, "ovn-controller on h3 killed")
        c = ov.run(3)
        TIMINGS["ovn-controller restarted: new port on h3 bound, docker run done after (s)"] = (
            time.monotonic() - started
        )
        c.first_reply(a.ip)
        tcp_send(c, a, 7302)


def test_vswitchd_restart_traffic_heals(cluster: Cluster) -> None:
    h2 = cluster.host(2)
    with overlay_network(cluster, "10.74.0.0/24") as ov:
        a, b = ov.run(1), ov.run(2)
        a.first_reply(b.ip)
        started = time.monotonic()
        h2.restart("ovs-vswitchd")
        a.first_reply(b.ip, timeout=30)
        TIMINGS["ovs-vswitchd kill -9 and start on h2: first reply after (s)"] = (
            time.monotonic() - started
        )
        tcp_send(b, a, 7303)
        c = ov.run(2)
        c.first_reply(a.ip)
