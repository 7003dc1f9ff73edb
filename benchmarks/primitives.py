"""Primitives: the host operations one endpoint costs, timed alone on a bare bridge (context for
the lifecycle and driver figures, no target).

* veth pair create / delete through netlink (pyroute2, in process, as the plugin does);
* `ovs-vsctl add-port` / `del-port`, which wait until ovs-vswitchd has applied the change (as
  the plugin's OVSDB transactions do), against the same with `--no-wait` (OVSDB only): the
  difference is ovs-vswitchd's reconfiguration;
* deleting the port before the veth (the plugin's order) against the veth first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import PREFIX, ItemResult, Row, ovs_vsctl, summary
from benchmarks.context import Context
from testbed.commands import run

BRIDGE = f"{PREFIX}-prim"
HOST, PEER = f"{PREFIX}-p0", f"{PREFIX}-q0"


def _ms(action: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    action()
    return (time.perf_counter() - t0) * 1000


def _datapath_type() -> str:
    from docker_ovs_plugin.adapters import datapath  # noqa: PLC0415

    return datapath.detect()


def _filler(i: int) -> str:
    return f"{PREFIX}-f{i}"  # 13 characters at most for i < 10000; the peer adds "p"


def _batch(lines: list[str]) -> None:
    """`ip -force -batch -`: thousands of link operations in one process."""
    run(
        ["ip", "-force", "-batch", "-"],
        input_text="\n".join(lines) + "\n",
        timeout=600,
        check=False,
    )


def _cleanup(fillers: int = 0) -> None:
    ovs_vsctl("--if-exists", "del-br", BRIDGE)
    run(["ip", "link", "del", HOST], check=False)
    if fillers:
        _batch([f"link del {_filler(i)}" for i in range(fillers)])


def _at_scale(n: int, samples: int) -> dict[str, Any]:
    """add-port/del-port (waiting for ovs-vswitchd) with n other ports on the same bridge:
    how OVS itself scales, with no plugin involved."""
    _batch([f"link add {_filler(i)} type veth peer name {_filler(i)}p" for i in range(n)])
    _batch([f"link set {_filler(i)} up" for i in range(n)])
    t0 = time.perf_counter()
    args: list[str] = []
    for i in range(n):
        args += ["--", "add-port", BRIDGE, _filler(i)]
    run(["ovs-vsctl", "--timeout=600", *args], timeout=900)
    one_txn = time.perf_counter() - t0
    add, delete = [], []
    for _ in range(samples):
        run(["ip", "link", "add", HOST, "type", "veth", "peer", "name", PEER])
        run(["ip", "link", "set", HOST, "up"])
        add.append(_ms(lambda: ovs_vsctl("add-port", BRIDGE, HOST)))
        delete.append(_ms(lambda: ovs_vsctl("del-port", BRIDGE, HOST)))
        run(["ip", "link", "del", HOST])
    return {
        "ports": n,
        "all_ports_one_transaction_s": one_txn,
        "add_port_wait_ms": summary(add),
        "del_port_wait_ms": summary(delete),
    }


def run_primitives(ctx: Context) -> ItemResult:
    from pyroute2 import IPRoute  # noqa: PLC0415 (the plugin's own dependency)

    res = ItemResult("primitives")
    dp = _datapath_type()
    n = ctx.settings.primitives_samples
    keys = (
        "veth_create",
        "veth_delete",
        "add_port_wait",
        "del_port_wait",
        "add_port_nowait",
        "del_port_nowait",
        "del_port_wait_after_veth_gone",
        "ovs_vsctl_floor",
    )
    t: dict[str, list[float]] = {k: [] for k in keys}
    _cleanup()
    try:
        ovs_vsctl("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, f"datapath_type={dp}")
        with IPRoute() as ipr:

            def create() -> None:
                ipr.link("add", ifname=HOST, kind="veth", peer={"ifname": PEER})
                ipr.link("set", index=ipr.link_lookup(ifname=HOST)[0], state="up")

            def delete() -> None:
                ipr.link("del", index=ipr.link_lookup(ifname=HOST)[0])

            def settle() -> None:
                time.sleep(0.15)  # let ovs-vswitchd catch up after a --no-wait change

            for _ in range(n):
                t["ovs_vsctl_floor"].append(
                    _ms(lambda: ovs_vsctl("--no-wait", "get", "Open_vSwitch", ".", "ovs_version"))
                )
                # the plugin's order: veth, add port ... delete port, delete veth
                t["veth_create"].append(_ms(create))
                t["add_port_wait"].append(_ms(lambda: ovs_vsctl("add-port", BRIDGE, HOST)))
                t["del_port_wait"].append(_ms(lambda: ovs_vsctl("del-port", BRIDGE, HOST)))
                t["veth_delete"].append(_ms(delete))
                # OVSDB only, ovs-vswitchd not waited for
                create()
                t["add_port_nowait"].append(
                    _ms(lambda: ovs_vsctl("--no-wait", "add-port", BRIDGE, HOST))
                )
                settle()
                t["del_port_nowait"].append(
                    _ms(lambda: ovs_vsctl("--no-wait", "del-port", BRIDGE, HOST))
                )
                settle()
                # veth first, then the port
                ovs_vsctl("add-port", BRIDGE, HOST)
                delete()
                t["del_port_wait_after_veth_gone"].append(
                    _ms(lambda: ovs_vsctl("del-port", BRIDGE, HOST))
                )
        scale_n = max(ctx.settings.driver_levels)
        scale = _at_scale(scale_n, max(5, n // 3))
    finally:
        _cleanup(fillers=max(ctx.settings.driver_levels))
    stats = {k: summary(v) for k, v in t.items()}
    res.data = {"datapath": dp, "samples": n, "stats_ms": stats, "at_scale": scale}
    med = {k: stats[k]["median"] for k in keys}
    floor = med["ovs_vsctl_floor"]
    for key, label in (
        ("veth_create", "veth pair create+up (netlink)"),
        ("veth_delete", "veth pair delete (netlink)"),
        ("add_port_wait", "ovs-vsctl add-port, waits for vswitchd"),
        ("add_port_nowait", "ovs-vsctl --no-wait add-port"),
        ("del_port_wait", "ovs-vsctl del-port, waits for vswitchd"),
        ("del_port_nowait", "ovs-vsctl --no-wait del-port"),
        ("del_port_wait_after_veth_gone", "del-port (waits) after the veth is gone"),
        ("ovs_vsctl_floor", "ovs-vsctl process floor (a read)"),
    ):
        st = stats[key]
        extra = ""
        if key.startswith(("add_port", "del_port")):
            extra = f"; {st['median'] - floor:.1f} ms above the ovs-vsctl floor"
        res.rows.append(
            Row(
                "primitives",
                label,
                st["median"],
                "ms",
                "",
                None,
                f"{dp} datapath; p90 {st['p90']:.1f}, max {st['max']:.1f} ms, n={n}{extra}",
            )
        )
    for key, label in (("add_port_wait_ms", "add-port"), ("del_port_wait_ms", "del-port")):
        st = scale[key]
        alone = med[f"{key.removesuffix('_ms')}"]
        res.rows.append(
            Row(
                "primitives",
                f"ovs-vsctl {label} (waits) with {scale_n} ports on the bridge",
                st["median"],
                "ms",
                "",
                None,
                f"{st['median'] / alone:.1f}x the figure with no other port; p90 "
                f"{st['p90']:.1f} ms, n={st['n']}; all {scale_n} ports added in one "
                f"transaction: {scale['all_ports_one_transaction_s']:.2f} s",
            )
        )
    return res
