"""What is e2e-specific in the end-to-end suite; the machinery is the test bed (testbed/).

The suite's names (driver ``ovse2e``, label, prefix), the host it runs on (this machine) and
helpers bound to that host, the checks of what the machine needs, the plugin as the suite runs
it, and the records shown after the run.

Traffic rule: tests only ever send packets to addresses inside namespaces they create
themselves (Docker containers, the "outside host" namespace) or to loopback.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from docker_ovs_plugin import contract
from testbed.commands import CommandError
from testbed.daemons import OpenVSwitch
from testbed.docker import DockerEnv, Network, sweep
from testbed.docker import network_rm_refused_for_good as _refused_for_good
from testbed.host import LOCAL
from testbed.image import IMAGE_TAG, busybox_path
from testbed.outside import OutsideHost
from testbed.plugin import PluginProcess
from testbed.snapshot import Ownership, Snapshots
from testbed.suite import Suite

#: The suite's names. A dedicated driver name keeps a user's own ``ovs`` plugin untouched.
SUITE = Suite(
    driver=os.environ.get("OVS_E2E_DRIVER", "ovse2e"),
    label="docker-ovs-plugin-e2e",
    prefix="ovse2e",
    run_dir=Path("/run/docker-ovs-plugin-e2e"),
)
DRIVER_NAME = SUITE.driver
NAME_PREFIX = SUITE.prefix
#: The host the suite drives (the multi-host suite will have several).
HOST = LOCAL
PLUGIN_DIR = HOST.plugin_dir
OWNER = contract.OWNER

#: Kernel link name prefixes that the plugin (or the suite) creates.
LINK_PREFIXES = (
    contract.HOST_VETH_PREFIX,
    contract.CONTAINER_VETH_PREFIX,
    contract.BRIDGE_PREFIX,
    NAME_PREFIX,
)

#: Identifiers of everything the suite created this session; used only in shared-host mode.
OWNED = Ownership(NAME_PREFIX)

#: Faults of Docker itself a test worked around, and how (shown after the run).
DOCKER_WORKAROUNDS: list[str] = []

# Helpers bound to the suite's host.
run = HOST.run
docker = HOST.docker
ovs_vsctl = HOST.ovs_vsctl
ovs_external_ids = HOST.ovs_external_ids
ovs_bridge_exists = HOST.ovs_bridge_exists
ovs_ports = HOST.ovs_ports
ovs_port_to_bridge = HOST.ovs_port_to_bridge
link_exists = HOST.link_exists
link_info = HOST.link_info
link_ipv4_cidrs = HOST.link_ipv4_cidrs
unique_name = SUITE.unique_name
OVS = OpenVSwitch(HOST)


def shared_host() -> bool:
    """OVS_E2E_SHARED_HOST=1: tolerate other Docker/OVS users of this host.

    By default a test fails on *any* difference between the host state before and after
    it. On a machine where something else (another plugin instance, benchmarks) creates
    and removes networks at the same time, that is noise; in shared-host mode
    differences that name only objects the suite did not create are ignored.
    """
    return os.environ.get("OVS_E2E_SHARED_HOST", "").strip().lower() in {"1", "true", "yes"}


def _not_ours(difference: str) -> bool:
    return shared_host() and OWNED.foreign_only(difference)


SNAPSHOTS = Snapshots(HOST, LINK_PREFIXES, ignore=_not_ours)
take_snapshot = SNAPSHOTS.take
assert_snapshot_restored = SNAPSHOTS.assert_restored


def e2e_plugin(log_dir: Path) -> PluginProcess:
    """The plugin as the suite runs it, with quick background reconciliation (so the suite
    exercises it alongside every test)."""
    return PluginProcess(
        DRIVER_NAME,
        log_dir,
        SUITE.run_dir,
        host=HOST,
        extra_args=("--reconcile-interval", "2", "--reconcile-grace", "4"),
    )


def docker_env(plugin: PluginProcess, image: str = IMAGE_TAG) -> DockerEnv:
    return DockerEnv(plugin, SUITE, host=HOST, image=image, owned=OWNED)


def make_outside_host(workdir: Path) -> OutsideHost:
    """Namespace ``ovse2e-out`` (198.51.100.2/24, TCP server) linked to the host."""
    return OutsideHost.for_suite(SUITE, HOST, workdir)


def remove_leftovers() -> None:
    """Remove containers/networks an earlier interrupted run of the suite left behind."""
    sweep(HOST, SUITE)


def prime_plugin_chains() -> None:
    """Create and remove one network, so the plugin's own iptables chains and their jumps exist
    before the first snapshot: they are made with the first network and stay by design (on a
    new machine the first test would otherwise find them "left behind")."""
    name = unique_name("prime")
    HOST.docker("network", "create", "-d", DRIVER_NAME, name, timeout=60)
    HOST.docker("network", "rm", name, timeout=60)


def network_rm_refused_for_good(net: Network) -> bool:
    return _refused_for_good(HOST, net)


# --------------------------------------------------------------------------- requirements


def missing_requirement() -> str | None:
    """Why the e2e suite cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "the e2e suite needs root (docker, ovs-vsctl, ip netns, iptables)"
    reason: str | None = None
    tools = {
        "docker": HOST.docker_bin,
        **{t: t for t in ("ovs-vsctl", "ovs-appctl", "ip", "iptables")},
    }
    missing = [name for name, exe in tools.items() if not shutil.which(exe)]
    if missing:
        reason = f"not installed or not on PATH: {', '.join(missing)}"
    elif busybox_path() is None:
        reason = "a static busybox (Debian package busybox-static) is needed for the test image"
    elif importlib.util.find_spec("docker_ovs_plugin") is None:
        reason = (
            f"the docker_ovs_plugin package is not importable by {sys.executable} "
            "(run: pip install -e .)"
        )
    else:
        reason = _first_failing_probe()
    return reason


def _first_failing_probe() -> str | None:
    probes: list[tuple[list[str], str]] = [
        (HOST.docker_argv("info", "--format", "{{.ServerVersion}}"), "dockerd is not answering"),
        (
            ["ovs-vsctl", f"--db={HOST.ovsdb}", "--timeout=5", "show"],
            f"ovsdb-server is not answering at {HOST.ovsdb}",
        ),
        (["ovs-appctl", "-t", "ovs-vswitchd", "version"], "ovs-vswitchd is not answering"),
        (["ip", "netns", "list"], "'ip netns' does not work"),
        (["iptables", "-w", "5", "-S"], "iptables does not work"),
    ]
    for argv, reason in probes:
        try:
            proc = HOST.run(argv, check=False, timeout=20)
        except (CommandError, OSError) as exc:
            return f"{reason}: {exc}"
        if proc.returncode != 0:
            return f"{reason}: {(proc.stderr or proc.stdout).strip()}"
    return None
