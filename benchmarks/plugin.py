"""The plugin under test as a child process, and a client that speaks to it as Docker does."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import DRIVER, log, percentile
from testbed.http import UnixHTTPConnection

PLUGIN_DIR = Path("/run/docker/plugins")
PIDFILE = Path("/run/docker-ovs-plugin-bench/plugin.pid")
#: Headers dockerd 20.10 sends (protocol doc §9): no Content-Type, this Accept.
HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json"}

_REQUEST_LINE = re.compile(r"POST /(?:NetworkDriver\.|Plugin\.)?(\w+) -> (\d+) in ([\d.]+) ms")


class PluginClient:
    """HTTP/1.1 over the plugin socket with a kept-alive connection, like Go's client."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self._path = socket_path
        self._timeout = timeout
        self._conn: UnixHTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, method: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            if self._conn is None:
                self._conn = UnixHTTPConnection(self._path, self._timeout)
            try:
                self._conn.request("POST", f"/{method}", body=payload, headers=HEADERS)
                resp = self._conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
        if resp.will_close:
            self.close()
        return resp.status, (json.loads(raw) if raw else None)

    def ok(self, method: str, body: dict[str, Any] | None = None) -> Any:
        """Call and insist on 200 without Err."""
        status, out = self.call(method, body)
        if status != 200 or (isinstance(out, dict) and out.get("Err")):
            raise RuntimeError(f"{method} -> {status}: {out}")
        return out


def answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    client = PluginClient(socket_path, timeout=2.0)
    try:
        status, out = client.call("Plugin.Activate")
    except OSError:
        return False
    finally:
        client.close()
    return status == 200 and isinstance(out, dict) and "NetworkDriver" in out.get("Implements", [])


class PluginProcess:
    """`python -m docker_ovs_plugin serve --name ovsbench` with its log in the results folder."""

    def __init__(self, log_path: Path, *, log_level: str = "debug", name: str = DRIVER) -> None:
        self.name = name
        self.log_path = log_path
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.reconcile = False
        self._help: str | None = None
        #: Where the plugin's code is imported from: a snapshot taken at the start of the run,
        #: so every (re)start in one run runs the same code while src/ is being edited.
        self.pythonpath: Path | None = None

    def snapshot_source(self, src: Path, dest: Path) -> str:
        """Copy the package to dest; returns a digest of what was copied."""
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src, dest / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        digest = hashlib.sha256()
        for path in sorted((dest / src.name).rglob("*.py")):
            digest.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
        self.pythonpath = dest
        return digest.hexdigest()[:12]

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.pythonpath is not None:
            env["PYTHONPATH"] = str(self.pythonpath)
        return env

    @property
    def socket_path(self) -> Path:
        return PLUGIN_DIR / f"{self.name}.sock"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("plugin not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def supports(self, flag: str) -> bool:
        if self._help is None:
            self._help = subprocess.run(
                [sys.executable, "-m", "docker_ovs_plugin", "serve", "--help"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=self.env(),
            ).stdout
        return flag in self._help

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "docker_ovs_plugin", "serve", "--name", self.name]
        argv += ["--log-level", self.log_level]
        # Every plugin instance on a host reads all owner-tagged state in OVSDB, but asks
        # Docker only about its own driver name: its reconciler would take another instance's
        # networks for stale ones (and our socket-driven network is unknown to Docker anyway).
        if self.supports("--docker-url"):
            argv.append("--docker-url=")
        # The background reconciler also takes links created by another instance after this
        # one started for leftovers; it only runs for the recovery item, which needs it.
        if self.supports("--reconcile-interval") and not self.reconcile:
            argv.append("--reconcile-interval=0")
        return argv

    def restart_with(self, *, reconcile: bool) -> None:
        """Restart (only if needed) with the background reconciler on or off."""
        if self.running and self.reconcile == reconcile:
            return
        self.stop()
        self.reconcile = reconcile
        self.start()

    def reap_orphan(self) -> None:
        """Stop a plugin that an interrupted earlier run left behind (found by pidfile)."""
        try:
            pid = int(PIDFILE.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            cmdline, pid = [], 0
        if pid and b"docker_ovs_plugin" in cmdline and self.name.encode() in cmdline:
            log(f"stopping plugin pid {pid} left by an earlier run")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        PIDFILE.unlink(missing_ok=True)

    def spawn(self) -> float:
        """Start the process without waiting; returns the perf_counter at exec."""
        if self.running:
            raise RuntimeError("plugin already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log_path.open("ab") as f:
            f.write(f"==== bench: plugin start #{self.starts} ====\n".encode())
            f.flush()
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,  # a ^C to the suite must not kill it before cleanup
            )
        PIDFILE.parent.mkdir(parents=True, exist_ok=True)
        PIDFILE.write_text(f"{self.proc.pid}\n")
        return started

    def start(self, timeout: float = 60.0) -> None:
        if answers(self.socket_path):
            raise RuntimeError(f"another process serves {self.socket_path}; stop it first")
        self.spawn()
        deadline = time.monotonic() + timeout
        while not answers(self.socket_path):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"plugin exited with {self.proc.returncode}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"plugin not ready within {timeout:.0f}s; see {self.log_path}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Signal and wait; returns seconds until exit (SIGKILL after timeout)."""
        if self.proc is None:
            return 0.0
        proc, self.proc = self.proc, None
        started = time.perf_counter()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log("plugin did not stop in time; killing it")
                proc.kill()
                proc.wait(timeout=10)
        PIDFILE.unlink(missing_ok=True)
        return time.perf_counter() - started

    def rss_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM of the plugin process, KiB."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
        return out

    def log_mark(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def requests_since(self, mark: int, end: int | None = None) -> dict[str, list[float]]:
        """Durations (ms) of the requests the plugin logged after `mark` (needs debug level)."""
        with self.log_path.open("rb") as f:
            f.seek(mark)
            text = f.read(None if end is None else max(0, end - mark)).decode(errors="replace")
        out: dict[str, list[float]] = defaultdict(list)
        for m in _REQUEST_LINE.finditer(text):
            out[m.group(1)].append(float(m.group(3)))
        return dict(out)


def request_breakdown(durations: dict[str, list[float]], containers: int) -> dict[str, Any]:
    """Per plugin method: count, median, p90 and total ms per container."""
    table = {}
    for method, values in sorted(durations.items(), key=lambda kv: -sum(kv[1])):
        table[method] = {
            "count": len(values),
            "median_ms": percentile(values, 50),
            "p90_ms": percentile(values, 90),
            "max_ms": max(values),
            "ms_per_container": sum(values) / containers if containers else None,
        }
    total = sum(sum(v) for v in durations.values())
    return {
        "containers": containers,
        "plugin_ms_per_container": total / containers if containers else None,
        "methods": table,
    }
