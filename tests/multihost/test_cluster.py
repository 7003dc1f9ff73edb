"""The multi-host harness itself: what later multi-host tests rely on, checked for real."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from testbed import procs
from testbed.commands import wait_until
from testbed.docker import DockerEnv, container_pid
from testbed.host import LOCAL
from testbed.image import IMAGE_TAG
from testbed.multihost import Cluster, WiredPort
from testbed.ovn import NB, SB, RaftDb

from .support import LAYOUT, OURS, SUITE, SWITCH, TIMINGS

pytestmark = pytest.mark.multihost

PROBE = f"{LAYOUT.prefix}-probe"
#: A write each database accepts only from its leader.
PROBE_WRITE = {
    "nb": ("--may-exist", "ls-add", PROBE),
    "sb": ("set", "SB_Global", ".", f"external_ids:{PROBE}=1"),
}


@pytest.mark.parametrize("db", [NB, SB], ids=lambda db: db.key)
def test_raft_cluster_has_three_members_and_one_leader(cluster: Cluster, db: RaftDb) -> None:
    statuses = cluster.statuses(db)
    assert len(statuses) == 3
    for name, status in statuses.items():
        assert status is not None, f"{name}'s {db.key} member does not answer"
        assert status.member, (name, status)
        assert len(status.servers) == 3, (name, status.servers)
    leaders = [name for name, s in statuses.items() if s is not None and s.leader]
    assert len(leaders) == 1, statuses


def test_three_chassis_with_geneve_on_the_underlay(cluster: Cluster) -> None:
    assert cluster.chassis() == ["h1", "h2", "h3"]
    encaps = cluster.sbctl("--bare", "--columns=type,ip", "list", "Encap").stdout.split()
    assert sorted(encaps) == sorted(["geneve"] * 3 + [h.ip for h in cluster.hosts])
    for h in cluster.hosts:
        # The userspace datapath, from ovn-bridge-datapath-type.
        dp = h.host.ovs_vsctl("get", "Bridge", "br-int", "datapath_type").stdout.strip()
        assert dp == "netdev", (h.name, dp)
        # OVS tools run on a host reach that host's daemons (its run directory), not ours.
        flows = h.host.run(["ovs-ofctl", "dump-flows", "br-int"]).stdout
        assert "cookie=" in flows, (h.name, flows)
        dpif = h.host.run(["ovs-appctl", "-t", "ovs-vswitchd", "dpif/show"]).stdout
        assert "br-phy" in dpif, (h.name, dpif)


def test_each_dockerd_serves_its_own_plugin(cluster: Cluster) -> None:
    """A plain single-host network of the driver on each host: made by that host's plugin in
    that host's Open vSwitch only, and removed."""
    for h in cluster.hosts:
        assert h.plugin.socket_path.is_socket(), h.plugin.socket_path
        env = DockerEnv(h.plugin, SUITE, host=h.host, owned=OURS)
        try:
            net = env.create_network()
            assert h.host.ovs_bridge_exists(net.bridge), f"{net.bridge} not on {h.name}"
            for other in [o for o in cluster.hosts if o is not h]:
                assert not other.host.ovs_bridge_exists(net.bridge), (other.name, net.bridge)
            assert not LOCAL.ovs_bridge_exists(net.bridge)
            env.remove_network(net)
            assert not h.host.ovs_bridge_exists(net.bridge)
        finally:
            assert env.cleanup() == []


@pytest.fixture(scope="module")
def ports(cluster: Cluster) -> Iterator[tuple[WiredPort, WiredPort]]:
    """Namespaces "c1" on h1 and "c2" on h2 wired by hand onto one logical switch."""
    cluster.nbctl("--may-exist", "ls-add", SWITCH)
    try:
        with (
            cluster.wired_port(cluster.host(1), SWITCH, "c1", "0a:00:00:98:00:01", "10.98.0.1/24")
            as c1,
            cluster.wired_port(cluster.host(2), SWITCH, "c2", "0a:00:00:98:00:02", "10.98.0.2/24")
            as c2,
        ):  # fmt: skip
            yield c1, c2
    finally:
        cluster.nbctl("--if-exists", "ls-del", SWITCH, check=False)


def test_hand_wired_ports_talk_across_hosts(ports: tuple[WiredPort, WiredPort]) -> None:
    c1, c2 = ports
    for p in ports:
        wait_until(p.installed, timeout=20, interval=0.05, what=f"{p.port} ovn-installed")
    TIMINGS["first reply c1 -> c2 (s)"] = c1.first_reply(c2.ip)
    TIMINGS["first reply c2 -> c1 (s)"] = c2.first_reply(c1.ip)
    c1.tcp_send(c2, 7001)
    c2.tcp_send(c1, 7002)
    # The MTU the overlay carries: a 1400-byte packet, do-not-fragment, gets through.
    c1.run("busybox", "ping", "-c", "1", "-W", "2", "-s", "1372", c2.ip)


@pytest.mark.parametrize("db", [NB, SB], ids=lambda db: db.key)
def test_killed_leader_is_replaced_and_writes_resume(cluster: Cluster, db: RaftDb) -> None:
    killed = time.monotonic()
    old = cluster.kill_leader(db)
    try:
        wait_until(
            lambda: (new := cluster.leader(db)) is not None and new is not old,
            timeout=10,
            interval=0.05,
            what=f"a new {db.key} leader",
        )
        elected = time.monotonic() - killed
        via = cluster.client(avoid=[old])
        attempts, took = cluster.write_retry(db, *PROBE_WRITE[db.key], via=via)
        TIMINGS[f"{db.key} leader killed: new leader after (s)"] = elected
        TIMINGS[f"{db.key} leader killed: first write after (s)"] = took
        TIMINGS[f"{db.key} leader killed: write attempts"] = attempts
        assert elected < 5, f"new {db.key} leader only after {elected:.1f} s"
    finally:
        old.start(db.key)
        cluster.wait_for_members(db)
        cluster.nbctl("--if-exists", "ls-del", PROBE, check=False)
        cluster.sbctl("remove", "SB_Global", ".", "external_ids", PROBE, check=False)
    status = old.member_status(db)
    assert status is not None and status.member and not status.leader, status


def test_vswitchd_restarted_like_an_init_system_would(
    cluster: Cluster, ports: tuple[WiredPort, WiredPort]
) -> None:
    """kill -9 and start again: br-phy and its underlay address come back, traffic resumes."""
    c1, c2 = ports
    h2 = cluster.host(2)
    h2.restart("ovs-vswitchd")
    assert h2.ip + "/24" in h2.host.link_ipv4_cidrs("br-phy")
    TIMINGS["ovs-vswitchd restarted: first reply after (s)"] = c1.first_reply(c2.ip, timeout=30)
    c1.tcp_send(c2, 7003)


def test_every_daemon_of_a_host_can_be_killed_and_started(cluster: Cluster) -> None:
    h3 = cluster.host(3)
    northd = cluster.host(2)
    for host, name in [*((h3, n) for n in h3.daemons), (northd, "ovn-northd")]:
        started = time.monotonic()
        host.kill(name)
        assert not host.lever(name).running(), (host.name, name)
        host.start(name)
        assert host.lever(name).running(), (host.name, name)
        TIMINGS[f"kill -9 and start {name} (s)"] = time.monotonic() - started
    for db in (NB, SB):
        cluster.wait_for_members(db)
    assert h3.plugin.answers_activate()
    assert h3.docker_answers()
    cluster.wait_for_chassis()


def test_lost_host_comes_back(cluster: Cluster) -> None:
    h3 = cluster.host(3)
    name = f"{LAYOUT.prefix}-c-lost"
    h3.host.docker("run", "-d", "--name", name, "--net", "none", IMAGE_TAG, "sleep", "600")
    pid = container_pid(h3.host, name)
    try:
        h3.lose()
        assert not any(h3.running().values()), h3.running()
        assert not procs.alive(pid), "the lost host's container still runs"
        # 2 of 3 members: NB still takes writes, from a host that is not the lost one.
        cluster.write_retry(NB, *PROBE_WRITE["nb"], via=cluster.client(avoid=[h3]))
        started = time.monotonic()
        h3.come_back()
        for db in (NB, SB):
            cluster.wait_for_members(db)
        cluster.wait_for_chassis()
        TIMINGS["lost host back: members, chassis, tunnels after (s)"] = time.monotonic() - started
        assert all(h3.running().values()), h3.running()
        state = h3.host.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
        assert state == "exited", state
    finally:
        if h3.lost:
            h3.come_back()
        h3.host.docker("rm", "-f", name, check=False)
        cluster.nbctl("--if-exists", "ls-del", PROBE, check=False)
