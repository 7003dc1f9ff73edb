"""One host a suite drives: how to reach its dockerd, its Open vSwitch and its plugin sockets,
and the network namespace its commands run in.

:data:`LOCAL` is this machine's dockerd and Open vSwitch. A host in network namespaces (see
:mod:`testbed.multihost`) names its namespace (kernel state, ``ip``/``iptables``, is read and
changed through ``ip netns exec NS``), the sockets of its own dockerd and ovsdb-server (reached
from anywhere, so docker and ovs-vsctl are not wrapped), the directory of its Open vSwitch's
runtime files (OpenFlow ``BRIDGE.mgmt`` and ``*.ctl`` sockets, for ovs-ofctl/ovs-appctl) and
the mount namespace its dockerd and plugin share (their own /run/docker/plugins).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.commands import run


def default_docker_bin() -> str:
    """The docker client: $OVS_E2E_DOCKER, else Debian's, else the first on PATH.

    Debian's client matches Debian's dockerd; a newer client first on PATH refuses some flags
    (--mac-address per network needs API 1.44) against a 20.10 daemon.
    """
    debian = "/usr/bin/docker"
    fallback = debian if os.access(debian, os.X_OK) else shutil.which("docker") or "docker"
    return os.environ.get("OVS_E2E_DOCKER") or fallback


@dataclass(frozen=True)
class Host:
    name: str = "local"
    docker_bin: str = field(default_factory=default_docker_bin)
    #: dockerd's socket (``docker -H``); None: the client's default.
    docker_host: str | None = None
    ovsdb: str = "unix:/var/run/openvswitch/db.sock"
    plugin_dir: Path = Path("/run/docker/plugins")
    #: Network namespace of the host's kernel state; None: this machine's.
    netns: str | None = None
    #: OVS_RUNDIR/OVN_RUNDIR of the host's own Open vSwitch and OVN; None: the system's.
    ovs_rundir: Path | None = None
    #: Mount namespace (a bind-mounted nsfs file) its dockerd and plugin run in; None: ours.
    mountns: Path | None = None

    # -- commands -------------------------------------------------------------------------

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as it runs on this host (inside its namespace, if it has one)."""
        argv = [*self._env(), *argv]
        if self.netns is None:
            return argv
        return ["ip", "netns", "exec", self.netns, *argv]

    def daemon_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as the host's dockerd and plugin run: in its network and mount namespaces.

        nsenter, not ``ip netns exec``: the latter remounts /sys, which hides the cgroup
        mounts dockerd needs.
        """
        if self.mountns is None or self.netns is None:
            return self.argv(argv)
        return [
            "nsenter",
            f"--mount={self.mountns}",
            f"--net=/run/netns/{self.netns}",
            "--",
            *self._env(),
            *argv,
        ]

    def _env(self) -> list[str]:
        # Without these, ovs-ofctl/ovs-appctl/ovn-controller would find the system's sockets.
        if self.ovs_rundir is None:
            return []
        return ["env", f"OVS_RUNDIR={self.ovs_rundir}", f"OVN_RUNDIR={self.ovs_rundir}"]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(self.argv(argv), check=check, timeout=timeout, input_text=input_text)

    def docker_argv(self, *args: str) -> list[str]:
        host = ["-H", self.docker_host] if self.docker_host else []
        return [self.docker_bin, *host, *args]

    def docker(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return run(self.docker_argv(*args), check=check, timeout=timeout)

    def ovs_vsctl(
        self, *args: str, check: bool = True, wait: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """ovs-vsctl against this host's OVSDB; it gives up after ``wait`` seconds itself."""
        argv = ["ovs-vsctl", f"--db={self.ovsdb}", f"--timeout={wait:.0f}", *args]
        return run(argv, check=check, timeout=wait + 10)

    def plugin_socket(self, driver: str) -> Path:
        return self.plugin_dir / f"{driver}.sock"

    # -- Open vSwitch ---------------------------------------------------------------------

    def ovs_external_ids(self, table: str, record: str) -> dict[str, str]:
        """external_ids of one OVS row, as a plain dict."""
        out = self.ovs_vsctl("--format=json", "--columns=external_ids", "list", table, record)
        data = json.loads(out.stdout)["data"]
        if not data:
            raise AssertionError(f"no {table} row {record!r} in OVS")
        kind, pairs = data[0][0]
        assert kind == "map", data
        return {str(k): str(v) for k, v in pairs}

    def ovs_bridge_exists(self, bridge: str) -> bool:
        return self.ovs_vsctl("br-exists", bridge, check=False).returncode == 0

    def ovs_ports(self, bridge: str) -> list[str]:
        return self.ovs_vsctl("list-ports", bridge).stdout.split()

    def ovs_port_to_bridge(self, port: str) -> str | None:
        proc = self.ovs_vsctl("port-to-br", port, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    # -- kernel links ---------------------------------------------------------------------

    def link_names(self) -> list[str]:
        links = json.loads(self.run(["ip", "-j", "link", "show"]).stdout)
        return [str(link["ifname"]) for link in links]

    def link_exists(self, name: str) -> bool:
        return self.run(["ip", "link", "show", "dev", name], check=False).returncode == 0

    def link_info(self, name: str) -> dict[str, Any]:
        links: list[dict[str, Any]] = json.loads(
            self.run(["ip", "-j", "addr", "show", "dev", name]).stdout
        )
        assert len(links) == 1, links
        return links[0]

    def link_ipv4_cidrs(self, name: str) -> list[str]:
        return [
            f"{a['local']}/{a['prefixlen']}"
            for a in self.link_info(name).get("addr_info", [])
            if a.get("family") == "inet"
        ]


#: This machine: its dockerd, its Open vSwitch, /run/docker/plugins.
LOCAL = Host()
