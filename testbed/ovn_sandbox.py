"""A private OVN northbound database (ovsdb-server with OVN's NB schema) for tests.

No ovn-northd: the northbound database alone is what the plugin writes. One standalone server
(`OvnNbSandbox`), or a Raft cluster of several on unix sockets (`OvnNbCluster`), each in a
temporary directory of its own with its own pid file, log and control socket. Only processes
started here, with a pid file in that directory, are ever stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from testbed.ovs_sandbox import search_path

SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-appctl")
_TIMEOUT = 10.0


def missing() -> str | None:
    """Why no sandbox can run here, or None."""
    path = search_path()
    absent = [t for t in TOOLS if shutil.which(t, path=path) is None]
    if absent:
        return f"OVSDB tools not found: {', '.join(absent)}"
    if not SCHEMA.is_file():
        return f"no OVN northbound schema at {SCHEMA} (Debian: ovn-common)"
    return None


def _run(*argv: str) -> str:
    env = {**os.environ, "PATH": search_path()}
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


class _Server:
    """One ovsdb-server on one database file, all its files under `directory`."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.db = directory / f"{name}.db"
        self.socket = directory / f"{name}.sock"
        self.pidfile = directory / f"{name}.pid"

    @property
    def remote(self) -> str:
        return f"unix:{self.socket}"

    def start(self) -> None:
        _run(
            "ovsdb-server",
            str(self.db),
            f"--remote=punix:{self.socket}",
            f"--pidfile={self.pidfile}",
            f"--unixctl={self.directory / (self.name + '.ctl')}",
            f"--log-file={self.directory / (self.name + '.log')}",
            "--detach",
            "--no-chdir",
            "-vconsole:off",
        )
        deadline = time.monotonic() + _TIMEOUT
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"ovsdb-server {self.name} did not open {self.socket}")
            time.sleep(0.01)

    def pid(self) -> int | None:
        """The server's pid, if it runs and is the one started here."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f"--pidfile={self.pidfile}".encode() in cmdline else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            self._wait_gone(pid)

    @staticmethod
    def _wait_gone(pid: int) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return
            if state == "Z":
                return
            time.sleep(0.01)


class OvnNbSandbox:
    """A standalone northbound database in a new temporary directory."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="ovn-nb-sandbox-"))
        self.server = _Server(self.directory, "ovnnb")

    @property
    def remote(self) -> str:
        return self.server.remote

    def start(self) -> None:
        try:
            _run("ovsdb-tool", "create", str(self.server.db), str(SCHEMA))
            self.server.start()
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            self.server.kill(signal.SIGTERM)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> OvnNbSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OvnNbCluster:
    """A Raft cluster of `size` northbound servers on unix sockets (raft links included)."""

    def __init__(self, size: int = 3) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="ovn-nb-cluster-"))
        self.servers = [_Server(self.directory, f"nb{i}") for i in range(size)]

    def _raft(self, server: _Server) -> str:
        return f"unix:{self.directory / (server.name + '.raft')}"

    @property
    def remote(self) -> str:
        """Every member, as a clustered database's clients are given it."""
        return ",".join(s.remote for s in self.servers)

    def start(self) -> None:
        try:
            first, *others = self.servers
            _run("ovsdb-tool", "create-cluster", str(first.db), str(SCHEMA), self._raft(first))
            first.start()
            for server in others:
                _run(
                    "ovsdb-tool",
                    "join-cluster",
                    str(server.db),
                    "OVN_Northbound",
                    self._raft(server),
                    self._raft(first),
                )
                server.start()
            self.wait_leader()
        except Exception:
            self.stop()
            raise

    def status(self, server: _Server) -> str:
        return _run(
            "ovs-appctl",
            "-t",
            str(self.directory / (server.name + ".ctl")),
            "cluster/status",
            "OVN_Northbound",
        )

    def leader(self) -> _Server | None:
        for server in self.servers:
            if server.pid() is None:
                continue
            with contextlib.suppress(RuntimeError):
                if "Role: leader" in self.status(server):
                    return server
        return None

    def wait_leader(self, timeout: float = _TIMEOUT) -> _Server:
        deadline = time.monotonic() + timeout
        while (leader := self.leader()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the NB cluster elected no leader")
            time.sleep(0.05)
        return leader

    def stop(self) -> None:
        try:
            for server in self.servers:
                server.kill(signal.SIGTERM)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> OvnNbCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
