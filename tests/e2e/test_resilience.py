"""Restarts, faults, load and bad input: nothing lost, nothing leaked.

Docker replays nothing to a plugin after either side restarts and sends no DeleteEndpoint to a
plugin that was down; Open vSwitch forgets flows and internal-port addresses when
ovs-vswitchd restarts. These tests cause each of those for real.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed import (
    Container,
    DockerEnv,
    HostSnapshot,
    Network,
    PluginProcess,
    plugin_call,
    wait_until,
)
from testbed.daemons import Dockerd, managed_containerd

from .support import (
    DOCKER_WORKAROUNDS,
    DRIVER_NAME,
    HOST,
    NAME_PREFIX,
    OVS,
    OWNER,
    assert_snapshot_restored,
    docker,
    link_exists,
    link_ipv4_cidrs,
    network_rm_refused_for_good,
    ovs_bridge_exists,
    ovs_vsctl,
    run,
    take_snapshot,
    unique_name,
)

pytestmark = pytest.mark.e2e

# The e2e plugin removes what stays stale for 4 s, checking every 2 s.
COLLECT_TIMEOUT = 30.0


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            sys.executable,
            "-m",
            "docker_ovs_plugin",
            "doctor",
            "--name",
            DRIVER_NAME,
            "--log-level",
            "warning",
            *args,
        ],
        check=False,
        timeout=120,
    )


def assert_doctor_clean() -> None:
    def clean() -> bool:
        return doctor().returncode == 0

    try:
        wait_until(clean, timeout=COLLECT_TIMEOUT, interval=1.0, what="doctor to find nothing")
    except AssertionError:
        report = doctor()
        raise AssertionError(
            f"doctor still finds problems:\n{report.stdout}{report.stderr}"
        ) from None


def flows(bridge: str) -> str:
    return run(["ovs-ofctl", "dump-flows", bridge], check=False).stdout


def endpoint_cookie(net: Network, c: Container) -> str:
    return f"cookie={(int(net.id[:8], 16) << 32 | int(c.endpoint_id[:8], 16)):#x}"


# -- the plugin process -----------------------------------------------------------------------


def test_sigkill_while_containers_start_leaves_nothing(
    plugin: PluginProcess, dk: DockerEnv, snapshot_before: HostSnapshot
) -> None:
    net = dk.create_network(subnet="10.250.0.0/24", gateway="10.250.0.1")
    started: list[Container] = []
    failed: list[str] = []

    def start(i: int) -> None:
        name = unique_name(f"k{i}")
        try:
            started.append(dk.run_container(net, name=name))
        except AssertionError:
            failed.append(name)  # a start that met the dead plugin fails; Docker rolls back

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(start, i) for i in range(6)]
        time.sleep(random.uniform(0.2, 0.8))  # noqa: S311 (any moment mid-requests)
        plugin.stop(signal.SIGKILL)
        plugin.start()
        for f in futures:
            f.result()
    assert len(started) + len(failed) == 6
    if len(started) >= 2:
        dk.assert_ping(started[0], started[1].ip)
        dk.tcp_send(started[1], started[0], started[1].ip, 7101)
    for name in failed:
        docker("rm", "-f", name, check=False)
    late = dk.run_container(net)  # the restarted plugin serves the network
    dk.assert_ping(late, net.gateway)
    dk.remove_all()
    assert_doctor_clean()
    assert_snapshot_restored(snapshot_before, timeout=COLLECT_TIMEOUT)


def test_endpoint_removed_while_the_plugin_was_down_is_collected(
    plugin: PluginProcess, dk: DockerEnv, snapshot_before: HostSnapshot
) -> None:
    net = dk.create_network(subnet="10.250.1.0/24", gateway="10.250.1.1")
    keep = dk.run_container(net)
    gone = dk.run_container(net)
    plugin.stop(signal.SIGKILL)
    # Docker cannot tell the plugin: it gives up on Leave/DeleteEndpoint and drops the endpoint.
    dk.remove_container(gone)
    assert link_exists(gone.host_veth)
    plugin.start()
    wait_until(
        lambda: not link_exists(gone.host_veth),
        timeout=COLLECT_TIMEOUT,
        what=f"stale endpoint {gone.host_veth} to be collected",
    )
    assert endpoint_cookie(net, gone) not in flows(net.bridge)
    assert endpoint_cookie(net, keep) in flows(net.bridge)
    dk.assert_ping(keep, net.gateway)
    dk.remove_all()
    assert_doctor_clean()
    assert_snapshot_restored(snapshot_before, timeout=COLLECT_TIMEOUT)


# -- Open vSwitch faults ----------------------------------------------------------------------


@pytest.fixture
def ovs_restored() -> Iterator[None]:
    """Whatever a test does to the OVS daemons, both run again afterwards."""
    try:
        yield
    finally:
        if not OVS.ovsdb_answers():
            OVS.start_ovsdb_server()
        if not OVS.vswitchd_answers():
            OVS.start_vswitchd()


def test_vswitchd_restart_puts_addresses_and_flows_back_within_2s(
    plugin: PluginProcess, dk: DockerEnv, ovs_restored: None, snapshot_before: HostSnapshot
) -> None:
    net = dk.create_network(subnet="10.250.2.0/24", gateway="10.250.2.1")
    a = dk.run_container(net)
    b = dk.run_container(net)
    dk.assert_ping(a, net.gateway)
    old = OVS.vswitchd_pid()
    run(["ovs-appctl", "-t", "ovs-vswitchd", "exit"])
    wait_until(
        lambda: run(["ovs-appctl", "-t", "ovs-vswitchd", "version"], check=False).returncode != 0,
        timeout=10,
        what="vswitchd to stop",
    )
    OVS.start_vswitchd()
    back = time.monotonic()
    assert OVS.vswitchd_pid() != old

    def recovered() -> bool:
        f = flows(net.bridge)
        return (
            f"{net.gateway}/24" in link_ipv4_cidrs(net.bridge)
            and endpoint_cookie(net, a) in f
            and endpoint_cookie(net, b) in f
        )

    wait_until(recovered, timeout=10, interval=0.05, what="addresses and flows to come back")
    took = time.monotonic() - back
    print(f"recovered {took:.2f} s after ovs-vswitchd was back")
    assert took < 2.0, f"recovery took {took:.2f} s"
    dk.assert_ping(a, net.gateway)
    dk.assert_ping(a, b.ip)
    dk.tcp_send(b, a, b.ip, 7102)
    dk.remove_all()
    assert_snapshot_restored(snapshot_before)


def test_ovsdb_server_restart_fails_fast_then_reconnects(
    plugin: PluginProcess, dk: DockerEnv, ovs_restored: None, snapshot_before: HostSnapshot
) -> None:
    net = dk.create_network(subnet="10.250.3.0/24", gateway="10.250.3.1")
    a = dk.run_container(net)
    b = dk.run_container(net)
    run(["ovs-appctl", "-t", "ovsdb-server", "exit"])
    try:
        wait_until(
            lambda: run(["ovs-vsctl", "--timeout=1", "show"], check=False).returncode != 0,
            timeout=10,
            what="ovsdb-server to stop",
        )
        started = time.monotonic()
        _, proc = dk.try_create_network(subnet="10.250.4.0/24", gateway="10.250.4.1")
        took = time.monotonic() - started
        assert proc.returncode != 0
        assert "Open vSwitch database" in proc.stderr, proc.stderr
        assert took < 5.0, f"refusing took {took:.1f} s"
        # (No traffic check here: on the userspace datapath ovs-vswitchd's main thread, which
        # also moves the packets of system devices, stalls while its database is away.)
    finally:
        OVS.start_ovsdb_server()
    deadline = time.monotonic() + 20
    while True:
        _name, proc = dk.try_create_network(subnet="10.250.5.0/24", gateway="10.250.5.1")
        if proc.returncode == 0:
            break
        assert time.monotonic() < deadline, f"plugin did not reconnect: {proc.stderr}"
        time.sleep(0.5)
    c = dk.run_container(net)
    dk.assert_ping(c, a.ip)
    dk.assert_ping(a, b.ip)
    dk.remove_all()
    assert_snapshot_restored(snapshot_before, timeout=COLLECT_TIMEOUT)


# -- Docker restarts and a host reboot --------------------------------------------------------


@pytest.fixture
def dockerd() -> Iterator[Dockerd]:
    d = Dockerd(HOST)
    try:
        yield d
    finally:
        if not d.running():
            d.start()
        elif any(a == b"--live-restore" for a in d.argv) != any(
            a == b"--live-restore" for a in d.cmdline()
        ):
            d.stop()
            d.start()


def _restart_policy_pair(dk: DockerEnv, net: Network) -> tuple[Container, Container]:
    a = dk.run_container(net, extra=("--restart", "always"))
    b = dk.run_container(net, extra=("--restart", "always"))
    dk.assert_ping(a, b.ip)
    return a, b


def test_dockerd_restart_brings_restart_policy_containers_back(
    plugin: PluginProcess, dk: DockerEnv, dockerd: Dockerd, snapshot_before: HostSnapshot
) -> None:
    net = dk.create_network(subnet="10.250.7.0/24", gateway="10.250.7.1")
    a, b = _restart_policy_pair(dk, net)
    old_ports = {a.host_veth, b.host_veth}
    dockerd.stop()
    dockerd.start()
    a2, b2 = dk.inspect_container(a.name, net), dk.inspect_container(b.name, net)
    wait_until(
        lambda: bool(dk.inspect_container(a.name, net).ip),
        timeout=30,
        what="the restart-policy container to be back",
    )
    dk.assert_ping(a2, b2.ip)
    dk.tcp_send(b2, a2, b2.ip, 7103)
    for port in old_ports - {a2.host_veth, b2.host_veth}:

        def gone(p: str = port) -> bool:
            return not link_exists(p)

        wait_until(
            gone,
            timeout=COLLECT_TIMEOUT,
            what=f"old endpoint {port} to go",
        )
    dk.remove_all()
    assert_doctor_clean()
    assert_snapshot_restored(snapshot_before, timeout=COLLECT_TIMEOUT)


def test_simulated_host_reboot(
    plugin: PluginProcess,
    dk: DockerEnv,
    dockerd: Dockerd,
    ovs_restored: None,
    snapshot_before: HostSnapshot,
) -> None:
    net = dk.create_network(subnet="10.250.8.0/24", gateway="10.250.8.1")
    a, b = _restart_policy_pair(dk, net)
    # Power off: plugin, dockerd and OVS stop; the kernel forgets every veth.
    plugin.stop(signal.SIGKILL)
    dockerd.stop()
    OVS.ctl("stop")
    for c in (a, b):
        if link_exists(c.host_veth):
            run(["ip", "link", "del", c.host_veth])
    # Power on, in the order the units start: OVS, the plugin, then dockerd.
    OVS.ctl("start", "--system-id=random")
    plugin.start()
    dockerd.start()
    wait_until(
        lambda: (
            bool(dk.inspect_container(a.name, net).ip)
            and bool(dk.inspect_container(b.name, net).ip)
        ),
        timeout=60,
        what="restart-policy containers to come back",
    )
    a2, b2 = dk.inspect_container(a.name, net), dk.inspect_container(b.name, net)
    dk.assert_ping(a2, net.gateway)
    dk.assert_ping(a2, b2.ip)
    dk.tcp_send(b2, a2, b2.ip, 7104)
    # The endpoints of before the "reboot" are collected.
    for c in (a, b):

        def collected(stale: Container = c) -> bool:
            return stale.host_veth not in ovs_vsctl("list-ports", net.bridge).stdout

        wait_until(
            collected,
            timeout=COLLECT_TIMEOUT,
            what=f"stale port {c.host_veth} to be collected",
        )
    dk.remove_all()
    assert_doctor_clean()
    assert_snapshot_restored(snapshot_before, timeout=COLLECT_TIMEOUT)


# -- load -------------------------------------------------------------------------------------


def test_fifty_containers_in_parallel_three_rounds(
    plugin: PluginProcess, dk: DockerEnv, dockerd: Dockerd, snapshot_before: HostSnapshot
) -> None:
    net = dk.create_network(subnet="10.251.0.0/24", gateway="10.251.0.1")
    for round_no in range(3):
        names = [unique_name(f"l{round_no}-{i}") for i in range(50)]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=50) as pool:
            containers = list(pool.map(lambda n: dk.run_container(net, name=n), names))
        up = time.monotonic() - started
        assert len({c.ip for c in containers}) == 50
        assert len(ovs_vsctl("list-ports", net.bridge).stdout.split()) == 50
        dk.assert_ping(containers[0], containers[-1].ip)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(dk.remove_container, containers))
        down = time.monotonic() - started
        print(f"round {round_no}: 50 up in {up:.1f} s, down in {down:.1f} s")
        # Deletions finish in the background, right after Docker's answers.
        wait_until(
            lambda: ovs_vsctl("list-ports", net.bridge).stdout.split() == [],
            timeout=30,
            what="every port of the round to be deleted",
        )
        # Docker forgets its endpoints in its own time after `docker rm` returned; the
        # next round (and `docker network rm`) wait for that, as a user's script would.
        wait_until(
            lambda: (
                docker("network", "inspect", "-f", "{{len .Containers}}", net.name).stdout == "0\n"
            ),
            timeout=60,
            what="Docker to list no container on the network",
        )
    if network_rm_refused_for_good(net):
        _restart_dockerd_to_fix_its_endpoint_count(dockerd, net)
    dk.remove_all()
    assert_snapshot_restored(snapshot_before)


def _restart_dockerd_to_fix_its_endpoint_count(dockerd: Dockerd, net: Network) -> None:
    """dockerd 20.10 can lose a decrement of a network's endpoint count when many endpoints
    of it are deleted at once (moby/moby#42119): `network rm` then refuses for good although
    nothing is attached. Here every DeleteEndpoint was answered, Docker lists no container
    and OVS no port; dockerd corrects the count when it starts, and says so in its log. Seen
    in 3 of about 15 full runs of this suite, always in this test. Restart it, as a user
    would, and check that this is what it fixed."""
    log_size = dockerd.log.stat().st_size if dockerd.log.exists() else 0
    dockerd.stop()
    dockerd.start()
    fixed = f"Fixing inconsistent endpoint_cnt for network {net.name}."
    if not dockerd.systemd:  # with systemd the line is in the journal
        with dockerd.log.open("rb") as log:
            log.seek(log_size)
            assert fixed.encode() in log.read(), f"dockerd's log after its restart lacks {fixed!r}"
    DOCKER_WORKAROUNDS.append(
        f"{net.name}: `docker network rm` refused (has active endpoints) with nothing attached; "
        f"restarted dockerd, which logged {fixed!r}"
    )


# -- bad input --------------------------------------------------------------------------------

_IDS = ["3" * 64, "4" * 64]
_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
_requests = st.fixed_dictionaries(
    {},
    optional={
        "NetworkID": st.sampled_from(_IDS) | st.text(max_size=70),
        "EndpointID": st.sampled_from(_IDS) | st.text(max_size=70),
        "Options": st.fixed_dictionaries(
            {},
            optional={
                "com.docker.network.generic": st.dictionaries(
                    st.sampled_from(
                        ["ovs.mode", "ovs.vlan", "ovs.bridge.name", "ovs.x", "ovs.bridge.uplink"]
                    ),
                    st.sampled_from(["flat", "9999", "bad name", "nosuch0", "a" * 20]) | _junk,
                    max_size=2,
                )
            },
        )
        | _junk,
        "IPv4Data": st.lists(
            st.fixed_dictionaries(
                {"Pool": st.sampled_from(["10.252.0.0/24", "10.252.0.0/33", "x"])},
                optional={"Gateway": st.sampled_from(["10.252.0.1/24", "10.253.0.1/24", "y"])},
            ),
            max_size=2,
        )
        | _junk,
        "Interface": st.fixed_dictionaries(
            {},
            optional={
                "Address": st.sampled_from(["10.252.0.9/24", "10.252.0.300/24", ""]),
                "MacAddress": st.sampled_from(["", "zz", "02:00:00:00:00:01"]),
            },
        )
        | _junk,
    },
)
_METHODS = [
    "CreateNetwork",
    "DeleteNetwork",
    "CreateEndpoint",
    "DeleteEndpoint",
    "Join",
    "Leave",
    "EndpointOperInfo",
    "ProgramExternalConnectivity",
    "RevokeExternalConnectivity",
]


def _state() -> tuple[object, ...]:
    snap = take_snapshot()
    rules = [
        line
        for line in (*snap.iptables_filter, *snap.iptables_nat, *snap.iptables_raw)
        if "OVS-PLUGIN" in line or "docker-ovs-plugin" in line
    ]
    return (snap.ovs, snap.links, sorted(rules))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(_METHODS),
    body=_requests.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=40),
)
def test_fuzzed_requests_never_crash_and_errors_change_nothing(
    plugin: PluginProcess, method: str, body: bytes
) -> None:
    before = _state()
    status, reply = plugin_call(plugin.socket_path, f"NetworkDriver.{method}", body=body)
    assert plugin.running, "the plugin died"
    assert status in (200, 400, 404, 409), (status, reply)
    if status != 200:
        assert isinstance(reply, dict) and reply.get("Err"), reply
        assert _state() == before, f"{method} failed ({reply}) but changed the host"
    else:
        # A request valid enough to succeed is undone, so cases stay independent.
        for nid in _IDS:
            plugin_call(
                plugin.socket_path,
                "NetworkDriver.DeleteNetwork",
                body=json.dumps({"NetworkID": nid}).encode(),
            )


def test_repeated_creates_and_deletes_are_idempotent(plugin: PluginProcess) -> None:
    before = _state()
    net = {
        "NetworkID": _IDS[0],
        "Options": {},
        "IPv4Data": [
            {"AddressSpace": "LocalDefault", "Pool": "10.252.9.0/24", "Gateway": "10.252.9.1/24"}
        ],
    }
    ep = {
        "NetworkID": _IDS[0],
        "EndpointID": _IDS[1],
        "Interface": {"Address": "10.252.9.2/24", "MacAddress": ""},
    }
    call = plugin.socket_path
    try:
        for _ in range(2):
            assert (
                plugin_call(call, "NetworkDriver.CreateNetwork", body=json.dumps(net).encode())[0]
                == 200
            )
        first = plugin_call(call, "NetworkDriver.CreateEndpoint", body=json.dumps(ep).encode())
        again = plugin_call(call, "NetworkDriver.CreateEndpoint", body=json.dumps(ep).encode())
        assert first == again and first[0] == 200
        ids = json.dumps({"NetworkID": _IDS[0], "EndpointID": _IDS[1]}).encode()
        for _ in range(2):
            assert plugin_call(call, "NetworkDriver.DeleteEndpoint", body=ids) == (200, {})
    finally:
        for _ in range(2):
            plugin_call(
                call,
                "NetworkDriver.DeleteNetwork",
                body=json.dumps({"NetworkID": _IDS[0]}).encode(),
            )
    assert _state() == before


# -- security ---------------------------------------------------------------------------------


def _listening_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes


def test_no_tcp_listener_no_ovsdb_manager_and_foreign_objects_untouched(
    plugin: PluginProcess, dk: DockerEnv
) -> None:
    assert plugin.proc is not None
    fds = Path(f"/proc/{plugin.proc.pid}/fd")
    sockets = {
        os.readlink(fd).removeprefix("socket:[").rstrip("]")
        for fd in fds.iterdir()
        if os.readlink(fd).startswith("socket:")
    }
    assert not sockets & _listening_inodes(), "the plugin listens on TCP"
    assert "ptcp" not in ovs_vsctl("get-manager").stdout
    assert Path(plugin.socket_path).stat().st_uid == 0

    foreign = f"{NAME_PREFIX}-frgn"
    ovs_vsctl(
        "--may-exist", "add-br", foreign, "--", "set", "bridge", foreign, "datapath_type=netdev"
    )
    try:
        _, proc = dk.try_create_network(
            subnet="10.252.1.0/24", options={"ovs.bridge.name": foreign}
        )
        assert proc.returncode != 0 and "not managed by docker-ovs-plugin" in proc.stderr
        assert ovs_bridge_exists(foreign)
        assert doctor().returncode == 0  # not ours: not a leftover either
    finally:
        ovs_vsctl("--if-exists", "del-br", foreign)


# -- doctor -----------------------------------------------------------------------------------


def test_doctor_reports_and_repairs_leftovers(plugin: PluginProcess, dk: DockerEnv) -> None:
    net = dk.create_network(subnet="10.252.2.0/24", gateway="10.252.2.1")
    c = dk.run_container(net)
    plugin.stop(signal.SIGTERM)  # doctor works without the plugin; its reconciler would race us
    stray_bridge = "ovsbr-e2edead0"
    try:
        run(
            [
                "ip",
                "link",
                "add",
                "ovp0e2e0e2e0e2e",
                "type",
                "veth",
                "peer",
                "name",
                "ovc0e2e0e2e0e2e",
            ]
        )
        ovs_vsctl(
            "add-br",
            stray_bridge,
            "--",
            "set",
            "bridge",
            stray_bridge,
            "datapath_type=netdev",
            f"external_ids:owner={OWNER}",
        )
        run(
            [
                "iptables",
                "-A",
                "OVS-PLUGIN-FORWARD",
                "-i",
                "ovsbr-e2edead0",
                "-m",
                "comment",
                "--comment",
                "docker-ovs-plugin:e2edead0e2ed",
                "-j",
                "ACCEPT",
            ]
        )
        run(["ip", "addr", "flush", "dev", net.bridge])  # as after an ovs-vswitchd restart
        report = doctor()
        assert report.returncode == 1, report.stdout + report.stderr
        for words in (
            "veth ovp0e2e0e2e0e2e belongs to no endpoint",
            f"bridge {stray_bridge} is ours but carries no network",
            "iptables rules of unknown network e2edead0e2ed",
            f"gateway port {net.bridge}",
        ):
            assert words in report.stdout, report.stdout
        fixed = doctor("--fix")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert doctor().stdout.strip().endswith("no problems found")
        assert not link_exists("ovp0e2e0e2e0e2e")
        assert not ovs_bridge_exists(stray_bridge)
        assert f"{net.gateway}/24" in link_ipv4_cidrs(net.bridge)
    finally:
        for cleanup in (
            ["ip", "link", "del", "ovp0e2e0e2e0e2e"],
            ["ovs-vsctl", "--if-exists", "del-br", stray_bridge],
            [
                "iptables",
                "-D",
                "OVS-PLUGIN-FORWARD",
                "-i",
                "ovsbr-e2edead0",
                "-m",
                "comment",
                "--comment",
                "docker-ovs-plugin:e2edead0e2ed",
                "-j",
                "ACCEPT",
            ],
        ):
            run(cleanup, check=False)
        plugin.start()
    dk.assert_ping(c, net.gateway)
    dk.remove_all()


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="restarts dockerd with flags")
def test_dockerd_restart_with_live_restore_keeps_containers_and_connectivity(
    plugin: PluginProcess, dk: DockerEnv, dockerd: Dockerd, snapshot_before: HostSnapshot
) -> None:
    dockerd.stop()
    dockerd.start("--live-restore")
    try:
        net = dk.create_network(subnet="10.250.6.0/24", gateway="10.250.6.1")
        a = dk.run_container(net)
        b = dk.run_container(net)
        dk.assert_ping(a, b.ip)
        pid_a = docker("inspect", "-f", "{{.State.Pid}}", a.name).stdout.strip()
        dockerd.stop()
        # dockerd is gone, the containers and their ports are not.
        netns = f"--net=/proc/{pid_a}/ns/net"
        ping = run(
            ["nsenter", netns, "busybox", "ping", "-c", "3", "-W", "2", b.ip],
            check=False,
            timeout=30,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        dockerd.start("--live-restore")
        assert docker("inspect", "-f", "{{.State.Pid}}", a.name).stdout.strip() == pid_a
        dk.assert_ping(a, b.ip)
        c = dk.run_container(net)  # the plugin still serves the restored network
        dk.assert_ping(c, a.ip)
        dk.remove_all()
    finally:
        dk.cleanup()
        dockerd.stop()
        # Live restore leaves dockerd's containerd running; the next daemon starts its own.
        for pid in managed_containerd(dockerd.exec_root):
            os.kill(pid, signal.SIGTERM)
        wait_until(
            lambda: not managed_containerd(dockerd.exec_root),
            timeout=60,
            what="containerd to stop",
        )
        dockerd.start()
    assert_doctor_clean()
    assert_snapshot_restored(snapshot_before, timeout=COLLECT_TIMEOUT)
