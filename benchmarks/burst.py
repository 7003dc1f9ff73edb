"""Burst: N containers started P at a time, then removed P at a time; ovs vs bridge."""

from __future__ import annotations

import statistics
import subprocess
import time

from benchmarks.common import DRIVER, HOST, IMAGE, LABEL, PREFIX, ItemResult, Row, log, rotate
from benchmarks.context import Context
from benchmarks.dockerenv import network, remove_containers
from benchmarks.plugin import request_breakdown

SIDES = ("ovs", "bridge")
TARGET = 1.10


def _parallel(argvs: list[list[str]], timeout: float = 300) -> None:
    procs = [
        subprocess.Popen(
            a, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for a in argvs
    ]
    errors = []
    for argv, proc in zip(argvs, procs, strict=True):
        _, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            errors.append(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
    if errors:
        raise RuntimeError("; ".join(errors))


def _burst(net: str, tag: str, count: int, parallel: int) -> dict[str, float]:
    names = [f"{PREFIX}-burst-{tag}-{i}" for i in range(count)]
    try:
        t0 = time.perf_counter()
        for i in range(0, count, parallel):
            _parallel(
                [
                    HOST.docker_argv(
                        "run",
                        "-d",
                        "--name",
                        n,
                        "--label",
                        LABEL,
                        "--net",
                        net,
                        IMAGE,
                        "sleep",
                        "600",
                    )
                    for n in names[i : i + parallel]
                ]
            )
        t1 = time.perf_counter()
        for i in range(0, count, parallel):
            _parallel([HOST.docker_argv("rm", "-f", n) for n in names[i : i + parallel]])
        t2 = time.perf_counter()
    finally:
        remove_containers(names)  # only does something after an error
    return {"start_s": t1 - t0, "remove_s": t2 - t1, "total_s": t2 - t0}


def run_burst(ctx: Context) -> ItemResult:
    s = ctx.settings
    res = ItemResult("burst")
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with network(DRIVER, "ovs") as ovs, network("bridge", "br") as br:
        nets = {"ovs": ovs.name, "bridge": br.name}
        plugin_ms: dict[str, list[float]] = {}
        for r in range(s.burst_rounds):
            for side in rotate(SIDES, r):
                mark = ctx.plugin.log_mark()
                out = _burst(nets[side], f"{side}{r}", s.burst_containers, s.burst_parallel)
                if side == "ovs":
                    for k, v in ctx.plugin.requests_since(mark).items():
                        plugin_ms.setdefault(k, []).extend(v)
                runs[side].append(out)
                log(
                    f"burst {side} round {r + 1}: start {out['start_s']:.1f} s, "
                    f"remove {out['remove_s']:.1f} s"
                )
    med = {
        side: {k: statistics.median(x[k] for x in runs[side]) for k in runs[side][0]}
        for side in SIDES
    }
    ratio = med["ovs"]["total_s"] / med["bridge"]["total_s"]
    breakdown = request_breakdown(plugin_ms, s.burst_containers * s.burst_rounds)
    res.data = {
        "containers": s.burst_containers,
        "parallel": s.burst_parallel,
        "rounds": s.burst_rounds,
        "runs": runs,
        "medians": med,
        "ratio_total": ratio,
        "plugin_requests": breakdown,
    }

    def fmt(side: str) -> str:
        m = med[side]
        return f"{side} {m['total_s']:.1f} s (start {m['start_s']:.1f} + rm {m['remove_s']:.1f})"

    all_totals = {side: [x["total_s"] for x in runs[side]] for side in SIDES}
    spread = "; ".join(
        f"{side} runs " + "/".join(f"{t:.1f}" for t in all_totals[side]) for side in SIDES
    )
    res.rows.append(
        Row(
            "burst",
            f"{s.burst_containers} containers, {s.burst_parallel} at a time: ovs/bridge",
            ratio,
            "x",
            f"<= {TARGET:.2f}",
            ratio <= TARGET,
            f"{fmt('ovs')}, {fmt('bridge')}; {spread}",
        )
    )
    for phase in ("start_s", "remove_s"):
        res.rows.append(
            Row(
                "burst",
                f"{phase.split('_')[0]} phase ovs/bridge",
                med["ovs"][phase] / med["bridge"][phase],
                "x",
                "",
                None,
                f"ovs {med['ovs'][phase]:.2f} s, bridge {med['bridge'][phase]:.2f} s",
            )
        )
    return res
