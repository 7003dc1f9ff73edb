"""A private Open vSwitch (ovsdb-server and ovs-vswitchd) in a directory of its own, for tests.

The daemons come from ovsdbapp's own test fixture (``ovsdbapp.venv.OvsVenvFixture``, shipped
with the ovsdbapp we depend on; it uses ``fixtures``, also a dependency of ovsdbapp). It creates
the database with ``ovsdb-tool``, starts both daemons with OVS_RUNDIR, OVS_DBDIR, OVS_LOGDIR and
OVS_SYSCONFDIR pointing at the directory (socket, pidfiles, logs and ``*.ctl`` all land there)
and runs ovs-vswitchd with ``--enable-dummy=override``: every datapath and network device is
simulated inside ovs-vswitchd, so bridges and ports never reach the kernel nor the host's own
Open vSwitch in /var/run/openvswitch. OpenFlow works as usual (``DIR/BRIDGE.mgmt``).

What this class adds: its stop waits until both daemons are gone before removing the directory
(the fixture only sends SIGTERM), it always stops and removes what it started, also when the
start fails half-way, and it runs the OVS tools with the same environment.

Several sandboxes can run at once, each in its own directory. Running one inside a network
namespace (the multi-host suite) is not built yet: the daemons are started by
:meth:`_command`'s argument lists, which is where an ``ip netns exec NAME`` would go.
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
from typing import Any

from ovsdbapp import venv

from testbed import procs

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl")
# Debian installs the daemons in /usr/sbin, which a non-login PATH may lack.
_SBIN = ("/usr/sbin", "/sbin")
_STOP_TIMEOUT = 5.0


def search_path() -> str:
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join([*entries, *(d for d in _SBIN if d not in entries)])


def missing() -> str | None:
    """Why no sandbox can run here (a tool or the schema is missing), or None."""
    path = search_path()
    absent = [t for t in TOOLS if shutil.which(t, path=path) is None]
    if absent:
        return f"Open vSwitch tools not found: {', '.join(absent)}"
    if not SCHEMA.is_file():
        return f"no Open vSwitch schema at {SCHEMA}"
    return None


class OvsSandbox:
    """ovsdb-server and ovs-vswitchd (dummy datapath) whose files all live in `directory`.

    `directory` must not exist yet (it is created, and removed at stop, so nothing of the
    caller's is ever deleted); by default a new temporary one.
    """

    def __init__(self, directory: Path | None = None, *, timeout: float = 10.0) -> None:
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="ovs-sandbox-"))
        else:
            directory.mkdir(parents=True)
        self.directory = directory
        self.timeout = timeout
        self._fixture: Any = None

    @property
    def db(self) -> str:
        """The OVSDB remote, for ovsdbapp and ``ovs-vsctl --db``."""
        return f"unix:{self.directory / 'db.sock'}"

    @property
    def rundir(self) -> Path:
        """Where ovs-vswitchd puts the bridges' OpenFlow sockets (BRIDGE.mgmt)."""
        return self.directory

    @property
    def env(self) -> dict[str, str]:
        """The environment of the OVS tools run against this sandbox."""
        return {
            **os.environ,
            "PATH": search_path(),
            **{k: str(self.directory) for k in _DIR_VARIABLES},
        }

    def start(self) -> None:
        fixture = venv.OvsVenvFixture(venv=self._venv())
        self._fixture = fixture
        try:
            fixture.setUp()
        except Exception as e:
            log = self._log_tail()
            self.stop()
            raise RuntimeError(f"OVS sandbox {self.directory} did not start: {e}{log}") from e

    def stop(self) -> None:
        """Stop both daemons and wait for them to exit, then remove the directory."""
        try:
            if self._fixture is not None:
                self._fixture.cleanUp()  # SIGTERM to each daemon
                self._fixture = None
            self._wait_gone()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> OvsSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def vsctl(self, *args: str) -> str:
        return self._command("ovs-vsctl", f"--db={self.db}", f"--timeout={self.timeout:.0f}", *args)

    def ofctl(self, *args: str) -> str:
        return self._command("ovs-ofctl", *args)

    def bridge_socket(self, bridge: str) -> str:
        """The ``ovs-ofctl`` target of a bridge (its management socket)."""
        return f"unix:{self.rundir / bridge}.mgmt"

    def _command(self, *argv: str) -> str:
        result = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=self.timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        return result.stdout

    def _venv(self) -> Any:
        # remove=False: the directory goes only once the daemons have exited (stop).
        v = venv.VenvFixture(venvdir=str(self.directory), remove=False)
        v.set_path(search_path())
        return v

    def _daemons(self) -> list[int]:
        """Processes started with a pidfile in this directory: ours, and only ours."""
        marker = f"--pidfile={self.directory}/".encode()
        return [
            pid
            for pid, cmdline in procs.each_process("cmdline")
            if marker in cmdline and procs.alive(pid)
        ]

    def _wait_gone(self) -> None:
        deadline = time.monotonic() + _STOP_TIMEOUT
        while (pids := self._daemons()) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:  # did not exit on SIGTERM: not worth waiting longer for a test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _log_tail(self, lines: int = 20) -> str:
        out = []
        for name in ("db.log", "ovs-vswitchd.log"):
            try:
                text = (self.directory / name).read_text(errors="replace")
            except OSError:
                continue
            out.append(f"\n--- {name}:\n" + "\n".join(text.splitlines()[-lines:]))
        return "".join(out)


_DIR_VARIABLES = ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR")
