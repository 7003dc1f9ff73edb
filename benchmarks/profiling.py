"""Profile: where one container's lifecycle time goes inside the plugin.

Runs `docker run --rm IMAGE true` on an ovs network N times while py-spy samples the plugin
(`--idle`, so time spent waiting for OVSDB/ovs-vswitchd or the kernel counts too), then folds the
stacks of request-handling threads by request and by the adapter call they were in. The plugin's
debug log gives the server-side duration of every request; ovs-vswitchd's log is scanned for
"Unreasonably long ... poll interval" warnings over the same window.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import DRIVER, HOST, IMAGE, LABEL, ItemResult, Row, command_seconds, log
from benchmarks.context import Context
from benchmarks.dockerenv import network
from benchmarks.plugin import request_breakdown

RATE = 250  # samples per second and thread
VSWITCHD_LOG = Path("/var/log/openvswitch/ovs-vswitchd.log")
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")
_LONG_POLL = re.compile(r"Unreasonably long (\d+)ms poll interval")


def py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        m = _FRAME.match(frame.strip())
        out.append((m.group("func"), m.group("file")) if m else (frame, ""))
    return out


def _classify_leaf(frames: list[tuple[str, str]]) -> str:
    """What a request thread was doing at the bottom of its stack, in words."""
    names = [f"{func} ({file})" for func, file in frames]
    text = ";".join(names)
    if "ovsdbapp" in text and ("Queue.get" in text or "Condition.wait" in text):
        return "waiting for an OVSDB transaction (commit + ovs-vswitchd applying it)"
    if "subprocess" in text:
        return (
            "running a command (" + next((f for f, file in frames if "adapters" in file), "?") + ")"
        )
    if "pyroute2" in text or "ethtool" in text:
        return "netlink / ethtool (pyroute2)"
    if "pydantic" in text or "json" in text:
        return "decoding/encoding JSON"
    if "logging" in text:
        return "logging"
    leaf_func, leaf_file = frames[-1]
    return f"{leaf_func} ({leaf_file})"


def analyze(raw: Path, rate: int) -> dict[str, Any]:
    """Fold py-spy raw (collapsed) stacks of request threads by request and adapter call."""
    ms_per_sample = 1000.0 / rate
    by_handler: Counter[str] = Counter()
    by_call: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    by_handler_leaf: dict[str, Counter[str]] = defaultdict(Counter)
    conn_busy: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        frames = _frames(stack)
        files = [file for _, file in frames]
        if any(f.endswith("http/server.py") for f in files) and any(
            func.endswith("do_POST") for func, _ in frames
        ):
            handler = next(
                (func for func, file in frames if file.endswith("http/routes.py")), "(server)"
            ).removeprefix("build_routes.<locals>.")
            call = next(
                (func for func, file in frames if "docker_ovs_plugin/adapters/" in file),
                next((func for func, file in frames if "service/driver.py" in file), "(http)"),
            )
            leaf = _classify_leaf(frames)
            by_handler[handler] += count
            by_call[f"{handler} > {call}"] += count
            by_leaf[leaf] += count
            by_handler_leaf[handler][leaf] += count
        elif any("ovsdbapp/backend/ovs_idl/connection.py" in f for f in files) and not any(
            func.endswith(("Poller.block", "_SelectSelect.poll")) for func, _ in frames
        ):
            conn_busy[f"{frames[-1][0]} ({frames[-1][1]})"] += count

    def ms(counter: Counter[str], top: int = 15) -> dict[str, float]:
        return {k: round(v * ms_per_sample, 1) for k, v in counter.most_common(top)}

    return {
        "rate_hz": rate,
        "request_thread_ms_by_handler": ms(by_handler),
        "request_thread_ms_by_adapter_call": ms(by_call, 25),
        "request_thread_ms_by_activity": ms(by_leaf),
        "activity_by_handler_ms": {h: ms(c, 6) for h, c in by_handler_leaf.items()},
        "ovsdb_connection_thread_busy_ms": ms(conn_busy, 10),
    }


class Recorder:
    """`py-spy record --idle` of a process into a raw (collapsed stacks) file, as a context."""

    def __init__(self, pid: int, raw: Path) -> None:
        self.pid, self.raw = pid, raw
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Recorder:
        spy = py_spy()
        if spy is None:
            log("py-spy not found (pip install -e '.[bench]'): no stack profile")
            return self
        self.proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(self.pid),
                "--idle",
                "--threads",
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--output",
                str(self.raw),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        if not self.raw.exists():
            log(f"py-spy failed: {err.decode(errors='replace').strip()}")

    def analysis(self) -> dict[str, Any] | None:
        if self.proc is None or not self.raw.exists():
            return None
        out = analyze(self.raw, RATE)
        out["raw_file"] = self.raw.name
        return out


def _vswitchd_log_mark() -> int:
    try:
        return VSWITCHD_LOG.stat().st_size
    except OSError:
        return 0


def _long_polls(mark: int) -> list[int]:
    try:
        with VSWITCHD_LOG.open("rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [int(m.group(1)) for m in _LONG_POLL.finditer(text)]


def run_profile(ctx: Context) -> ItemResult:
    res = ItemResult("profile")
    n = ctx.settings.profile_containers
    raw = ctx.out_dir / "profile-lifecycle.raw.txt"
    argv = HOST.docker_argv("run", "--rm", "--label", LABEL, "--net")
    with network(DRIVER, "prof") as net:
        command_seconds([*argv, net.name, IMAGE, "true"])  # warm-up
        mark = ctx.plugin.log_mark()
        vs_mark = _vswitchd_log_mark()
        with Recorder(ctx.plugin.pid, raw) as recorder:
            times = [command_seconds([*argv, net.name, IMAGE, "true"]) for _ in range(n)]
        breakdown = request_breakdown(ctx.plugin.requests_since(mark), n)
    polls = _long_polls(vs_mark)
    res.data = {
        "containers": n,
        "lifecycle_s": times,
        "plugin_requests": breakdown,
        "vswitchd_long_poll_warnings_ms": polls,
    }
    spy_data = recorder.analysis()
    if spy_data is not None:
        res.data["py_spy"] = spy_data
    per = breakdown["plugin_ms_per_container"] or 0.0
    lifecycle_ms = 1000 * sorted(times)[len(times) // 2]
    top = list(breakdown["methods"].items())
    res.rows.append(
        Row(
            "profile",
            "plugin share of an ovs container lifecycle",
            per / lifecycle_ms if lifecycle_ms else None,
            "x",
            "",
            None,
            f"{per:.1f} ms of {lifecycle_ms:.0f} ms (py-spy attached, n={n})",
        )
    )
    for method, st in top[:4]:
        res.rows.append(
            Row(
                "profile",
                f"{method} per container",
                st["ms_per_container"],
                "ms",
                "",
                None,
                f"median {st['median_ms']:.1f}, p90 {st['p90_ms']:.1f} ms, calls {st['count']}",
            )
        )
    if spy_data:
        for call, ms in list(spy_data["request_thread_ms_by_adapter_call"].items())[:4]:
            res.rows.append(
                Row("profile", f"py-spy: {call}", ms / n, "ms", "", None, "wall ms per container")
            )
    if polls:
        res.rows.append(
            Row(
                "profile",
                "ovs-vswitchd long poll intervals",
                float(len(polls)),
                "count",
                "",
                None,
                f"max {max(polls)} ms (ovs-vswitchd log, same window)",
            )
        )
    return res
