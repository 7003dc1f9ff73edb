"""Results: the printed table, results.json, results.md and results.png."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.common import ItemResult, Row, dump_json, log


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "count":
        return f"{value:.0f}"
    if abs(value) >= 100:
        return f"{value:.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.3f} {unit}" if unit == "s" else f"{value:.2f} {unit}"


def _verdict(row: Row) -> str:
    return "" if row.passed is None else ("PASS" if row.passed else "FAIL")


def rows_of(results: list[ItemResult]) -> list[Row]:
    rows: list[Row] = []
    for r in results:
        if r.error:
            rows.append(Row(r.name, "error", None, "", "", False, r.error.splitlines()[0][:200]))
        rows.extend(r.rows)
    return rows


def table(results: list[ItemResult], *, details: bool = True) -> str:
    rows = rows_of(results)
    head = ("item", "metric", "value", "target", "result")
    cells = [(r.item, r.metric, _fmt(r.value, r.unit), r.target, _verdict(r)) for r in rows]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)
    ]
    line = "  ".join("{:<%d}" % w for w in widths)  # noqa: UP031 (a format template)
    out = [line.format(*head), line.format(*("-" * w for w in widths))]
    for row, c in zip(rows, cells, strict=True):
        out.append(line.format(*c).rstrip())
        if details and row.detail:
            out.append(" " * (widths[0] + 2) + "  " + row.detail)
    return "\n".join(out)


def markdown(results: list[ItemResult], machine: dict[str, Any]) -> str:
    out = [
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('memory_gib')} GiB, {machine.get('virtualization')}; "
        f"{machine.get('os')}, kernel {machine.get('kernel')}; Docker "
        f"{machine.get('docker_server')}; {machine.get('ovs')}, datapath "
        f"**{machine.get('datapath')}**; commit {machine.get('git_commit')}"
        f"{' (src modified)' if machine.get('src_dirty') else ''}.",
        "",
        "| item | metric | value | target | result | detail |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows_of(results):
        detail = r.detail.replace("|", "/")
        out.append(
            f"| {r.item} | {r.metric} | {_fmt(r.value, r.unit)} | {r.target} | "
            f"{_verdict(r)} | {detail} |"
        )
    return "\n".join(out) + "\n"


def write_json(path: Path, meta: dict[str, Any], results: list[ItemResult]) -> None:
    dump_json(
        path,
        {
            **meta,
            "table": [r.as_dict() for r in rows_of(results)],
            "items": {
                r.name: {"seconds": round(r.seconds, 1), "error": r.error, "data": r.data}
                for r in results
            },
        },
    )


# -- plot ------------------------------------------------------------------------------------


def plot(path: Path, meta: dict[str, Any], results: list[ItemResult]) -> None:
    try:
        import matplotlib  # noqa: PLC0415 (optional: the bench extras)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return
    data = {r.name: r.data for r in results if r.data and not r.error}
    panels = [
        name
        for name in (
            "lifecycle",
            "published",
            "driver",
            "burst",
            "datapath",
            "restart",
            "memory",
            "recovery",
            "primitives",
            "profile",
        )
        if name in data
    ]
    if not panels:
        return
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, panels, strict=False):
        try:
            _PANELS[name](ax, data[name])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            ax.text(0.5, 0.5, f"{name}: no plot ({e})", ha="center", va="center")
        ax.grid(True, axis="y", alpha=0.3)
    m = meta.get("machine", {})
    fig.suptitle(
        f"docker-ovs-plugin benchmarks - {m.get('hostname')} ({m.get('cores')} cores, "
        f"{m.get('virtualization')}), OVS datapath {m.get('datapath')}, Docker "
        f"{m.get('docker_server')}, commit {m.get('git_commit')}"
        f"{'+dirty' if m.get('src_dirty') else ''}, {meta.get('started')}"
        f"{' [quick]' if meta.get('quick') else ''}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _sides_box(ax: Any, d: dict[str, Any], command: str) -> None:
    """Box per side of an alternating command item, with the ovs/bridge ratio and its CI."""
    sides = list(d["samples_s"])
    ax.boxplot([d["samples_s"][s] for s in sides], showfliers=True)
    ax.set_xticks(range(1, len(sides) + 1), sides)
    ax.set_ylabel("seconds")
    lo, hi = d["ratio_ci95"]
    ax.set_title(
        f"{command} (n={d['rounds']})\n"
        f"ovs/bridge {d['ratio_ovs_bridge']:.3f} (95% CI {lo:.3f}-{hi:.3f}), target <= 1.00"
    )


def _lifecycle(ax: Any, d: dict[str, Any]) -> None:
    _sides_box(ax, d, "docker run --rm true")


def _published(ax: Any, d: dict[str, Any]) -> None:
    _sides_box(ax, d, f"docker run --rm -p {d['host_port']}:80 true")


def _driver(ax: Any, d: dict[str, Any]) -> None:
    levels = sorted(d["levels"], key=int)
    x = range(len(levels))
    width = 0.2
    for i, (op, stat) in enumerate(
        (("attach", "p50"), ("attach", "p99"), ("detach", "p50"), ("detach", "p99"))
    ):
        values = [d["levels"][lv]["stats_ms"][op][stat] for lv in levels]
        ax.bar([p + (i - 1.5) * width for p in x], values, width, label=f"{op} {stat}")
    ax.axhline(20, color="red", linestyle="--", linewidth=1, label="p99 target 20 ms")
    ax.set_xticks(list(x), [f"{lv} endpoints" for lv in levels])
    ax.set_ylabel("ms")
    ax.set_title(
        "driver latency over the socket\nattach = CreateEndpoint+Join, detach = Leave+Delete"
    )
    ax.legend(fontsize=7)


def _burst(ax: Any, d: dict[str, Any]) -> None:
    sides = list(d["medians"])
    starts = [d["medians"][s]["start_s"] for s in sides]
    removes = [d["medians"][s]["remove_s"] for s in sides]
    ax.bar(sides, starts, label="start")
    ax.bar(sides, removes, bottom=starts, label="remove")
    ax.set_ylabel("seconds")
    ax.set_title(
        f"burst: {d['containers']} containers, {d['parallel']} at a time\n"
        f"ovs/bridge {d['ratio_total']:.3f}, target <= 1.10"
    )
    ax.legend(fontsize=8)


def _datapath(ax: Any, d: dict[str, Any]) -> None:
    sides = list(d["runs"])
    med = [d["stats_gbit_s"][s]["median"] for s in sides]
    ax.bar(sides, med, color=["tab:blue", "tab:gray", "tab:orange", "tab:cyan"][: len(sides)])
    for i, s in enumerate(sides):
        ax.plot([i] * len(d["runs"][s]), [r["gbit_s"] for r in d["runs"][s]], "k.")
    ax.set_ylabel("Gbit/s")
    ax.set_title(
        f"iperf3 TCP ({d['datapath']} datapath)\novs network / bare OVS "
        f"{d['ratio_ovs_bare']:.3f}, target >= 0.95"
    )


def _single(ax: Any, values: list[float], target: float, title: str, unit: str) -> None:
    ax.bar(["median"], [sorted(values)[len(values) // 2]], width=0.4)
    ax.plot([0] * len(values), values, "k.")
    ax.axhline(target, color="red", linestyle="--", linewidth=1, label=f"target {target} {unit}")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.legend(fontsize=8)


def _restart(ax: Any, d: dict[str, Any]) -> None:
    _single(
        ax,
        [r["answered_s"] for r in d["rounds"]],
        1.0,
        f"plugin restart with {d['endpoints']} endpoints\nexec -> correct EndpointOperInfo",
        "s",
    )


def _recovery(ax: Any, d: dict[str, Any]) -> None:
    _single(
        ax,
        [r["recovered_s"] for r in d["rounds"]],
        2.0,
        "ovs-vswitchd restart -> containers ping again",
        "s",
    )


def _memory(ax: Any, d: dict[str, Any]) -> None:
    levels = sorted(d["rss_kib_by_level"], key=int)
    ax.plot(
        [int(lv) for lv in levels],
        [d["rss_kib_by_level"][lv]["VmRSS"] / 1024 for lv in levels],
        "o-",
    )
    ax.axhline(100, color="red", linestyle="--", linewidth=1, label="target 100 MB")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("endpoints present")
    ax.set_ylabel("VmRSS MB")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_title("plugin memory")
    ax.legend(fontsize=8)


def _primitives(ax: Any, d: dict[str, Any]) -> None:
    names = list(d["stats_ms"])
    ax.barh(names, [d["stats_ms"][n]["median"] for n in names])
    ax.set_xlabel("ms (median)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"host primitives ({d['datapath']} datapath)")


def _profile(ax: Any, d: dict[str, Any]) -> None:
    methods = d["plugin_requests"]["methods"]
    names = list(methods)[:8]
    ax.barh(names, [methods[n]["ms_per_container"] for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("plugin ms per container (debug log)")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(f"where an ovs container's plugin time goes (n={d['containers']})")


_PANELS = {
    "lifecycle": _lifecycle,
    "published": _published,
    "driver": _driver,
    "burst": _burst,
    "datapath": _datapath,
    "restart": _restart,
    "memory": _memory,
    "recovery": _recovery,
    "primitives": _primitives,
    "profile": _profile,
}
