"""The plugin under test as the suite runs it (the process itself is the test bed's), and the
breakdown of its request durations."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import DRIVER, HOST, SUITE, log, percentile
from testbed.plugin import PluginError, PluginProcess


@dataclass
class BenchPlugin(PluginProcess):
    """`python -m docker_ovs_plugin serve --name ovsbench`, its log in the results folder."""

    #: Whether the background reconciler runs (only the recovery item needs it).
    reconcile: bool = False
    #: Where the plugin's code is imported from: a snapshot taken at the start of the run,
    #: so every (re)start in one run runs the same code while src/ is being edited.
    pythonpath: Path | None = None
    _help: str | None = None

    @classmethod
    def create(cls, out_dir: Path) -> BenchPlugin:
        """Log in out_dir/plugin.log (one file: a log mark stays valid across restarts)."""
        return cls(
            DRIVER,
            out_dir,
            SUITE.run_dir,
            host=HOST,
            start_timeout=60.0,
            poll_interval=0.02,
            stop_timeout=30.0,
            single_log=True,
        )

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
        env = super().env()
        if self.pythonpath is not None:
            env["PYTHONPATH"] = str(self.pythonpath)
        return env

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
        argv = super().argv()
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

    def reap_orphan(self) -> int | None:
        pid = super().reap_orphan()
        if pid is not None:
            log(f"stopped plugin pid {pid} left by an earlier run")
        return pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """As the test bed's, but a plugin that had to be killed is said, not raised: the
        suite goes on (its figures say how long the stop took, :attr:`stop_seconds`)."""
        try:
            return super().stop(sig, timeout)
        except PluginError as e:
            log(str(e))
            return self.last_returncode

    def rss_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM of the plugin process, KiB."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
        return out


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
