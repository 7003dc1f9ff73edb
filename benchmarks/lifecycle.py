"""Container lifecycle: `docker run --rm IMAGE true` on ovs vs bridge vs `--net none`."""

from __future__ import annotations

import statistics

from benchmarks.common import (
    DRIVER,
    HOST,
    IMAGE,
    LABEL,
    ItemResult,
    Row,
    alternating_seconds,
    ratio_ci,
    summary,
)
from benchmarks.context import Context
from benchmarks.dockerenv import network
from benchmarks.plugin import request_breakdown

SIDES = ("ovs", "bridge", "none")
WARMUP = 2


def _argv(net: str) -> list[str]:
    return HOST.docker_argv("run", "--rm", "--net", net, "--label", LABEL, IMAGE, "true")


def run_lifecycle(ctx: Context) -> ItemResult:
    rounds = ctx.settings.lifecycle_rounds
    res = ItemResult("lifecycle")
    with network(DRIVER, "ovs") as ovs, network("bridge", "br") as br:
        nets = {"ovs": ovs.name, "bridge": br.name, "none": "none"}
        mark = ctx.plugin.log_mark()
        samples = alternating_seconds(
            "lifecycle", {s: _argv(nets[s]) for s in SIDES}, rounds, warmup=WARMUP
        )
        # The ovs warm-up runs are in the log too: the breakdown is per ovs container.
        breakdown = request_breakdown(ctx.plugin.requests_since(mark), rounds + WARMUP)

    stats = {s: summary(v) for s, v in samples.items()}
    med = {s: stats[s]["median"] for s in SIDES}
    ratio = med["ovs"] / med["bridge"]
    lo, hi = ratio_ci(samples["ovs"], samples["bridge"])
    paired = [o / b for o, b in zip(samples["ovs"], samples["bridge"], strict=True)]
    overhead_ovs = med["ovs"] - med["none"]
    overhead_br = med["bridge"] - med["none"]
    res.data = {
        "rounds": rounds,
        "order": "rotating: each side takes each position in turn",
        "samples_s": samples,
        "stats_s": stats,
        "ratio_ovs_bridge": ratio,
        "ratio_ci95": [lo, hi],
        "paired_ratio_median": statistics.median(paired),
        "overhead_above_none_s": {"ovs": overhead_ovs, "bridge": overhead_br},
        "plugin_requests": breakdown,
    }

    def spread(s: str) -> str:
        st = stats[s]
        return f"{s} {st['median']:.3f} s (IQR {st['p25']:.3f}-{st['p75']:.3f})"

    res.rows.append(
        Row(
            "lifecycle",
            "ovs/bridge median ratio",
            ratio,
            "x",
            "<= 1.00",
            ratio <= 1.00,
            f"{spread('ovs')}, {spread('bridge')}, {spread('none')}; 95% CI {lo:.3f}-{hi:.3f};"
            f" n={rounds}",
        )
    )
    for side in SIDES:
        res.rows.append(Row("lifecycle", f"median {side}", med[side], "s", "", None, spread(side)))
    if overhead_br > 0:
        res.rows.append(
            Row(
                "lifecycle",
                "network cost above --net none, ovs/bridge",
                overhead_ovs / overhead_br,
                "x",
                "",
                None,
                f"ovs +{overhead_ovs * 1000:.0f} ms, bridge +{overhead_br * 1000:.0f} ms",
            )
        )
    per = breakdown["plugin_ms_per_container"]
    if per:
        top = ", ".join(
            f"{m} {v['ms_per_container']:.1f}" for m, v in list(breakdown["methods"].items())[:4]
        )
        res.rows.append(
            Row(
                "lifecycle",
                "plugin time per ovs container",
                per,
                "ms",
                "",
                None,
                f"server-side, from the debug log: {top} ms",
            )
        )
    return res
