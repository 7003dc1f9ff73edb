"""Published-port lifecycle: `docker run --rm -p HOST:80 IMAGE true` on ovs vs bridge.

What one `-p` costs on top of the plain lifecycle: the plugin's DNAT and forward rules added in
ProgramExternalConnectivity and removed in Revoke, against Docker's own (its iptables rules and
docker-proxy). Both sides publish the same host port in turn, alternating, so neither gets a
warm or a cold slot more often.
"""

from __future__ import annotations

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

SIDES = ("ovs", "bridge")
HOST_PORT = 18480  # a port no test uses; free again as soon as each --rm container is gone


def _argv(net: str) -> list[str]:
    return HOST.docker_argv(
        "run", "--rm", "--net", net, "-p", f"{HOST_PORT}:80", "--label", LABEL, IMAGE, "true"
    )


def run_published(ctx: Context) -> ItemResult:
    rounds = max(20, ctx.settings.lifecycle_rounds) if not ctx.settings.quick else 6
    res = ItemResult("published")
    with network(DRIVER, "ovsp") as ovs, network("bridge", "brp") as br:
        nets = {"ovs": ovs.name, "bridge": br.name}
        samples = alternating_seconds("published", {s: _argv(nets[s]) for s in SIDES}, rounds)
    stats = {s: summary(v) for s, v in samples.items()}
    ratio = stats["ovs"]["median"] / stats["bridge"]["median"]
    lo, hi = ratio_ci(samples["ovs"], samples["bridge"])
    res.data = {
        "rounds": rounds,
        "host_port": HOST_PORT,
        "samples_s": samples,
        "stats_s": stats,
        "ratio_ovs_bridge": ratio,
        "ratio_ci95": [lo, hi],
    }

    def spread(s: str) -> str:
        st = stats[s]
        return f"{s} {st['median']:.3f} s (IQR {st['p25']:.3f}-{st['p75']:.3f})"

    res.rows.append(
        Row(
            "published",
            "ovs/bridge median ratio, -p HOST:80",
            ratio,
            "x",
            "<= 1.00",
            ratio <= 1.00,
            f"{spread('ovs')}, {spread('bridge')}; 95% CI {lo:.3f}-{hi:.3f}; n={rounds}",
        )
    )
    return res
