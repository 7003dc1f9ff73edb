"""The daemons a test needs on a host: dockerd and Open vSwitch (stop, start, ask)."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testbed.commands import wait_until
from testbed.host import LOCAL, Host
from testbed.procs import each_process

OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"


def systemd_host() -> bool:
    return Path("/run/systemd/system").is_dir()


@dataclass(frozen=True)
class OpenVSwitch:
    """ovsdb-server and ovs-vswitchd of a host (systemd units, else Debian's ovs-ctl)."""

    host: Host = LOCAL
    rundir: Path = Path("/var/run/openvswitch")

    def ctl(self, *args: str, timeout: float = 120.0) -> None:
        self.host.run([OVS_CTL, *args], timeout=timeout)

    def vswitchd_pid(self) -> int | None:
        try:
            pid = int((self.rundir / "ovs-vswitchd.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def vswitchd_answers(self) -> bool:
        argv = ["ovs-appctl", "-t", "ovs-vswitchd", "version"]
        return self.host.run(argv, check=False).returncode == 0

    def ovsdb_answers(self) -> bool:
        return self.host.ovs_vsctl("show", check=False, wait=3).returncode == 0

    def running(self) -> bool:
        return self.ovsdb_answers() and self.vswitchd_answers()

    def start_vswitchd(self) -> None:
        if systemd_host():
            self.host.run(["systemctl", "start", "ovs-vswitchd"], timeout=120)
        else:
            self.ctl("--no-ovsdb-server", "start", "--system-id=random")

    def start_ovsdb_server(self) -> None:
        if systemd_host():
            self.host.run(["systemctl", "start", "ovsdb-server"], timeout=120)
        else:
            self.ctl("--no-ovs-vswitchd", "start", "--system-id=random")

    def stop(self) -> None:
        """Stop both daemons."""
        if systemd_host():
            self.host.run(["systemctl", "stop", "openvswitch-switch"], timeout=120)
        else:
            self.ctl("stop")

    def start(self) -> None:
        """Start both daemons and wait until ovs-vswitchd answers."""
        if systemd_host():
            self.host.run(["systemctl", "start", "openvswitch-switch"], timeout=120)
        else:
            self.ctl("start", "--system-id=random", timeout=180)
        self.host.ovs_vsctl("wait-until", "Open_vSwitch", ".", wait=30)
        wait_until(self.vswitchd_answers, timeout=60, what="the host's ovs-vswitchd")


DEFAULT_EXEC_ROOT = "/var/run/docker"


def managed_containerd(exec_root: str = DEFAULT_EXEC_ROOT) -> list[int]:
    """The containerd processes a dockerd of that exec root started itself."""
    config = f"{exec_root}/containerd/".encode()
    return [
        pid
        for pid, cmdline in each_process("cmdline")
        if cmdline.startswith(b"containerd\0") and config in cmdline
    ]


def default_pidfile() -> Path:
    """The dockerd the suites drive: $OVS_E2E_DOCKERD_PIDFILE (testbed.docker_release sets it
    for a release run in place of the host's), else the host's."""
    return Path(os.environ.get("OVS_E2E_DOCKERD_PIDFILE") or "/var/run/docker.pid")


class Dockerd:
    """Stop and start a host's dockerd (as scripts/setup.sh started it, or via systemd).

    Remembers the command line it found, to start it again the same way.
    """

    def __init__(
        self,
        host: Host = LOCAL,
        log: Path = Path("/var/log/dockerd-e2e.log"),
        pidfile: Path | None = None,
    ) -> None:
        self.host = host
        self.systemd = systemd_host()
        # By its pid file, not by name: other dockerds (the multi-host suite's, one per
        # namespace host) may run beside the host's own.
        self.pidfile = pidfile or default_pidfile()
        self.argv = self.cmdline()
        self.log = log
        self.exec_root = DEFAULT_EXEC_ROOT
        for a in (a.decode() for a in self.argv):
            if a.startswith("--exec-root="):
                self.exec_root = a.split("=", 1)[1]

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            return None
        return pid if comm == "dockerd" else None

    def pid(self) -> int:
        pid = self._live_pid()
        assert pid is not None, f"no running dockerd recorded in {self.pidfile}"
        return pid

    def cmdline(self) -> list[bytes]:
        """The running dockerd's arguments."""
        return Path(f"/proc/{self.pid()}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")

    def stop(self) -> None:
        if self.systemd:
            self.host.run(["systemctl", "stop", "docker.service", "docker.socket"], timeout=120)
            return
        pid = self.pid()
        live_restore = b"--live-restore" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=90, what="dockerd to stop")
        if not live_restore:
            # dockerd's own containerd holds its database lock a moment longer; a new dockerd
            # started before it is gone times out waiting for containerd and exits.
            wait_until(
                lambda: not managed_containerd(self.exec_root),
                timeout=60,
                what="dockerd's containerd to stop",
            )

    def start(self, *extra: str) -> None:
        """Start dockerd as found, without --live-restore, with ``extra`` flags."""
        if self.systemd:
            assert not extra, "extra dockerd flags need a non-systemd host"
            self.host.run(["systemctl", "start", "docker.service"], timeout=120)
        else:
            argv = [a.decode() for a in self.argv]
            argv = [a for a in argv if a != "--live-restore"] + list(extra)
            with self.log.open("ab") as log:
                # setsid -f: dockerd is nobody's child here, as after scripts/setup.sh.
                subprocess.run(
                    self.host.argv(["setsid", "-f", *argv]),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    check=True,
                    timeout=30,
                )
        wait_until(
            lambda: self.host.docker("info", check=False).returncode == 0,
            timeout=90,
            what="dockerd to answer",
        )

    def running(self) -> bool:
        return self._live_pid() is not None
