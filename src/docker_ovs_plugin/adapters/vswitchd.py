"""Noticing that ovs-vswitchd restarted: its pid file names another process."""

from __future__ import annotations

from pathlib import Path


class VswitchdWatch:
    def __init__(self, rundir: Path) -> None:
        self._pidfile = rundir / "ovs-vswitchd.pid"
        self._last = self._read()

    def _read(self) -> str | None:
        try:
            return self._pidfile.read_text().strip() or None
        except OSError:
            return None  # stopped, or between stop and start

    def restarted(self) -> bool:
        pid = self._read()
        if pid is None or pid == self._last:
            return False
        self._last = pid
        return True
