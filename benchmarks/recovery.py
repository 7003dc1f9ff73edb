"""Recovery: restart ovs-vswitchd under two containers on an ovs network; time until they reach
each other again (ICMP every 50 ms from one container's namespace to the other)."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import DRIVER, HOST, SUITE, ItemResult, Row, log
from benchmarks.context import Context
from benchmarks.dockerenv import (
    container_ip,
    container_pid,
    network,
    remove_containers,
    run_detached,
)
from testbed.commands import WaitTimeout, run, wait_until
from testbed.daemons import OpenVSwitch

TARGET_S = 2.0
INTERVAL = 0.05
PINGER = Path(__file__).with_name("pinger.py")
OVS = OpenVSwitch(HOST)


def restart_vswitchd() -> dict[str, float]:
    """Stop ovs-vswitchd gracefully and start it again; wall-clock timestamps of the steps."""
    old = OVS.vswitchd_pid()
    t0 = time.time()
    run(["ovs-appctl", "-t", "ovs-vswitchd", "exit"], check=False, timeout=60)
    if old is not None:
        wait_until(
            lambda: not Path(f"/proc/{old}").exists(),
            timeout=60,
            interval=0.005,
            what="ovs-vswitchd to exit",
        )
    gone = time.time()
    OVS.start_vswitchd()
    started = time.time()
    return {"begin": t0, "gone": gone, "started": started}


def flow_count(bridge: str) -> int:
    """OpenFlow flows on a bridge (0 while ovs-vswitchd is away)."""
    out = run(["ovs-ofctl", "dump-aggregate", bridge], check=False, timeout=10).stdout
    for field in out.split():
        if field.startswith("flow_count="):
            return int(field.split("=", 1)[1])
    return 0


def other_test_runs(exclude: int | None = None) -> list[str]:
    """Test suites and other plugin instances running on this host: a vswitchd restart would
    disturb them, and another instance's reconciler may remove what this suite creates."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in (os.getpid(), exclude):
            continue
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            plugin = ("docker_ovs_plugin" in cmd or "docker-ovs-plugin" in cmd) and " serve" in cmd
            if "pytest" in cmd or plugin:
                found.append(f"{proc.name}: {cmd.strip()[:100]}")
    return found


class Pinger:
    def __init__(self, netns: str, target: str, duration: float) -> None:
        self.events: list[tuple[str, int, float]] = []
        self.proc = subprocess.Popen(
            [
                "nsenter",
                f"--net={netns}",
                sys.executable,
                str(PINGER),
                target,
                str(INTERVAL),
                str(duration),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None  # noqa: S101 (Popen with PIPE)
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) >= 3:
                self.events.append((parts[0], int(parts[1]), float(parts[2])))

    def first_reply_after(self, since: float) -> float | None:
        """Time of the first reply to a request sent at or after `since`."""
        sent = {seq: t for kind, seq, t in list(self.events) if kind == "S" and t >= since}
        for kind, seq, t in list(self.events):
            if kind == "R" and seq in sent:
                return t
        return None

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(timeout=10)


def _wait_for_tests(own_pid: int) -> None:
    busy = [p for p in other_test_runs(own_pid) if "pytest" in p]
    deadline = time.monotonic() + 300
    while busy and time.monotonic() < deadline:
        log(f"waiting for a running test suite to end before restarting ovs-vswitchd: {busy[0]}")
        time.sleep(10)
        busy = [p for p in other_test_runs(own_pid) if "pytest" in p]
    if busy:
        raise RuntimeError(f"skipped: a test suite is running and a restart would break it: {busy}")


def _one_restart(netns: str, target: str, bridge: str, flows_before: int) -> dict[str, float]:
    pinger = Pinger(netns, target, duration=120)
    try:
        wait_until(
            lambda: pinger.first_reply_after(0) is not None,
            timeout=20,
            interval=0.05,
            what="first ping reply before the restart",
        )
        steps = restart_vswitchd()
        wait_until(
            lambda: pinger.first_reply_after(steps["gone"]) is not None,
            timeout=60,
            interval=0.01,
            what="ping replies after the restart",
        )
        back = pinger.first_reply_after(steps["gone"]) or float("nan")
        # The plugin puts its flows (port security) back after a vswitchd restart.
        flows_back = float("nan")
        if flows_before > 1:
            with contextlib.suppress(WaitTimeout):
                wait_until(
                    lambda: flow_count(bridge) >= flows_before,
                    timeout=30,
                    interval=0.05,
                    what="the plugin's flows",
                )
                flows_back = time.time()
    finally:
        pinger.stop()
    return {
        "recovered_s": back - steps["begin"],
        "flows_back_s": flows_back - steps["begin"],
        "flows_before": flows_before,
        "exit_s": steps["gone"] - steps["begin"],
        "start_cmd_s": steps["started"] - steps["gone"],
        "after_started_s": back - steps["started"],
    }


def run_recovery(ctx: Context) -> ItemResult:
    res = ItemResult("recovery")
    _wait_for_tests(ctx.plugin.pid)
    # The plugin puts back what a vswitchd restart loses (flows, addresses) from its reconciler.
    ctx.plugin.restart_with(reconcile=True)
    rounds: list[dict[str, float]] = []
    with network(DRIVER, "rec") as net:
        names = [SUITE.unique_name("rec-a"), SUITE.unique_name("rec-b")]
        try:
            for name in names:
                run_detached(name, net.name, "sleep", "3600")
            pid_a = container_pid(names[0])
            ip_b = container_ip(names[1])
            bridge = f"ovsbr-{net.id[:8]}"  # the plugin's default bridge name (naming.py)
            flows_before = flow_count(bridge)
            for r in range(ctx.settings.recovery_rounds):
                try:
                    _wait_for_tests(ctx.plugin.pid)  # a test suite may have started meanwhile
                except RuntimeError:
                    if not rounds:
                        raise
                    log("a test suite is running: no more vswitchd restarts")
                    break
                rounds.append(_one_restart(f"/proc/{pid_a}/ns/net", ip_b, bridge, flows_before))
                log(f"recovery round {r + 1}: {rounds[-1]['recovered_s']:.3f} s")
                time.sleep(1.0)
        finally:
            if OVS.vswitchd_pid() is None:
                log("ovs-vswitchd is not running: starting it")
                OVS.start_vswitchd()
            remove_containers(names)
    ctx.plugin.restart_with(reconcile=False)
    times = [x["recovered_s"] for x in rounds]
    med = statistics.median(times)
    flows = [x["flows_back_s"] for x in rounds if x["flows_back_s"] == x["flows_back_s"]]

    def mid(key: str) -> float:
        return statistics.median(x[key] for x in rounds)

    res.data = {
        "interval_s": INTERVAL,
        "method": "ovs-appctl exit + ovs-ctl start",
        "rounds": rounds,
    }
    res.rows.append(
        Row(
            "recovery",
            "ovs-vswitchd restart -> ping between containers",
            med,
            "s",
            f"< {TARGET_S:.0f}",
            med < TARGET_S,
            f"median of {len(times)} (min {min(times):.3f}, max {max(times):.3f}); exit "
            f"{mid('exit_s'):.3f} s + ovs-ctl start {mid('start_cmd_s'):.3f} s + first reply "
            f"{mid('after_started_s'):.3f} s later; {INTERVAL * 1000:.0f} ms ping interval",
        )
    )
    if rounds and rounds[0]["flows_before"] > 1:
        res.rows.append(
            Row(
                "recovery",
                "ovs-vswitchd restart -> plugin's flows back",
                statistics.median(flows) if flows else None,
                "s",
                "",
                None,
                f"{rounds[0]['flows_before']} flows on the bridge before; polled every 50 ms"
                + ("" if flows else "; NOT back within 30 s"),
            )
        )
    return res
