"""Multi-host overlay networks: the 3-host cluster of the test bed (testbed/multihost.py), each
host a namespace with its own Open vSwitch (netdev), ovn-controller, dockerd and plugin.

- first reply: `docker run -d` of a container on host 1 until it gets the first ping reply
  from a container on host 2 (the time a user waits before a new container talks across hosts);
- attach: CreateEndpoint + Join of an overlay endpoint (Join waits for ovn-controller to claim
  the port), driven on each host's plugin socket as dockerd drives it, with 10, 100, 1000
  endpoints in the cluster (spread over the hosts);
- throughput: iperf3 TCP from a container on host 1 to one on host 2 (same MTU) vs two
  namespaces wired by hand onto a bare OVN logical switch on the same two hosts.
"""

from __future__ import annotations

import contextlib
import secrets
import statistics
import time
from collections.abc import Iterator
from functools import partial
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from benchmarks.common import ItemResult, Row, log, rotate, summary
from benchmarks.context import Context
from benchmarks.datapath import Pair, drop_docker_nat, iperf
from docker_ovs_plugin import contract
from testbed.commands import wait_until
from testbed.docker import container_ip, container_pid, remove_containers
from testbed.http import PluginClient
from testbed.image import IMAGE_TAG
from testbed.multihost import Cluster, ClusterHost, Layout

DRIVER = "ovsmhb"
LAYOUT = Layout()
SUBNET = IPv4Network("10.240.0.0/16")
POOL_ID = contract.switch_name(str(SUBNET))
MTU = 1400  # the bare side's (WiredPort's) MTU: both sides carry the same packets
THROUGHPUT_TARGET = 0.95
NODNS = "overlay_nodns"  # context side: containers without Docker's DNS nat table
BARE_SWITCH = "bench-bare"
ENDPOINT_OPTIONS: dict[str, list[Any]] = {
    "com.docker.network.endpoint.exposedports": [],
    "com.docker.network.portmap": [],
}


def _plugin_args() -> tuple[str, ...]:
    # No reconciler: the socket-driven endpoints are unknown to Docker, it would collect them.
    return ("--ovn-nb", LAYOUT.nb_remote, "--ovn-nb-insecure-tcp", "--reconcile-interval=0")


def _docker(h: ClusterHost, *args: str, timeout: float = 120) -> str:
    return h.host.docker(*args, timeout=timeout).stdout.strip()


@contextlib.contextmanager
def _overlay(cluster: Cluster) -> Iterator[str]:
    """One overlay network, made on host 1 and seen by every host's Docker."""
    name = f"{LAYOUT.prefix}-bench"
    h1 = cluster.host(1)
    opts = ("-o", "ovs.mode=overlay", "-o", f"ovs.mtu={MTU}", "--subnet", str(SUBNET))
    _docker(h1, "network", "create", "-d", DRIVER, "--ipam-driver", DRIVER, *opts, name)
    try:
        for h in cluster.hosts:
            wait_until(partial(_has_network, h, name), timeout=10, interval=0.05,
                       what=f"{name} on {h.name}")  # fmt: skip
        yield name
    finally:
        h1.host.docker("network", "rm", name, check=False, timeout=120)


def _has_network(h: ClusterHost, name: str) -> bool:
    return name in _docker(h, "network", "ls", "--format", "{{.Name}}").split()


def _pinged(h: ClusterHost, container: str, target: str) -> bool:
    argv = ("exec", container, "ping", "-c", "1", "-W", "1", target)
    return h.host.docker(*argv, check=False, timeout=30).returncode == 0


def _first_replies(cluster: Cluster, net: str, rounds: int) -> dict[str, list[float]]:
    h1, h2 = cluster.host(1), cluster.host(2)
    server = f"{LAYOUT.prefix}-bench-srv"
    _docker(h2, "run", "-d", "--name", server, "--net", net, IMAGE_TAG, "sleep", "3600")
    target = container_ip(h2.host, server)
    out: dict[str, list[float]] = {"first_reply_s": [], "docker_run_s": []}
    try:
        for i in range(rounds + 1):  # the first one warms up (image, ARP of the tunnel)
            name = f"{LAYOUT.prefix}-bench-c{i}"
            t0 = time.perf_counter()
            _docker(h1, "run", "-d", "--name", name, "--net", net, IMAGE_TAG, "sleep", "3600")
            t1 = time.perf_counter()
            wait_until(partial(_pinged, h1, name, target), timeout=30, interval=0.02,
                       what=f"{name} -> {target}")  # fmt: skip
            t2 = time.perf_counter()
            remove_containers(h1.host, [name])
            if i:
                out["first_reply_s"].append(t2 - t0)
                out["docker_run_s"].append(t1 - t0)
    finally:
        remove_containers(h2.host, [server])
    return out


class _Endpoints:
    """Overlay endpoints driven on the hosts' plugin sockets, as dockerd drives them."""

    def __init__(self, cluster: Cluster, net: str) -> None:
        self.hosts = cluster.hosts
        self.network_ids = {
            h.n: _docker(h, "network", "inspect", "-f", "{{.Id}}", net) for h in self.hosts
        }
        self.clients = {h.n: PluginClient(h.plugin.socket_path, timeout=120) for h in self.hosts}
        self.present: list[tuple[int, str, str]] = []  # (host, endpoint id, address CIDR)

    def attach(self, n: int) -> tuple[str, str, float, float]:
        """RequestAddress, then CreateEndpoint + Join (timed); returns their seconds."""
        c, network_id = self.clients[n], self.network_ids[n]
        address = c.ok("IpamDriver.RequestAddress", {"PoolID": POOL_ID, "Options": {}})["Address"]
        endpoint_id = secrets.token_hex(32)
        ids = {"NetworkID": network_id, "EndpointID": endpoint_id}
        t0 = time.perf_counter()
        c.ok("NetworkDriver.CreateEndpoint", {**ids, "Options": ENDPOINT_OPTIONS,
             "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""}})  # fmt: skip
        t1 = time.perf_counter()
        c.ok("NetworkDriver.Join", {**ids, "Options": ENDPOINT_OPTIONS,
             "SandboxKey": f"/var/run/docker/netns/{secrets.token_hex(6)}"})  # fmt: skip
        return endpoint_id, address, t1 - t0, time.perf_counter() - t1

    def detach(self, n: int, endpoint_id: str, address: str) -> None:
        c, ids = self.clients[n], {"NetworkID": self.network_ids[n], "EndpointID": endpoint_id}
        c.ok("NetworkDriver.Leave", ids)
        c.ok("NetworkDriver.DeleteEndpoint", ids)
        c.ok(
            "IpamDriver.ReleaseAddress",
            {"PoolID": POOL_ID, "Address": address.split("/", maxsplit=1)[0]},
        )

    def grow_to(self, total: int) -> None:
        while len(self.present) < total:
            n = self.hosts[len(self.present) % len(self.hosts)].n
            endpoint_id, address, _, _ = self.attach(n)
            self.present.append((n, endpoint_id, address))
            if len(self.present) % 100 == 0:
                log(f"multihost: {len(self.present)} overlay endpoints in the cluster")

    def close(self) -> None:
        for n, endpoint_id, address in reversed(self.present):
            with contextlib.suppress(Exception):
                self.detach(n, endpoint_id, address)
        self.present.clear()
        for c in self.clients.values():
            c.close()


def _rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def _lines(text: str) -> int:
    return len(text.split())


def footprint(cluster: Cluster) -> dict[str, Any]:
    """What the OVN databases and one host carry: rows, flows and memory (host 1)."""
    h1 = cluster.host(1)
    uuid = ("--bare", "--columns=_uuid", "list")
    flows = h1.host.run(["ovs-ofctl", "dump-flows", "br-int"], check=False).stdout
    return {
        "nb_logical_switch_ports": _lines(cluster.nbctl(*uuid, "Logical_Switch_Port").stdout),
        "sb_port_bindings": _lines(cluster.sbctl(*uuid, "Port_Binding").stdout),
        "sb_logical_flows": _lines(cluster.sbctl(*uuid, "Logical_Flow", timeout=60).stdout),
        "h1_br_int_openflow_flows": max(0, len(flows.splitlines()) - 1),
        "h1_rss_mib": {
            name: _rss_mib(h1.pid_of(name))
            for name in ("nb", "sb", "ovn-northd", "ovn-controller", "ovs-vswitchd")
        }
        | {"plugin": _rss_mib(h1.plugin.pid)},
    }


def _attach_latency(
    cluster: Cluster, net: str, levels: tuple[int, ...], samples: int
) -> tuple[dict[int, dict[str, list[float]]], dict[int, dict[str, Any]]]:
    eps = _Endpoints(cluster, net)
    out: dict[int, dict[str, list[float]]] = {}
    sizes: dict[int, dict[str, Any]] = {}
    try:
        for level in levels:
            started = time.perf_counter()
            eps.grow_to(level)
            log(f"multihost: population {level} in {time.perf_counter() - started:.0f} s")
            got: dict[str, list[float]] = {"attach_ms": [], "create_ms": [], "join_ms": []}
            for i in range(samples):
                n = eps.hosts[i % len(eps.hosts)].n
                endpoint_id, address, create_s, join_s = eps.attach(n)
                eps.detach(n, endpoint_id, address)
                got["create_ms"].append(create_s * 1000)
                got["join_ms"].append(join_s * 1000)
                got["attach_ms"].append((create_s + join_s) * 1000)
            out[level] = got
            sizes[level] = footprint(cluster)
            med = statistics.median(got["attach_ms"])
            log(f"multihost: {level} endpoints: CreateEndpoint+Join median {med:.0f} ms")
    finally:
        eps.close()
    return out, sizes


@contextlib.contextmanager
def _container_pair(cluster: Cluster, net: str, kind: str = "") -> Iterator[Pair]:
    names = {1: f"{LAYOUT.prefix}-bench-cli{kind}", 2: f"{LAYOUT.prefix}-bench-iperf{kind}"}
    try:
        for n, name in names.items():
            _docker(cluster.host(n), "run", "-d", "--name", name, "--net", net, IMAGE_TAG,
                    "sleep", "3600")  # fmt: skip
        pid = {n: container_pid(cluster.host(n).host, name) for n, name in names.items()}
        yield Pair(f"/proc/{pid[2]}/ns/net", f"/proc/{pid[1]}/ns/net",
                   container_ip(cluster.host(2).host, names[2]))  # fmt: skip
    finally:
        for n, name in names.items():
            remove_containers(cluster.host(n).host, [name])


@contextlib.contextmanager
def _bare_pair(cluster: Cluster) -> Iterator[Pair]:
    cluster.nbctl("--may-exist", "ls-add", BARE_SWITCH)
    try:
        with (
            cluster.wired_port(cluster.host(1), BARE_SWITCH, "bcli", "0a:00:00:99:00:01",
                               "10.99.0.1/24") as cli,
            cluster.wired_port(cluster.host(2), BARE_SWITCH, "bsrv", "0a:00:00:99:00:02",
                               "10.99.0.2/24") as srv,
        ):  # fmt: skip
            for p in (cli, srv):
                wait_until(p.installed, timeout=20, interval=0.05, what=f"{p.port} bound")
            cli.first_reply(srv.ip)
            yield Pair(f"/run/netns/{srv.netns}", f"/run/netns/{cli.netns}", srv.ip)
    finally:
        cluster.nbctl("--if-exists", "ls-del", BARE_SWITCH, check=False)


def _throughput(cluster: Cluster, net: str, seconds: int, rounds: int) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {"overlay": [], "bare": [], NODNS: []}
    with (
        _container_pair(cluster, net) as overlay,
        _bare_pair(cluster) as bare,
        _container_pair(cluster, net, "-nodns") as nodns,
    ):
        # Context: containers without the nat table of Docker's embedded DNS, which makes
        # the kernel track their connections (the bare namespaces have none).
        drop_docker_nat(nodns)
        pairs = {"overlay": overlay, "bare": bare, NODNS: nodns}
        for pair in pairs.values():  # warm-up: ARP, flow caches
            iperf(pair, 2)
        for r in range(rounds):
            for side in rotate(list(pairs), r):
                gbit = iperf(pairs[side], seconds)["gbit_s"]
                runs[side].append(gbit)
                log(f"multihost iperf3 {side} round {r + 1}: {gbit:.2f} Gbit/s")
    return runs


def run_multihost(ctx: Context) -> ItemResult:
    s = ctx.settings
    res = ItemResult("multihost")
    rounds = 5 if s.quick else 20
    levels = (10, 100) if s.quick else (10, 100, 1000)
    samples = 9 if s.quick else 30
    with Cluster(driver=DRIVER, plugin_args=_plugin_args()) as cluster:
        log(f"multihost: 3-host cluster up in {cluster.up_seconds:.1f} s")
        with _overlay(cluster) as net:
            replies = _first_replies(cluster, net, rounds)
            attach, sizes = _attach_latency(cluster, net, levels, samples)
            tput = _throughput(cluster, net, s.iperf_seconds, max(s.iperf_rounds, 3))
    first = summary(replies["first_reply_s"])
    res.data = {
        "first_reply_s": replies,
        "attach_ms": {str(k): v for k, v in attach.items()},
        "throughput_gbit_s": tput,
        "footprint_by_endpoints": {str(k): v for k, v in sizes.items()},
        "stats": {
            "first_reply_s": first,
            "docker_run_s": summary(replies["docker_run_s"]),
            "attach_ms": {str(k): summary(v["attach_ms"]) for k, v in attach.items()},
        },
    }
    res.rows.append(Row(
        "multihost", "docker run on h1 -> first reply from h2, median", first["median"], "s",
        "", None, f"p90 {first['p90']:.2f} s; of which docker run -d median "
        f"{statistics.median(replies['docker_run_s']):.2f} s; n={rounds}"))  # fmt: skip
    for level, got in attach.items():
        st = summary(got["attach_ms"])
        res.rows.append(Row(
            "multihost", f"overlay CreateEndpoint+Join, {level} endpoints in the cluster",
            st["median"], "ms", "", None,
            f"p90 {st['p90']:.0f} ms, p99 {st['p99']:.0f} ms; Join median "
            f"{statistics.median(got['join_ms']):.0f} ms (waits for ovn-installed); "
            f"n={len(got['attach_ms'])}"))  # fmt: skip
    for level, size in sizes.items():
        rss = ", ".join(f"{k} {v:.0f}" for k, v in size["h1_rss_mib"].items() if v is not None)
        res.rows.append(Row(
            "multihost", f"SB logical flows, {level} endpoints", size["sb_logical_flows"], "",
            "", None, f"{size['nb_logical_switch_ports']} NB ports; host 1: "
            f"{size['h1_br_int_openflow_flows']} br-int flows, RSS MiB {rss}"))  # fmt: skip
    med = {side: statistics.median(v) for side, v in tput.items()}
    ratio = med["overlay"] / med["bare"]
    res.data["ratio_overlay_bare"] = ratio
    detail = ", ".join(
        f"{side} {med[side]:.2f} (" + "/".join(f"{v:.2f}" for v in tput[side]) + ")"
        for side in tput
    )
    res.rows.append(Row(
        "multihost", "iperf3 TCP h1 -> h2: overlay containers / bare OVN switch", ratio, "x",
        f">= {THROUGHPUT_TARGET:.2f}", ratio >= THROUGHPUT_TARGET,
        f"Gbit/s median (runs): {detail}; MTU {MTU} on both"))  # fmt: skip
    res.data["ratio_nodns_bare"] = med[NODNS] / med["bare"]
    res.rows.append(Row(
        "multihost", "overlay containers without Docker's DNS nat table / bare OVN switch",
        med[NODNS] / med["bare"], "x", "", None,
        "context: the gap to the row above is conntrack in the container namespaces "
        "(Docker's, not the plugin's)"))  # fmt: skip
    return res
