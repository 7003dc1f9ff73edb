"""Driver latency, restart and memory: the plugin socket driven directly, as dockerd drives it.

One network (a /16, so thousands of endpoints fit) is created with CreateNetwork; a population
of endpoints (CreateEndpoint + Join, each a real veth pair and OVS port) is grown to 10, 100,
1000; at each level extra create/join/leave/delete cycles are timed.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from benchmarks.common import (
    ID_PREFIX,
    ItemResult,
    Row,
    log,
    ovs_vsctl,
    summary,
)
from benchmarks.context import Context
from benchmarks.plugin import BenchPlugin
from benchmarks.profiling import Recorder
from benchmarks.recovery import OVS
from testbed.commands import run, wait_until
from testbed.http import PluginClient

POOL = ipaddress.ip_network("10.252.0.0/16")
GATEWAY = f"{POOL.network_address + 1}/{POOL.prefixlen}"
#: Addresses of the timed create/delete cycles (the population counts up from .0.2).
CYCLE_BASE = int(POOL.network_address) + 250 * 256
STATE_FILE = Path("/run/docker-ovs-plugin-bench/networks.json")
OPTIONS: dict[str, list[Any]] = {
    "com.docker.network.endpoint.exposedports": [],
    "com.docker.network.portmap": [],
}
P99_TARGET_MS = 20.0
SCALING_TARGET = 1.2
RESTART_TARGET_S = 1.0
RSS_TARGET_MB = 100.0
RESTART_TIMEOUT_S = 300.0
#: A restart slower than this is not repeated (one such figure says enough).
RESTART_REPEAT_LIMIT_S = 10.0


def new_id() -> str:
    return ID_PREFIX + secrets.token_hex(30)


def _remember(network_id: str, present: bool) -> None:
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    try:
        ids = set(json.loads(STATE_FILE.read_text()))
    except (OSError, ValueError):
        ids = set()
    if present:
        ids.add(network_id)
    else:
        ids.discard(network_id)
    STATE_FILE.write_text(json.dumps(sorted(ids)))


def sweep(plugin: BenchPlugin) -> None:
    """Delete the socket-driven networks an interrupted earlier run left (plugin running)."""
    try:
        ids = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        ids = []
    client = PluginClient(plugin.socket_path, timeout=600)
    try:
        for network_id in ids:
            log(f"deleting network {network_id[:12]} left by an earlier run")
            client.call("NetworkDriver.DeleteNetwork", {"NetworkID": network_id})
            _remember(network_id, present=False)
    finally:
        client.close()
    remove_by_hand()


def remove_by_hand() -> None:
    """What DeleteNetwork would remove, for a network the plugin no longer knows (e.g. one
    an older plugin version created): the bridge, the veths and the tagged iptables rules."""
    for br in ovs_vsctl("list-br").stdout.split():
        if br.startswith(f"ovsbr-{ID_PREFIX}"):
            log(f"deleting leftover bridge {br}")
            ovs_vsctl("--if-exists", "del-br", br)
    with contextlib.suppress(Exception):
        _delete_links(f"ovp{ID_PREFIX}")
    for table in ("filter", "nat"):
        rules = run(["iptables", "-w", "10", "-t", table, "-S"], check=False).stdout
        for line in rules.splitlines():
            if f"docker-ovs-plugin:{ID_PREFIX}" in line and line.startswith("-A "):
                argv = shlex.split(line)
                run(["iptables", "-w", "10", "-t", table, "-D", *argv[1:]], check=False)


def _delete_links(prefix: str) -> None:
    from pyroute2 import IPRoute  # noqa: PLC0415 (only for the rare leftover sweep)

    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and name.startswith(prefix):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=link["index"])


class Population:
    """A plugin network and the endpoints present on it."""

    def __init__(self, plugin: BenchPlugin) -> None:
        self.plugin = plugin
        self.network_id = new_id()
        self.endpoints: list[tuple[str, str]] = []  # (endpoint id, address CIDR)
        self.client = PluginClient(plugin.socket_path)
        self.create_ms: list[tuple[int, float]] = []  # (endpoints present before, ms)
        self.delete_ms: list[tuple[int, float]] = []
        self.created = False

    def reconnect(self) -> None:
        self.client.close()
        self.client = PluginClient(self.plugin.socket_path)

    def _address(self, n: int) -> str:
        return f"{ipaddress.ip_address(int(POOL.network_address) + 2 + n)}/{POOL.prefixlen}"

    def create_network(self) -> None:
        _remember(self.network_id, present=True)
        self.client.ok(
            "NetworkDriver.CreateNetwork",
            {
                "NetworkID": self.network_id,
                "Options": {
                    "com.docker.network.enable_ipv6": False,
                    "com.docker.network.generic": {},
                },
                "IPv4Data": [
                    {"AddressSpace": "LocalDefault", "Pool": str(POOL), "Gateway": GATEWAY}
                ],
                "IPv6Data": [],
            },
        )
        self.created = True

    # -- the four calls, bodies as dockerd 20.10 sends them -------------------------------------

    def create_endpoint(self, endpoint_id: str, address: str) -> None:
        self.client.ok(
            "NetworkDriver.CreateEndpoint",
            {
                "NetworkID": self.network_id,
                "EndpointID": endpoint_id,
                "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""},
                "Options": OPTIONS,
            },
        )

    def join(self, endpoint_id: str) -> Any:
        return self.client.ok(
            "NetworkDriver.Join",
            {
                "NetworkID": self.network_id,
                "EndpointID": endpoint_id,
                "SandboxKey": f"/var/run/docker/netns/{secrets.token_hex(6)}",
                "Options": OPTIONS,
            },
        )

    def leave(self, endpoint_id: str) -> None:
        self.client.ok(
            "NetworkDriver.Leave", {"NetworkID": self.network_id, "EndpointID": endpoint_id}
        )

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.client.ok(
            "NetworkDriver.DeleteEndpoint",
            {"NetworkID": self.network_id, "EndpointID": endpoint_id},
        )

    def info(self, endpoint_id: str) -> Any:
        return self.client.call(
            "NetworkDriver.EndpointOperInfo",
            {"NetworkID": self.network_id, "EndpointID": endpoint_id},
        )

    # -- population ------------------------------------------------------------------------

    def _retry(self, action: Callable[[], object]) -> None:
        """Untimed set-up calls survive someone else restarting ovs-vswitchd (it happens on
        a shared development host): wait until it answers and try again, a few times."""
        for attempt in range(4):
            try:
                action()
                return
            except RuntimeError as e:
                if attempt == 3:
                    raise
                log(f"retrying after: {str(e)[:160]}")
                wait_until(OVS.vswitchd_answers, timeout=60, interval=0.2, what="ovs-vswitchd")
                time.sleep(2.0)

    def grow_to(self, n: int) -> float:
        """Create (and join) endpoints until n are present; returns seconds taken."""
        started = time.perf_counter()
        while len(self.endpoints) < n:
            endpoint_id, address = new_id(), self._address(len(self.endpoints))
            t0 = time.perf_counter()
            self._retry(functools.partial(self.create_endpoint, endpoint_id, address))
            self._retry(functools.partial(self.join, endpoint_id))
            self.create_ms.append((len(self.endpoints), (time.perf_counter() - t0) * 1000))
            self.endpoints.append((endpoint_id, address))
            if len(self.endpoints) % 250 == 0:
                recent = [ms for _, ms in self.create_ms[-250:]]
                log(
                    f"population {len(self.endpoints)}: create+join median "
                    f"{statistics.median(recent):.1f} ms over the last 250"
                )
        return time.perf_counter() - started

    def shrink_all(self) -> float:
        started = time.perf_counter()
        while self.endpoints:
            endpoint_id, _ = self.endpoints[-1]
            t0 = time.perf_counter()
            self._retry(functools.partial(self.leave, endpoint_id))
            self._retry(functools.partial(self.delete_endpoint, endpoint_id))
            self.delete_ms.append((len(self.endpoints), (time.perf_counter() - t0) * 1000))
            self.endpoints.pop()
            if len(self.endpoints) % 250 == 0 and self.endpoints:
                log(f"population down to {len(self.endpoints)}")
        return time.perf_counter() - started

    def close(self) -> None:
        """Remove everything, also after an error: DeleteNetwork removes leftover endpoints."""
        if not self.created:
            return
        try:
            if not self.plugin.running:
                self.plugin.start()
            self.client.close()
            self.client = PluginClient(self.plugin.socket_path, timeout=600)
            self.client.call("NetworkDriver.DeleteNetwork", {"NetworkID": self.network_id})
            remove_by_hand()  # only finds something when the plugin had lost the network
            _remember(self.network_id, present=False)
        except Exception as e:  # leave it to the next run's sweep, loudly
            log(f"could not delete network {self.network_id[:12]}: {e}; the next run sweeps it")
        finally:
            self.client.close()
            self.created = False


def population(ctx: Context) -> Population:
    pop = ctx.shared.get("population")
    if pop is None:
        pop = Population(ctx.plugin)
        pop.create_network()
        ctx.shared["population"] = pop
        ctx.shared["rss_by_level"] = {0: ctx.plugin.rss_kib()}
    return cast(Population, pop)


def close_population(ctx: Context) -> dict[str, Any]:
    """Delete every endpoint (timed) and the network; returns teardown figures."""
    pop: Population | None = ctx.shared.pop("population", None)
    if pop is None:
        return {}
    out: dict[str, Any] = {}
    try:
        if pop.plugin.running and pop.endpoints:
            n = len(pop.endpoints)
            log(f"deleting the {n} population endpoints")
            pop.reconnect()
            seconds = pop.shrink_all()
            out = {
                "endpoints": n,
                "seconds": seconds,
                "leave_delete_ms": summary([ms for _, ms in pop.delete_ms]),
            }
    except Exception as e:  # a failed teardown is reported, and DeleteNetwork still runs
        log(f"population teardown failed: {e}")
        out = {"error": f"{type(e).__name__}: {e}"}
    finally:
        pop.close()
    return out


# -- driver latency ------------------------------------------------------------------------------


def _cycles(pop: Population, samples: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        k: [] for k in ("attach", "detach", "CreateEndpoint", "Join", "Leave", "DeleteEndpoint")
    }
    for i in range(samples):
        endpoint_id = new_id()
        address = f"{ipaddress.ip_address(CYCLE_BASE + i % 1000)}/{POOL.prefixlen}"
        t0 = time.perf_counter()
        pop.create_endpoint(endpoint_id, address)
        t1 = time.perf_counter()
        pop.join(endpoint_id)
        t2 = time.perf_counter()
        pop.leave(endpoint_id)
        t3 = time.perf_counter()
        pop.delete_endpoint(endpoint_id)
        t4 = time.perf_counter()
        for key, seconds in (
            ("CreateEndpoint", t1 - t0),
            ("Join", t2 - t1),
            ("Leave", t3 - t2),
            ("DeleteEndpoint", t4 - t3),
            ("attach", t2 - t0),
            ("detach", t4 - t2),
        ):
            out[key].append(seconds * 1000)
    return out


def _measure_levels(ctx: Context, pop: Population, levels: dict[int, Any]) -> None:
    for level in ctx.settings.driver_levels:
        grow_s = pop.grow_to(level)
        ctx.shared["rss_by_level"][level] = ctx.plugin.rss_kib()
        log(f"driver latency at {level} endpoints ({ctx.settings.driver_samples} cycles)")
        raw = _cycles(pop, ctx.settings.driver_samples)
        levels[level] = {
            "grow_seconds": grow_s,
            "stats_ms": {k: summary(v) for k, v in raw.items()},
            "samples_ms": {k: raw[k] for k in ("attach", "detach")},
        }
        # Where the time goes at this population: extra cycles under py-spy (not timed above).
        spy_cycles = max(10, ctx.settings.driver_samples // 5)
        raw_file = ctx.out_dir / f"profile-driver-{level}.raw.txt"
        with Recorder(ctx.plugin.pid, raw_file) as rec:
            _cycles(pop, spy_cycles)
        spy = rec.analysis()
        if spy is not None:
            per = {
                k: round(v / spy_cycles, 2)
                for k, v in spy["request_thread_ms_by_adapter_call"].items()
            }
            levels[level]["py_spy_ms_per_cycle"] = per
            levels[level]["py_spy"] = spy


def run_driver(ctx: Context) -> ItemResult:
    res = ItemResult("driver")
    pop = population(ctx)
    levels: dict[int, Any] = {}
    try:
        _measure_levels(ctx, pop, levels)
    except Exception as e:  # keep the levels measured so far, and say what broke
        log(f"driver latency stopped: {e}")
        res.error = f"{type(e).__name__}: {e} (levels measured: {sorted(levels)})"
        if not levels:
            raise
    creates = pop.create_ms
    res.data = {
        "levels": levels,
        "population_create_join_ms": {
            "first_100": summary([ms for n, ms in creates if n < 100]),
            "last_100": summary([ms for n, ms in creates[-100:]]),
            "by_population": [[n, round(ms, 2)] for n, ms in creates],
        },
    }
    lo, hi = min(levels), max(levels)
    for op, label in (("attach", "CreateEndpoint+Join"), ("detach", "Leave+DeleteEndpoint")):
        for level, data in levels.items():
            st = data["stats_ms"][op]
            res.rows.append(
                Row(
                    "driver",
                    f"{label} p99 @{level}",
                    st["p99"],
                    "ms",
                    f"< {P99_TARGET_MS:.0f}",
                    st["p99"] < P99_TARGET_MS,
                    f"p50 {st['p50']:.1f}, p90 {st['p90']:.1f}, max {st['max']:.1f} ms,"
                    f" n={st['n']}",
                )
            )
        if hi == lo:
            continue
        p50_lo = levels[lo]["stats_ms"][op]["p50"]
        p50_hi = levels[hi]["stats_ms"][op]["p50"]
        scaling = p50_hi / p50_lo
        res.rows.append(
            Row(
                "driver",
                f"{label} p50 @{hi} / p50 @{lo}",
                scaling,
                "x",
                f"<= {SCALING_TARGET}" + ("" if hi == 1000 else " (target is @1000)"),
                scaling <= SCALING_TARGET,
                f"{p50_hi:.1f} ms vs {p50_lo:.1f} ms",
            )
        )
    return res


# -- memory ---------------------------------------------------------------------------------


def run_memory(ctx: Context) -> ItemResult:
    res = ItemResult("memory")
    pop = population(ctx)
    top = max(ctx.settings.driver_levels)
    pop.grow_to(top)
    rss = ctx.plugin.rss_kib()
    ctx.shared["rss_by_level"][top] = rss
    mb = rss["VmRSS"] / 1024
    res.data = {"rss_kib_by_level": ctx.shared["rss_by_level"], "endpoints": top}
    by_level = ", ".join(
        f"{n}: {v['VmRSS'] / 1024:.1f}" for n, v in sorted(ctx.shared["rss_by_level"].items())
    )
    res.rows.append(
        Row(
            "memory",
            f"plugin RSS @{top} endpoints",
            mb,
            "MB",
            f"< {RSS_TARGET_MB:.0f}" + ("" if top == 1000 else " (target is @1000)"),
            mb < RSS_TARGET_MB,
            f"VmRSS by endpoints present (MB) {by_level}; VmHWM {rss['VmHWM'] / 1024:.1f} MB",
        )
    )
    return res


# -- restart ---------------------------------------------------------------------------------


def _import_floor(plugin: BenchPlugin) -> float:
    """Seconds for a bare interpreter to import the plugin's modules (context for restart)."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import docker_ovs_plugin.bootstrap, docker_ovs_plugin.cli"],
        check=True,
        timeout=60,
        env=plugin.env(),
    )
    return time.perf_counter() - t0


def _log_offsets(plugin: BenchPlugin, mark: int, exec_wall: float) -> dict[str, float]:
    """Seconds from exec to the startup lines the plugin logs (asctime has ms resolution)."""
    text = plugin.log_since(mark)
    out: dict[str, float] = {}
    for line in text.splitlines():
        for key, needle in (
            ("ovsdb_connecting", "connecting..."),
            ("restored", " restored "),
            ("restored", " loaded "),
            ("serving", " serving driver"),
        ):
            if needle in line and key not in out:
                with contextlib.suppress(ValueError):
                    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    out[key] = stamp - exec_wall
    return out


def _restart_once(pop: Population) -> dict[str, Any]:
    plugin = pop.plugin
    probe_id, probe_addr = pop.endpoints[0]
    expected_port = "ovp" + probe_id[:12]
    pop.client.close()
    plugin.stop(signal.SIGTERM)
    stop_s = plugin.stop_seconds
    mark = plugin.log_mark()
    exec_wall = time.time()
    t0 = plugin.spawn()
    socket_at = None
    attempts = 0
    client = PluginClient(plugin.socket_path, timeout=30)
    deadline = t0 + RESTART_TIMEOUT_S
    while True:
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(
                f"restarted plugin gave no correct answer within {RESTART_TIMEOUT_S:.0f} s"
            )
        if socket_at is None and plugin.socket_path.exists():
            socket_at = now - t0
        try:
            attempts += 1
            status, out = client.call(
                "NetworkDriver.EndpointOperInfo",
                {"NetworkID": pop.network_id, "EndpointID": probe_id},
            )
            value = out.get("Value", {}) if isinstance(out, dict) else {}
            if status == 200 and value.get("port") == expected_port:
                if value.get("ipv4") not in (None, probe_addr):
                    raise RuntimeError(f"restored endpoint has the wrong address: {value}")
                break
        except OSError:
            client.close()
        time.sleep(0.002)
    answered = time.perf_counter() - t0
    client.close()
    pop.reconnect()
    join = pop.join(probe_id)  # a Join for a pre-restart endpoint must work too
    if join.get("InterfaceName", {}).get("SrcName") != "ovc" + probe_id[:12]:
        raise RuntimeError(f"Join after restart answered {join}")
    time.sleep(0.1)  # the log lines are flushed per line, but give the writer a moment
    return {
        "answered_s": answered,
        "socket_after_s": socket_at,
        "stop_s": stop_s,
        "attempts": attempts,
        "log_offsets_s": _log_offsets(plugin, mark, exec_wall),
        "rss_kib": plugin.rss_kib(),
    }


def run_restart(ctx: Context) -> ItemResult:
    res = ItemResult("restart")
    pop = population(ctx)
    top = max(ctx.settings.driver_levels)
    pop.grow_to(top)
    rounds = []
    for _ in range(ctx.settings.restart_rounds):
        rounds.append(_restart_once(pop))
        log(f"restart with {top} endpoints: {rounds[-1]['answered_s']:.2f} s")
        if rounds[-1]["answered_s"] > RESTART_REPEAT_LIMIT_S:
            break
    times = [r["answered_s"] for r in rounds]
    floor = _import_floor(ctx.plugin)
    med = statistics.median(times)
    res.data = {"endpoints": top, "rounds": rounds, "import_floor_s": floor}
    offsets = rounds[-1]["log_offsets_s"]
    detail = (
        f"median of {len(times)} (min {min(times):.3f}, max {max(times):.3f}); "
        f"socket after {statistics.median(r['socket_after_s'] or 0 for r in rounds):.3f} s; "
        f"log: OVSDB connect at {offsets.get('ovsdb_connecting', float('nan')):.3f} s, "
        f"state loaded at {offsets.get('restored', float('nan')):.3f} s, "
        f"serving at {offsets.get('serving', float('nan')):.3f} s; "
        f"python import of the plugin alone {floor:.3f} s; SIGTERM->exit "
        f"{statistics.median(r['stop_s'] for r in rounds):.3f} s"
    )
    res.rows.append(
        Row(
            "restart",
            f"exec -> correct answer @{top} endpoints",
            med,
            "s",
            f"< {RESTART_TARGET_S:.0f}" + ("" if top == 1000 else " (target is @1000)"),
            med < RESTART_TARGET_S,
            detail,
        )
    )
    res.rows.append(
        Row(
            "restart",
            "RSS after restart",
            rounds[-1]["rss_kib"]["VmRSS"] / 1024,
            "MB",
            "",
            None,
            f"with {top} endpoints restored",
        )
    )
    return res
