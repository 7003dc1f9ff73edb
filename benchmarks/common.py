"""Shared helpers: the suite's names, statistics, results, machine facts, progress output
(commands, Docker and the plugin come from the test bed, testbed/)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.commands import CommandError, run
from testbed.host import LOCAL
from testbed.image import IMAGE_TAG
from testbed.suite import Suite

REPO = Path(__file__).resolve().parent.parent

#: What the suite names its own: driver (and socket) name of the plugin instance it runs,
#: the Docker label on every container and network it creates (leftover sweeps use it), the
#: prefix of every docker object, namespace, bridge and link it creates itself.
SUITE = Suite(
    driver="ovsbench",
    label="ovsbench",
    prefix="ovsbench",
    run_dir=Path("/run/docker-ovs-plugin-bench"),
)
PREFIX = SUITE.prefix
LABEL = SUITE.label
DRIVER = SUITE.driver
#: The host measured (this machine).
HOST = LOCAL
IMAGE = IMAGE_TAG
#: Hex prefix of the network and endpoint ids the suite sends to the plugin itself, so a
#: later run can recognise (and remove) what an interrupted one left behind.
ID_PREFIX = "be4c"


def command_seconds(argv: Sequence[str], *, timeout: float = 120.0) -> float:
    """Seconds one successful command took, wall clock."""
    start = time.perf_counter()
    run(argv, timeout=timeout)
    return time.perf_counter() - start


def ovs_vsctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return HOST.ovs_vsctl(*args, check=check, wait=20)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rotate(items: Sequence[str], i: int) -> list[str]:
    """Order of the sides in round i: each side takes each position equally often."""
    k = i % len(items)
    return [*items[k:], *items[:k]]


def alternating_seconds(
    item: str, argvs: Mapping[str, Sequence[str]], rounds: int, *, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds of each side's command per round, the sides rotating (after `warmup` runs of
    each that are not counted); the medians logged every 5 rounds."""
    for argv in argvs.values():
        for _ in range(warmup):
            command_seconds(argv)
    samples: dict[str, list[float]] = {s: [] for s in argvs}
    for i in range(rounds):
        for side in rotate(list(argvs), i):
            samples[side].append(command_seconds(argvs[side]))
        if (i + 1) % 5 == 0:
            progress = {s: f"{statistics.median(v):.3f}" for s, v in samples.items()}
            log(f"{item} round {i + 1}/{rounds}: medians {progress}")
    return samples


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100), like numpy's default."""
    if not values:
        return float("nan")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * p / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median and spread of a sample (same unit as the input)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "p25": percentile(values, 25),
        "p75": percentile(values, 75),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def ratio_ci(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 1
) -> tuple[float, float]:
    """Bootstrap 95% interval of median(a) / median(b)."""
    if len(a) < 2 or len(b) < 2:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)  # noqa: S311 (statistics, not security)
    ratios = []
    for _ in range(resamples):
        ma = statistics.median(rng.choices(a, k=len(a)))
        mb = statistics.median(rng.choices(b, k=len(b)))
        ratios.append(ma / mb if mb else float("inf"))
    return (percentile(ratios, 2.5), percentile(ratios, 97.5))


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table: a figure, its target and whether it is met."""

    item: str
    metric: str
    value: float | None
    unit: str
    target: str
    passed: bool | None  # None: context only, no target
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "pass": self.passed,
            "detail": self.detail,
        }


@dataclass
class ItemResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


# -- machine ---------------------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = run(argv, check=False, timeout=20).stdout.strip()
    except (CommandError, OSError):
        return "?"
    return out.splitlines()[0] if out else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return float("nan")


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "?"


def _virt() -> str:
    """The hypervisor, e.g. "kvm VM" (a container marker such as /.dockerenv is not the machine)."""
    if shutil.which("systemd-detect-virt"):
        vm = run(["systemd-detect-virt", "--vm"], check=False).stdout.strip()
        if vm and vm != "none":
            return f"{vm} VM"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    return "VM (hypervisor flag)" if " hypervisor" in flags else "bare metal"


def machine_info(datapath: str) -> dict[str, Any]:
    git = ["git", "-C", str(REPO)]
    dirty = run([*git, "status", "--porcelain", "--", "src"], check=False).stdout.strip()
    diff = run([*git, "diff", "HEAD", "--", "src"], check=False).stdout
    return {
        "hostname": platform.node(),
        "os": _os_name(),
        "kernel": platform.release(),
        "virtualization": _virt(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "docker_server": _first_line(HOST.docker_argv("version", "-f", "{{.Server.Version}}")),
        "docker_client": _first_line(HOST.docker_argv("version", "-f", "{{.Client.Version}}")),
        "ovs": _first_line(["ovs-vswitchd", "--version"]),
        "datapath": datapath,
        "openvswitch_kernel_module": Path("/sys/module/openvswitch").exists(),
        "python": platform.python_version(),
        "iperf3": _first_line(["iperf3", "--version"]),
        "git_commit": _first_line([*git, "rev-parse", "--short=12", "HEAD"]),
        "src_dirty": bool(dirty),
        "src_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if dirty else None,
        "loadavg_start": os.getloadavg(),
    }


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
