"""The real plugin as a child process: start, wait for its socket, signal, stop, logs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from testbed.host import LOCAL, Host
from testbed.http import answers_activate

#: Loggers whose debug lines are left out of the log tails shown on failures.
_NOISY_LOGGERS = ("pyroute2", "asyncio", "urllib3", "docker.utils")
#: The line the plugin logs (at debug level) for every request it served.
_REQUEST_LINE = re.compile(r"POST /(?:NetworkDriver\.|Plugin\.)?(\w+) -> (\d+) in ([\d.]+) ms")


class PluginError(RuntimeError):
    pass


@dataclass
class PluginProcess:
    """``python -m docker_ovs_plugin serve --name NAME`` on a host, its log in ``log_dir``."""

    name: str
    log_dir: Path
    #: Where the pidfile goes (see :meth:`reap_orphan`).
    run_dir: Path
    host: Host = LOCAL
    log_level: str = "debug"
    extra_args: tuple[str, ...] = ()
    start_timeout: float = 15.0
    #: How often start() asks the socket whether the plugin is ready.
    poll_interval: float = 0.1
    #: Seconds stop() waits for the exit before SIGKILL.
    stop_timeout: float = 10.0
    #: One log file (plugin.log, a marker line at each start) instead of one file per start:
    #: a log mark stays valid across restarts.
    single_log: bool = False
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    logs: list[Path] = field(default_factory=list)
    starts: int = 0
    last_returncode: int | None = None
    #: Seconds the last stop() took from the signal to the exit.
    stop_seconds: float = 0.0
    #: (exit status, log file) of every exit that no stop() asked for.
    crashes: list[tuple[int | None, Path]] = field(default_factory=list)

    @property
    def socket_path(self) -> Path:
        return self.host.plugin_socket(self.name)

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PluginError("plugin not running")
        return self.proc.pid

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "docker_ovs_plugin",
            "serve",
            "--name",
            self.name,
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONUNBUFFERED="1")

    def answers_activate(self) -> bool:
        return answers_activate(self.socket_path)

    def reap_orphan(self) -> int | None:
        """Stop a plugin that an earlier, killed run of this suite left running; its pid.

        Only a process recorded in our pidfile, still running the plugin under our
        driver name, and whose recorded parent (the run that started it) is gone.
        """
        try:
            pid, parent = (int(v) for v in self.pidfile.read_text().split())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            cmdline = []
        ours = b"docker_ovs_plugin" in cmdline and self.name.encode() in cmdline
        if ours and Path(f"/proc/{parent}").exists():
            return None  # a live run owns it; start() will report the busy socket
        if ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return pid if ours else None

    def spawn(self) -> float:
        """Start the process without waiting for it; returns the perf_counter at exec."""
        if self.running:
            raise PluginError("plugin already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        if self.single_log:
            self.log_path = self.log_dir / "plugin.log"
        else:
            self.log_path = self.log_dir / f"plugin-{self.starts}.log"
        if self.log_path not in self.logs:
            self.logs.append(self.log_path)
        with self.log_path.open("ab") as log:
            if self.single_log:
                log.write(f"==== plugin start #{self.starts} ====\n".encode())
                log.flush()
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.host.daemon_argv(self.argv()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                # Own session: a ^C to the suite must not kill the plugin before the
                # cleanup has used it to remove containers and networks.
                start_new_session=True,
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(f"{self.proc.pid} {os.getpid()}\n")
        return started

    def start(self) -> None:
        if self.running:
            raise PluginError("plugin already running")
        self.host.plugin_dir.mkdir(parents=True, exist_ok=True)
        # A socket file left by a killed plugin is fine (the plugin must replace it);
        # one that still answers belongs to somebody else and would fool readiness.
        if self.answers_activate():
            raise PluginError(f"another process already serves {self.socket_path}; stop it first")
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while not self.answers_activate():
            returncode = self.proc.poll()
            if returncode is not None:
                self._closed(returncode)
                raise PluginError(
                    f"plugin exited with {returncode} before it was ready\n" + self.log_tail()
                )
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise PluginError(
                    f"plugin not ready within {self.start_timeout:.0f}s "
                    f"(socket {self.socket_path})\n" + self.log_tail()
                )
            time.sleep(self.poll_interval)

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """Send ``sig`` and wait for the exit; SIGKILL (and PluginError) after ``timeout``.

        Returns the exit status, or None if the plugin was not running.
        """
        self.stop_seconds = 0.0
        if self.proc is None:
            return None
        proc = self.proc
        timeout = self.stop_timeout if timeout is None else timeout
        started = time.perf_counter()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                self.stop_seconds = time.perf_counter() - started
                self._closed(proc.returncode)
                raise PluginError(
                    f"plugin did not exit within {timeout:.0f}s of signal {sig}; killed it"
                ) from None
        self.stop_seconds = time.perf_counter() - started
        self._closed(proc.returncode)
        return proc.returncode

    def _closed(self, returncode: int | None) -> None:
        self.last_returncode = returncode
        self.proc = None
        self.pidfile.unlink(missing_ok=True)

    def check_alive(self) -> None:
        """Record (in :attr:`crashes`) a plugin that exited without :meth:`stop`."""
        if self.proc is not None and self.proc.poll() is not None:
            assert self.log_path is not None
            self.crashes.append((self.proc.returncode, self.log_path))
            self._closed(self.proc.returncode)

    def ensure_running(self) -> None:
        self.check_alive()
        if self.proc is None:
            self.start()

    # -- the log --------------------------------------------------------------------------

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of the current plugin log, without third-party debug chatter
        (the full log stays in the file)."""
        if self.log_path is None or not self.log_path.exists():
            return "(no plugin log)"
        text = [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if not any(f" DEBUG {noisy}" in line for noisy in _NOISY_LOGGERS)
        ]
        return f"--- last {lines} lines of {self.log_path} (full log there) ---\n" + "\n".join(
            text[-lines:]
        )

    def log_mark(self) -> int:
        """Where the log ends now (see :meth:`requests_since`)."""
        try:
            return self.log_path.stat().st_size if self.log_path is not None else 0
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int, end: int | None = None) -> str:
        if self.log_path is None:
            return ""
        with self.log_path.open("rb") as f:
            f.seek(mark)
            return f.read(None if end is None else max(0, end - mark)).decode(errors="replace")

    def requests_since(self, mark: int, end: int | None = None) -> dict[str, list[float]]:
        """Durations (ms) of the requests the plugin logged after `mark` (needs debug level),
        by method."""
        out: dict[str, list[float]] = defaultdict(list)
        for m in _REQUEST_LINE.finditer(self.log_since(mark, end)):
            out[m.group(1)].append(float(m.group(3)))
        return dict(out)
