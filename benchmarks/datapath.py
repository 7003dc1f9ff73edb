"""Data path: iperf3 TCP between two containers on an ovs network, between two namespaces on a
bare OVS bridge (NORMAL action, same datapath type), and on a Docker bridge network.

iperf3 runs from the host inside each endpoint's network namespace (`nsenter --net=`), so the
same binary and the same CPU budget serve all three sides.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from benchmarks.common import (
    DRIVER,
    PREFIX,
    SUITE,
    ItemResult,
    Row,
    log,
    ovs_vsctl,
    rotate,
    summary,
)
from benchmarks.context import Context
from benchmarks.dockerenv import (
    container_ip,
    container_pid,
    network,
    remove_containers,
    run_detached,
)
from testbed.commands import CommandError, run

SIDES = ("ovs", "bare", "bridge")
#: Context side: an ovs network without the port security flows (plain NORMAL, like the bare
#: bridge), to tell the cost of those flows from the rest.
NOSEC = "ovs_nosec"
NOSEC_OPTION = "ovs.port_security=false"
#: Context side: an ovs network whose two container namespaces lost the nat table Docker puts
#: there for its embedded DNS (127.0.0.11). That table makes the kernel track every connection
#: of the container (conntrack), which the bare namespaces do not pay.
NODNS = "ovs_nodns"
TARGET = 0.95
PORT = 5201
BARE_BRIDGE = f"{PREFIX}-bare"
BARE_SUBNET = "10.253.0"  # only ever inside the two namespaces this module creates
MTU = 1500


@dataclass(frozen=True)
class Pair:
    """Where the iperf3 server and client run (netns paths) and the server's address."""

    server_ns: str
    client_ns: str
    server_ip: str


def _set_tx_checksum_off(ifname: str) -> None:
    from pyroute2.ethtool.ioctl import IoctlEthtool  # noqa: PLC0415 (the plugin's dependency)

    eth = IoctlEthtool(ifname)
    try:
        eth.set_offload_flag("tx-checksumming", 0)
    finally:
        eth.close()


def _ns_names() -> list[str]:
    return [f"{PREFIX}-a", f"{PREFIX}-b"]


def remove_bare() -> None:
    ovs_vsctl("--if-exists", "del-br", BARE_BRIDGE)
    for i, ns in enumerate(_ns_names()):
        run(["ip", "link", "del", f"{PREFIX}-h{'ab'[i]}"], check=False)
        run(["ip", "netns", "del", ns], check=False)


@contextlib.contextmanager
def bare_ovs(datapath_type: str) -> Iterator[Pair]:
    """A bare OVS bridge (default NORMAL flow) with two veth ports into two namespaces."""
    remove_bare()
    try:
        ovs_vsctl(
            "add-br",
            BARE_BRIDGE,
            "--",
            "set",
            "Bridge",
            BARE_BRIDGE,
            f"datapath_type={datapath_type}",
        )
        for i, ns in enumerate(_ns_names()):
            host, peer = f"{PREFIX}-h{'ab'[i]}", f"{PREFIX}-n{'ab'[i]}"
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", host, "mtu", str(MTU), "type", "veth", "peer", "name", peer])
            run(["ip", "link", "set", peer, "mtu", str(MTU)])
            if datapath_type == "netdev":
                # As the plugin does: the userspace datapath does not complete partial checksums.
                _set_tx_checksum_off(peer)
            run(["ip", "link", "set", peer, "netns", ns])
            ip = ["ip", "-n", ns]
            run([*ip, "addr", "add", f"{BARE_SUBNET}.{i + 1}/24", "dev", peer])
            run([*ip, "link", "set", peer, "up"])
            run([*ip, "link", "set", "lo", "up"])
            run(["ip", "link", "set", host, "up"])
            ovs_vsctl("add-port", BARE_BRIDGE, host)
        yield Pair(
            f"/run/netns/{_ns_names()[0]}", f"/run/netns/{_ns_names()[1]}", BARE_SUBNET + ".1"
        )
    finally:
        remove_bare()


@contextlib.contextmanager
def container_pair(driver: str, kind: str, *options: str) -> Iterator[Pair]:
    with network(driver, kind, *options) as net:
        names = [SUITE.unique_name(f"{kind}-srv"), SUITE.unique_name(f"{kind}-cli")]
        try:
            for name in names:
                run_detached(name, net.name, "sleep", "3600")
            pids = [container_pid(n) for n in names]
            yield Pair(f"/proc/{pids[0]}/ns/net", f"/proc/{pids[1]}/ns/net", container_ip(names[0]))
        finally:
            remove_containers(names)


def drop_docker_nat(pair: Pair) -> None:
    """Remove Docker's embedded-DNS nat table from both namespaces of the pair."""
    for ns in (pair.server_ns, pair.client_ns):
        run(["nsenter", f"--net={ns}", "nft", "delete", "table", "ip", "nat"])


def iperf(pair: Pair, seconds: int) -> dict[str, float]:
    server = subprocess.Popen(
        [
            "nsenter",
            f"--net={pair.server_ns}",
            "iperf3",
            "-s",
            "-1",
            "-B",
            pair.server_ip,
            "-p",
            str(PORT),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        argv = ["nsenter", f"--net={pair.client_ns}", "iperf3", "-c", pair.server_ip]
        argv += ["-p", str(PORT), "-t", str(seconds), "-J"]
        if seconds >= 3:
            argv += ["-O", "1"]  # leave out the first second (slow start)
        for attempt in range(50):  # the server needs a moment to listen
            proc = run(argv, check=False, timeout=seconds + 60)
            data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
            if proc.returncode == 0 and "sum_received" in data.get("end", {}):
                break
            if attempt == 49:
                err = data.get("error") or proc.stderr
                raise CommandError(argv, proc.returncode, proc.stdout[-2000:], str(err))
            time.sleep(0.1)
        end = data["end"]
        return {
            "gbit_s": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits", 0),
            "cpu_sender_pct": end["cpu_utilization_percent"]["host_total"],
            "cpu_receiver_pct": end["cpu_utilization_percent"]["remote_total"],
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.kill()
        server.wait(timeout=10)


def _datapath_type() -> str:
    from docker_ovs_plugin.adapters import datapath  # noqa: PLC0415

    return datapath.detect()


def run_datapath(ctx: Context) -> ItemResult:
    s = ctx.settings
    res = ItemResult("datapath")
    dp = _datapath_type()
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with contextlib.ExitStack() as stack:
        pairs = {
            "ovs": stack.enter_context(container_pair(DRIVER, "dpovs")),
            "bare": stack.enter_context(bare_ovs(dp)),
            "bridge": stack.enter_context(container_pair("bridge", "dpbr")),
        }
        try:
            pairs[NOSEC] = stack.enter_context(container_pair(DRIVER, "dpnosec", NOSEC_OPTION))
            runs[NOSEC] = []
        except CommandError as e:  # a plugin version without the option
            log(f"no {NOSEC} side: {str(e)[:200]}")
        try:
            pairs[NODNS] = stack.enter_context(container_pair(DRIVER, "dpnodns"))
            drop_docker_nat(pairs[NODNS])
            runs[NODNS] = []
        except (CommandError, FileNotFoundError) as e:  # no nft, or iptables-legacy rules
            pairs.pop(NODNS, None)
            log(f"no {NODNS} side: {str(e)[:200]}")
        sides = list(pairs)
        for side in sides:  # warm-up (ARP, MAC learning, flow caches), not counted
            iperf(pairs[side], 2)
        for r in range(s.iperf_rounds):
            for side in rotate(sides, r):
                out = iperf(pairs[side], s.iperf_seconds)
                runs[side].append(out)
                log(f"iperf3 {side} round {r + 1}: {out['gbit_s']:.2f} Gbit/s")
    gbit = {side: [x["gbit_s"] for x in runs[side]] for side in runs}
    stats = {side: summary(v) for side, v in gbit.items()}
    med = {side: statistics.median(v) for side, v in gbit.items()}
    ratio = med["ovs"] / med["bare"]
    res.data = {
        "datapath": dp,
        "seconds_per_run": s.iperf_seconds,
        "rounds": s.iperf_rounds,
        "runs": runs,
        "stats_gbit_s": stats,
        "ratio_ovs_bare": ratio,
        "ratio_ovs_bridge": med["ovs"] / med["bridge"],
    }

    def fmt(side: str) -> str:
        return f"{side} {med[side]:.2f} (" + "/".join(f"{v:.2f}" for v in gbit[side]) + ")"

    res.rows.append(
        Row(
            "datapath",
            f"iperf3 TCP ovs network / bare OVS ({dp})",
            ratio,
            "x",
            f">= {TARGET:.2f}",
            ratio >= TARGET,
            f"Gbit/s median (runs): {fmt('ovs')}, {fmt('bare')}, {fmt('bridge')}",
        )
    )
    for side in runs:
        res.rows.append(Row("datapath", f"{side} throughput", med[side], "Gbit/s", "", None, ""))
    if NOSEC in runs:
        res.data["ratio_ovs_nosec_bare"] = med[NOSEC] / med["bare"]
        res.rows.append(
            Row(
                "datapath",
                f"ovs network without port security ({NOSEC_OPTION}) / bare OVS",
                med[NOSEC] / med["bare"],
                "x",
                "",
                None,
                f"context: {fmt(NOSEC)}; the gap to the first row is the port security flows",
            )
        )
    if NODNS in runs:
        res.data["ratio_ovs_nodns_bare"] = med[NODNS] / med["bare"]
        res.rows.append(
            Row(
                "datapath",
                "ovs network without Docker's DNS nat table in the containers / bare OVS",
                med[NODNS] / med["bare"],
                "x",
                "",
                None,
                f"context: {fmt(NODNS)}; the gap to the first row is conntrack in the "
                "container namespaces (Docker's, not the plugin's)",
            )
        )
    res.rows.append(
        Row(
            "datapath",
            "ovs network / Docker bridge (context)",
            med["ovs"] / med["bridge"],
            "x",
            "",
            None,
            "kernel bridge vs userspace datapath" if dp == "netdev" else "",
        )
    )
    return res
