"""Command line of the benchmark suite: `python -m benchmarks [--quick] [--only ITEMS]`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import dockerenv, driver
from benchmarks.burst import run_burst
from benchmarks.common import REPO, ItemResult, log, machine_info
from benchmarks.context import Context, Settings
from benchmarks.datapath import remove_bare, run_datapath
from benchmarks.lifecycle import run_lifecycle
from benchmarks.multihost import run_multihost
from benchmarks.plugin import BenchPlugin
from benchmarks.primitives import run_primitives
from benchmarks.profiling import run_profile
from benchmarks.published import run_published
from benchmarks.recovery import OVS, other_test_runs, run_recovery
from benchmarks.report import markdown, plot, table, write_json

#: Run order: the plugin restart comes after the items that need a steady plugin, and the
#: ovs-vswitchd restart comes last, once the 1000-endpoint population is gone.
ITEMS: dict[str, Callable[[Context], ItemResult]] = {
    "primitives": run_primitives,
    "lifecycle": run_lifecycle,
    "published": run_published,
    "profile": run_profile,
    "burst": run_burst,
    "datapath": run_datapath,
    "driver": driver.run_driver,
    "memory": driver.run_memory,
    "restart": driver.run_restart,
    "recovery": run_recovery,
    "multihost": run_multihost,  # a 3-host cluster in namespaces: none of the above is disturbed
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="docker-ovs-plugin benchmarks: each item measures both sides of its "
        "comparison in the same run, alternating them. Needs root, dockerd and Open vSwitch.",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: few repetitions, 10/100 endpoints only"
    )
    p.add_argument("--only", default="", help=f"comma-separated items among {','.join(ITEMS)}")
    p.add_argument("--skip", default="", help="comma-separated items to leave out")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench-results",
        help="results folder (default: bench-results/)",
    )
    p.add_argument("--rounds", type=int, help="lifecycle rounds (default 25, quick 6)")
    p.add_argument("--levels", help="endpoint populations, e.g. 10,100,1000")
    p.add_argument("--samples", type=int, help="driver cycles per level (default 150)")
    p.add_argument("--burst", type=int, help="containers per burst (default 100, quick 30)")
    p.add_argument("--iperf-seconds", type=int, help="seconds per iperf3 run (default 6)")
    p.add_argument(
        "--iperf-rounds", type=int, help="iperf3 rounds per data path side (default 3, quick 1)"
    )
    p.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="MIN",
        help="minutes to wait for running test suites and other plugin instances to end "
        "before starting (default 10; 0: do not wait)",
    )
    return p


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.make(args.quick)
    if args.rounds:
        s.lifecycle_rounds = args.rounds
    if args.levels:
        s.driver_levels = tuple(sorted(int(x) for x in args.levels.split(",")))
    if args.samples:
        s.driver_samples = args.samples
    if args.burst:
        s.burst_containers = args.burst
    if args.iperf_seconds:
        s.iperf_seconds = args.iperf_seconds
    if args.iperf_rounds:
        s.iperf_rounds = args.iperf_rounds
    return s


def _selected(args: argparse.Namespace) -> list[str]:
    only = [x for x in args.only.split(",") if x]
    skip = {x for x in args.skip.split(",") if x}
    unknown = [x for x in (*only, *skip) if x not in ITEMS]
    if unknown:
        raise SystemExit(f"unknown items {unknown}; known: {', '.join(ITEMS)}")
    return [name for name in ITEMS if (not only or name in only) and name not in skip]


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _wait_quiet(minutes: float) -> list[str]:
    """Wait for test suites and other plugin instances to end; returns those still running."""
    deadline = time.monotonic() + minutes * 60
    while (busy := other_test_runs()) and time.monotonic() < deadline:
        log(f"waiting for {busy[0]} to end (it and this suite would disturb each other)")
        time.sleep(15)
    for b in busy:
        log(f"WARNING: still running, figures may be disturbed: {b}")
    return busy


def _run_items(
    ctx: Context, names: list[str], meta: dict[str, Any], results: list[ItemResult]
) -> bool:
    """Run the selected items in order, cleaning up whatever happens; True if interrupted."""
    plugin, out = ctx.plugin, ctx.out_dir
    try:
        dockerenv.ensure_image()
        plugin.reap_orphan()
        plugin.start()
        dockerenv.sweep()
        driver.sweep(plugin)
        remove_bare()
        for name in names:
            log(f"== {name}")
            if not plugin.running:
                plugin.start()
            t0 = time.perf_counter()
            vswitchd_before = OVS.vswitchd_pid()
            try:
                result = ITEMS[name](ctx)
            except Exception as e:
                traceback.print_exc()
                result = ItemResult(name, error=f"{type(e).__name__}: {e}")
                # State this suite created can vanish under it when another plugin instance,
                # a `doctor --fix` or a test suite cleans up the host: name who was running.
                result.data["concurrent_processes"] = other_test_runs(plugin.pid)
            result.seconds = time.perf_counter() - t0
            if name != "recovery" and OVS.vswitchd_pid() != vswitchd_before:
                # Someone else restarted ovs-vswitchd meanwhile: say so next to the figures.
                note = "DISTURBED: ovs-vswitchd was restarted by another process during this item"
                log(note)
                result.data["disturbed"] = note
                for row in result.rows:
                    row.detail = f"{note}; {row.detail}"
            results.append(result)
            if name == "restart" or (name == "memory" and "restart" not in names):
                result.data["population_teardown"] = driver.close_population(ctx)
            log(f"   {name} took {result.seconds:.0f} s")
            write_json(out / "results.json", meta, results)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'SIGINT'}): cleaning up")
        return True
    finally:
        # A second ^C must not cut the cleanup short (every command in it has a timeout).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            teardown = driver.close_population(ctx)
            if teardown and results:
                results[-1].data["population_teardown"] = teardown
            dockerenv.sweep()
            remove_bare()
        finally:
            plugin.stop()
    return False


def _report(out: Path, meta: dict[str, Any], results: list[ItemResult], plugin_log: Path) -> None:
    write_json(out / "results.json", meta, results)
    (out / "results.md").write_text(markdown(results, meta["machine"]))
    plot(out / "results.png", meta, results)
    m = meta["machine"]
    print()
    print(
        f"docker-ovs-plugin benchmarks on {m['hostname']}: {m['cpu']}, {m['cores']} cores, "
        f"{m['virtualization']}; OVS {m['ovs']} ({m['datapath']} datapath); Docker "
        f"{m['docker_server']}; {meta['seconds']:.0f} s" + (" [quick]" if meta["quick"] else "")
    )
    print(table(results))
    print(
        f"\nwritten: {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}, "
        f"{plugin_log}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root (docker, ovs-vsctl, ip netns, iptables)")
    names = _selected(args)
    settings = _settings(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    others = _wait_quiet(args.wait)

    from docker_ovs_plugin.adapters import datapath  # noqa: PLC0415 (after the root check)

    plugin = BenchPlugin.create(out)
    plugin_log = out / "plugin.log"
    plugin_log.unlink(missing_ok=True)
    code = plugin.snapshot_source(REPO / "src" / "docker_ovs_plugin", out / "plugin-src")
    ctx = Context(settings=settings, plugin=plugin, out_dir=out)
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": settings.quick,
        "settings": vars(settings),
        "items_selected": names,
        "concurrent_processes": others,
        "machine": machine_info(datapath.detect()),
        "plugin_source_sha256": code,
    }
    results: list[ItemResult] = []
    started = time.perf_counter()
    interrupted = _run_items(ctx, names, meta, results)
    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["interrupted"] = interrupted
    _report(out, meta, results, plugin_log)
    failed = [r for r in results if r.error]
    return 130 if interrupted else (1 if failed else 0)
