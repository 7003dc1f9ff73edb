"""Helpers for the packaging tests (tests/e2e/test_packaging.py).

They build what packaging/ describes with its own scripts, and run it against the host's dockerd
and Open vSwitch: the plugin image (on a base image made from Debian's packages, no registry),
the managed plugin, the compose file and the systemd unit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import Container, DockerEnv, Network, PluginProcess, Suite, wait_until
from testbed.docker import remove_containers
from testbed.http import answers_activate
from testbed.procs import each_process

from .support import HOST, SUITE, docker, ovs_vsctl, run

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"

#: Driver names of the packaging tests (distinct from ovse2e/ovsbench), one per install way.
CONTAINER_DRIVER = "ovspkg"
MANAGED_PLUGIN = "ovspkg-managed:e2e"
#: The managed plugin pushed to a local registry and installed from it under this alias.
ALIAS_PLUGIN = "ovspkg-alias"
COMPOSE_DRIVER = "ovspkgc"
BUNDLED_DRIVER = "ovspkgb"
SYSTEMD_DRIVER = "ovspkgs"

#: Built once per session from this checkout and removed at its end.
PLUGIN_IMAGE = "docker-ovs-plugin-e2e/plugin:pkg"
OVS_IMAGE = "docker-ovs-plugin-e2e/openvswitch:pkg"
SYSTEMD_IMAGE = "docker-ovs-plugin-e2e/systemd:pkg"
#: Cached on the machine by tag (packaging/build-base-image.sh rebuilds only when missing).
BASE_IMAGE = os.environ.get("OVS_PKG_BASE_IMAGE", "docker-ovs-plugin-base:bookworm")
SYSTEMD_BASE_IMAGE = os.environ.get(
    "OVS_PKG_SYSTEMD_BASE_IMAGE", "docker-ovs-plugin-base:bookworm-systemd"
)
#: Containers the tests start themselves (removed at teardown, and at the next start).
PLUGIN_CONTAINER = "ovspkg-plugin"
SYSTEMD_CONTAINER = "ovspkg-systemd"
COMPOSE_PROJECTS = ("ovspkgc", "ovspkgb")

#: Capabilities a containerised plugin runs with (besides the host network namespace).
PLUGIN_CAPS = ("NET_ADMIN", "NET_RAW", "SYS_ADMIN")


def timed(label: str, timings: dict[str, float]) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def _timer() -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            timings[label] = round(time.monotonic() - started, 1)

    return _timer()


def script(
    path: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 900
) -> str:
    """Run one of packaging/'s scripts; its last stdout line (a tag or a name) is returned."""
    proc = subprocess.run(
        [str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{path.relative_to(REPO)} {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def serving_pid(driver: str) -> int:
    """The plugin process that serves `driver` (a containerised or managed plugin)."""
    wanted = ["serve", "--name", driver]
    for pid, cmd in each_process("cmdline"):
        args = [a.decode(errors="replace") for a in cmd.rstrip(b"\0").split(b"\0")]
        if any(args[i : i + 3] == wanted for i in range(len(args))):
            return pid
    raise AssertionError(f"no process serves {driver}")


def assert_shares_host_xtables_lock(pid: int) -> None:
    """Its iptables locks the host's /run/xtables.lock: the host's /run at /run/host, and
    XTABLES_LOCKFILE pointing into it (the file itself may not exist on an nft host)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"XTABLES_LOCKFILE=/run/host/xtables.lock" in environ, environ
    inside = os.stat(f"/proc/{pid}/root/run/host")
    host = os.stat("/run")
    assert (inside.st_dev, inside.st_ino) == (host.st_dev, host.st_ino), "not the host's /run"
    # Not recursively: the mounts under the host's /run (network namespaces among them) must
    # not be held by the plugin's mount namespace.
    mounts = [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
    below = [m for m in mounts if m.startswith("/run/host/")]
    assert not below, f"the host's /run is mounted recursively: {below[:5]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def remove_networks(driver: str) -> None:
    """Containers on, then the networks of, one driver name (leftovers of a killed run)."""
    nets = docker("network", "ls", "-q", "--filter", f"driver={driver}").stdout.split()
    for net in nets:
        info = json.loads(docker("network", "inspect", net).stdout)[0]
        cids = list((info.get("Containers") or {}).keys())
        if cids:
            docker("rm", "-f", *cids, check=False, timeout=90)
        docker("network", "rm", net, check=False, timeout=60)


@dataclass
class ExternalPlugin:
    """A plugin that the test does not run as a child process (container, managed, compose).

    DockerEnv only asks it to be running before cleanup; the test checks that itself.
    """

    name: str
    socket_path: Path | None = None

    def ensure_running(self) -> None:
        if self.socket_path is not None and not answers_activate(self.socket_path):
            raise AssertionError(f"plugin {self.name} does not answer on {self.socket_path}")


#: Label of the containers these tests start (not the other suites' label: a session of those
#: removes its labelled leftovers when it starts, which must not hit a packaging test running).
PKG_LABEL = "docker-ovs-plugin-pkg-e2e"


PKG_SUITE = Suite(
    driver=CONTAINER_DRIVER, label=PKG_LABEL, prefix="ovspkg", run_dir=SUITE.run_dir / "pkg"
)


class PkgDockerEnv(DockerEnv):
    """DockerEnv whose containers carry this suite's own label and name prefix."""

    def __init__(self, plugin: ExternalPlugin | PluginProcess, image: str, driver: str) -> None:
        super().__init__(plugin, PKG_SUITE, host=HOST, image=image, driver=driver)


def remove_labelled_containers() -> None:
    remove_containers(HOST, docker("ps", "-aq", "--filter", f"label={PKG_LABEL}").stdout.split())


def smoke(env: DockerEnv, subnet: str, gateway: str) -> tuple[Network, Container, Container]:
    """The end-to-end smoke test: a network, two containers that ping each other by name and
    their gateway. Returns them for further checks; DockerEnv.cleanup removes them."""
    net = env.create_network(subnet=subnet, gateway=gateway)
    a = env.run_container(net)
    b = env.run_container(net)
    env.assert_ping(a, b.name)
    env.assert_ping(b, a.name)
    env.assert_ping(a, gateway)
    return net, a, b


def network_driver(name: str) -> str:
    return docker("network", "inspect", "-f", "{{.Driver}}", name).stdout.strip()


def wait_status_counters(
    read_status: Any, net: Network, containers: Sequence[Container], timeout: float = 20.0
) -> dict[str, Any]:
    """The status JSON once every container's port shows packets both ways (ovs-vswitchd
    writes the counters into OVSDB every few seconds)."""
    last: dict[str, Any] = {}

    def counted() -> bool:
        nonlocal last
        last = read_status()
        nets = [n for n in last["networks"] if n["id"] == net.id]
        if len(nets) != 1:
            return False
        eps = {e["id"]: e for e in nets[0]["endpoints"]}
        for c in containers:
            stats = eps.get(c.endpoint_id, {}).get("statistics", {})
            if not (stats.get("rx_packets", 0) > 0 and stats.get("tx_packets", 0) > 0):
                return False
        return True

    try:
        wait_until(counted, timeout=timeout, interval=1.0, what="packet counters in status")
    except AssertionError as e:
        raise AssertionError(f"{e}\nlast status: {json.dumps(last, indent=1)}") from None
    return last


def check_status(
    report: dict[str, Any], driver: str, net: Network, cs: Sequence[Container]
) -> None:
    """`status --json` shows the network and, per container, what Docker and OVS say."""
    assert report["driver"] == driver
    nets = [n for n in report["networks"] if n["id"] == net.id]
    assert len(nets) == 1, report
    shown = nets[0]
    assert shown["name"] == net.name
    assert shown["driver"] == driver
    assert shown["bridge"] == net.bridge
    assert shown["subnets"] == [net.subnet]
    eps = {e["id"]: e for e in shown["endpoints"]}
    assert set(eps) == {c.endpoint_id for c in cs}, shown
    for c in cs:
        ep = eps[c.endpoint_id]
        assert ep["container"] == c.name
        assert ep["container_id"] == c.id
        assert ep["ipv4"].split("/")[0] == c.ip
        assert ep["mac"] == c.mac
        assert ep["port"] == c.host_veth
        ofport = ovs_vsctl("get", "Interface", c.host_veth, "ofport").stdout.strip()
        assert ep["ofport"] == int(ofport)
        assert ep["vlan"] is None
        assert ep["statistics"]["rx_packets"] > 0
        assert ep["statistics"]["tx_packets"] > 0


def check_status_table(text: str, net: Network, cs: Sequence[Container]) -> None:
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["NETWORK", "ID", "NAME"], text
    assert any(line.split()[:2] == [net.id[:12], net.name] for line in lines), text
    for c in cs:
        row = [line.split() for line in lines if c.host_veth in line.split()]
        assert len(row) == 1, text
        assert row[0][:4] == [c.name, net.name, c.ip, c.mac], text


def scrape(port: int) -> dict[str, float]:
    """Prometheus text format from 127.0.0.1:port, as {series: value}."""
    import urllib.request

    url = f"http://127.0.0.1:{port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def compose(
    project: str,
    env: Mapping[str, str],
    *args: str,
    timeout: float = 300,
    check: bool = True,
) -> str:
    proc = run(
        [
            "env",
            *(f"{k}={v}" for k, v in env.items()),
            "docker-compose",
            "--project-name",
            project,
            "--file",
            str(PACKAGING / "docker-compose.yml"),
            *args,
        ],
        timeout=timeout,
        check=check,
    )
    return proc.stdout + proc.stderr


def compose_down(project: str, env: Mapping[str, str]) -> None:
    compose(project, env, "down", "--volumes", "--timeout", "20", timeout=180, check=False)


def compose_containers(project: str) -> list[str]:
    return docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
    ).stdout.split()


plugin_socket = HOST.plugin_socket


def json_log_lines(text: str) -> list[dict[str, Any]]:
    """Every line must be one JSON object (--log-format json)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


UNIT_KEY = re.compile(r"^(?P<key>[A-Za-z]+)=(?P<value>.*)$")


def unit_values(text: str, key: str) -> list[str]:
    return [
        m.group("value") for m in map(UNIT_KEY.match, text.splitlines()) if m and m["key"] == key
    ]
