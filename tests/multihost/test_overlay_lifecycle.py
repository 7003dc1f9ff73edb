"""An overlay network's life across hosts beyond create once / remove once: a host whose
plugin was down when it was created, two hosts creating one name at the same moment, and a
`docker network rm` on a host while containers on other hosts use the network."""

from __future__ import annotations

import threading
import time

import pytest

from testbed.commands import wait_until
from testbed.docker import Network, network_ipam
from testbed.multihost import Cluster

from .overlay import (
    PROPAGATION,
    REMOVAL,
    Overlay,
    gone_everywhere,
    network_on,
    overlay_envs,
    overlay_network,
    switch_exists,
    switch_of,
    wait_for_network,
)
from .support import DRIVER, OURS, SUITE, TIMINGS

pytestmark = pytest.mark.multihost


def subnet_on(cluster: Cluster, n: int, name: str) -> str | None:
    proc = cluster.host(n).host.docker(
        "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", name, check=False
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def test_a_host_whose_plugin_was_down_catches_up_when_it_starts(cluster: Cluster) -> None:
    h3 = cluster.host(3)
    h3.kill("plugin")
    try:
        with overlay_network(cluster, "10.83.0.0/24") as ov:
            wait_for_network(cluster.host(2), ov.name)
            time.sleep(PROPAGATION)
            assert not network_on(h3, ov.name), "created on h3 without its plugin"
            started = time.monotonic()
            h3.start("plugin")
            wait_for_network(h3, ov.name, timeout=10)
            TIMINGS["plugin down at create: network on h3 after its start (s)"] = (
                time.monotonic() - started
            )
            a, c = ov.run(1), ov.run(3)
            c.first_reply(a.ip)
    finally:
        if not h3.lever("plugin").running():
            h3.start("plugin")


def test_two_hosts_creating_one_name_at_once_end_with_one_network(cluster: Cluster) -> None:
    """h1 and h2 create the same name with different subnets at the same moment: every host
    ends with one network of that name on one subnet, and the other subnet's switch is gone."""
    envs = overlay_envs(cluster)
    name = SUITE.unique_name("race")
    subnets = {1: "10.84.0.0/24", 2: "10.85.0.0/24"}
    go = threading.Barrier(2)
    results: dict[int, int] = {}

    def create(n: int) -> None:
        go.wait(timeout=30)
        _, proc = envs[n].try_create_network(
            name, subnet=subnets[n], options={"ovs.mode": "overlay"},
            extra=("--ipam-driver", DRIVER),
        )  # fmt: skip
        results[n] = proc.returncode
        OURS.add(*proc.stdout.split())

    try:
        threads = [threading.Thread(target=create, args=(n,)) for n in subnets]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        assert results == {1: 0, 2: 0}, results  # Docker created both: the plugins converge
        started = time.monotonic()

        def one_network() -> bool:
            got = {subnet_on(cluster, n, name) for n in (1, 2, 3)}
            return len(got) == 1 and got <= set(subnets.values())

        wait_until(one_network, timeout=REMOVAL, interval=0.1,
                   what=f"{name} on one subnet on every host")  # fmt: skip
        TIMINGS["same name created on h1 and h2 at once: one network after (s)"] = (
            time.monotonic() - started
        )
        winner = subnet_on(cluster, 1, name)
        [loser] = [s for s in subnets.values() if s != winner]
        wait_until(lambda: not switch_exists(cluster, switch_of(loser)), timeout=REMOVAL,
                   interval=0.1, what=f"the losing subnet {loser}'s switch gone")  # fmt: skip
        assert switch_exists(cluster, switch_of(str(winner)))
        # The loser's replacement is the cluster's network: its containers reach the others.
        got_subnet, gateway = network_ipam(cluster.host(1).host, name)
        net = Network(name=name, id="", bridge="", subnet=got_subnet, gateway=gateway)
        ov = Overlay(cluster, net, 1, envs)
        members = [ov.run(n) for n in (1, 2, 3)]
        for m in members[1:]:
            members[0].first_reply(m.ip)
    finally:
        errors: list[str] = []
        for n in (3, 2, 1):
            errors += envs[n].cleanup()
        for n in (1, 2, 3):  # the replaced or caught-up copies, not in any env's list
            if network_on(cluster.host(n), name):
                envs[n].docker("network", "rm", name, check=False)
        switches = [switch_of(s) for s in subnets.values()]
        wait_until(lambda: all(gone_everywhere(cluster, name, sw) for sw in switches),
                   timeout=REMOVAL, interval=0.1, what=f"{name} gone, both subnets")  # fmt: skip
        assert not errors, errors


def test_rm_while_another_host_uses_it_removes_it_on_that_host_only(cluster: Cluster) -> None:
    """Docker cannot be refused a `network rm` (it only logs a driver's error): the network
    goes on this host only, the plugin says which hosts' containers keep it, those go on
    talking, and an rm there once they are gone removes it everywhere."""
    h1 = cluster.host(1)
    with overlay_network(cluster, "10.86.0.0/24") as ov:
        b, c = ov.run(2), ov.run(3)
        b.first_reply(c.ip)
        mark = h1.plugin.log_mark()
        ov.envs[1].remove_network(ov.name)
        wait_until(lambda: "removed on this host only" in h1.plugin.log_since(mark),
                   timeout=PROPAGATION, interval=0.05, what="h1's warning")  # fmt: skip
        said = h1.plugin.log_since(mark)
        assert "h2 (1 container), h3 (1 container)" in said, said
        time.sleep(PROPAGATION)  # the sync's passes meanwhile: neither undone nor spread
        assert not network_on(h1, ov.name)
        assert network_on(cluster.host(2), ov.name) and network_on(cluster.host(3), ov.name)
        assert switch_exists(cluster, ov.switch)
        c.first_reply(b.ip)
        ov.remove(b)
        ov.remove(c)
        started = time.monotonic()
        ov.envs[2].docker("network", "rm", ov.name)
        wait_until(lambda: gone_everywhere(cluster, ov.name, ov.switch), timeout=REMOVAL,
                   interval=0.05, what=f"{ov.name} gone everywhere")  # fmt: skip
        TIMINGS["rm on the last user host: gone everywhere after (s)"] = time.monotonic() - started
