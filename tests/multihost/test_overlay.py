"""Overlay networks across the 3 Docker hosts of the session cluster, end to end: each test
makes its own uniquely named network (its own subnet) and removes everything it made."""

from __future__ import annotations

import json
import time

import pytest

from docker_ovs_plugin import contract
from testbed.commands import CommandError, wait_until
from testbed.multihost import Cluster

from .overlay import (
    OVERLAY_MTU,
    PROPAGATION,
    REMOVAL,
    Member,
    create_overlay,
    gone_everywhere,
    network_on,
    overlay_envs,
    overlay_network,
    switch_exists,
    switch_of,
    tcp_send,
    udp_send,
    wait_for_network,
)
from .support import DRIVER, TIMINGS

pytestmark = pytest.mark.multihost


def inspect(cluster: Cluster, n: int, name: str) -> dict[str, object]:
    out = cluster.host(n).host.docker("network", "inspect", name).stdout
    got: dict[str, object] = json.loads(out)[0]
    return got


def switch_gateway(cluster: Cluster, switch: str) -> str:
    out = cluster.nbctl("get", "Logical_Switch", switch, f'external_ids:"{contract.GATEWAY_KEY}"')
    return out.stdout.strip().strip('"')


def iface_of(m: Member) -> str:
    """The container's interface holding its overlay address."""
    for line in m.exec("ip", "-o", "-4", "addr").stdout.splitlines():
        fields = line.split()
        if f"{m.ip}/" in line:
            return fields[1]
    raise AssertionError(f"{m.name} has no interface with {m.ip}: {m.diagnostics()}")


def mtu_of(m: Member) -> int:
    return int(m.exec("cat", f"/sys/class/net/{iface_of(m)}/mtu").stdout.strip())


def test_created_once_removed_once(cluster: Cluster) -> None:
    envs = overlay_envs(cluster)
    subnet = "10.81.0.0/24"
    started = time.monotonic()
    net, _ = create_overlay(cluster, envs, 1, subnet, {"ovs.mtu": "1400"})
    name = net.name
    try:
        created = time.monotonic() - started
        for n in (2, 3):
            wait_for_network(cluster.host(n), name, timeout=PROPAGATION)
        TIMINGS["overlay create on h1: on h2 and h3 after (s)"] = time.monotonic() - started
        TIMINGS["  of which docker network create (s)"] = created
        first = inspect(cluster, 1, name)
        gateway = switch_gateway(cluster, switch_of(subnet))
        assert gateway == "10.81.0.1", gateway
        for n in (1, 2, 3):
            got = inspect(cluster, n, name)
            ipam = got["IPAM"]
            assert isinstance(ipam, dict)
            assert got["Driver"] == DRIVER, (n, got)
            assert ipam["Driver"] == DRIVER, (n, ipam)
            # The creator's Docker shows the subnet only (the gateway came from our IPAM);
            # the others were created with the cluster's gateway.
            configs = ipam["Config"]
            assert isinstance(configs, list) and len(configs) == 1, (n, ipam)
            assert configs[0]["Subnet"] == subnet, (n, ipam)
            assert configs[0].get("Gateway", gateway) == gateway, (n, ipam, gateway)
            assert got["Options"] == {"ovs.mode": "overlay", "ovs.mtu": "1400"}, (n, got)
            assert got["Options"] == first["Options"]
        assert switch_exists(cluster, switch_of(subnet))

        rm_started = time.monotonic()
        envs[3].remove_network(name)
        wait_until(lambda: gone_everywhere(cluster, name, switch_of(subnet)), timeout=REMOVAL,
                   interval=0.05, what=f"{name} gone everywhere")  # fmt: skip
        TIMINGS["overlay rm on h3: gone from h1, h2 and NB after (s)"] = (
            time.monotonic() - rm_started
        )
        assert not switch_exists(cluster, switch_of(subnet))
    finally:
        for n, env in envs.items():
            if network_on(cluster.host(n), name):
                env.docker("network", "rm", name, check=False)
        for env in envs.values():
            env.cleanup()


def test_containers_on_three_hosts_talk(cluster: Cluster) -> None:
    with overlay_network(cluster, "10.82.0.0/24") as ov:
        b = ov.run(2, extra=("--ip", "10.82.0.50"))
        c = ov.run(3)
        started = time.monotonic()
        a = ov.run(1)
        ran = time.monotonic() - started
        TIMINGS["docker run on h1 -> first reply from h2 (s)"] = b.first_reply(a.ip) + ran
        TIMINGS["  of which docker run -d (s)"] = ran
        assert b.ip == "10.82.0.50"
        members = [a, b, c]
        assert len({m.ip for m in members}) == 3, [m.ip for m in members]
        for m in members:
            assert mtu_of(m) == OVERLAY_MTU, m.name
            for other in members:
                if other is not m:
                    m.first_reply(other.ip, timeout=10)
        # The largest packet the overlay carries (1442 - 28 bytes of headers; Linux sets DF).
        a.exec("ping", "-c", "1", "-W", "2", "-s", str(OVERLAY_MTU - 28), c.ip)
        tcp_send(b, a, 7101)
        tcp_send(c, b, 7102)
        tcp_send(a, c, 7103)
        udp_send(b, a, 7201)
        udp_send(a, c, 7202)

        # The address another host holds is refused, and the message names that host.
        with pytest.raises(CommandError) as refused:
            ov.envs[3].run_container(ov.net, extra=("--ip", b.ip))
        err = refused.value.stderr
        assert f"address {b.ip} is already reserved by host h2" in err, err


def test_mtu_option_is_the_containers_mtu(cluster: Cluster) -> None:
    with overlay_network(cluster, "10.83.0.0/24", creator=2, options={"ovs.mtu": "1300"}) as ov:
        a, b = ov.run(1), ov.run(3)
        assert mtu_of(a) == 1300 and mtu_of(b) == 1300
        a.first_reply(b.ip)
