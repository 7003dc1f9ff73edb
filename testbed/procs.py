"""Processes a test bed started: found by pidfile (checked against their command line), with
their descendants, killed and waited for. Nothing here looks a process up by name."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path


def cmdline(pid: int) -> bytes:
    """The process's arguments joined by NULs; b"" when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Running (a zombie is not: it only waits for its parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name in parentheses, which may itself hold ") ".
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def pidfile_pid(path: Path) -> int | None:
    """The first number in a pidfile (ours also record the parent after it)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_naming(path: Path, marker: str) -> int | None:
    """The pid in ``path`` if that process is alive and its command line names ``marker``
    (a pid recorded by a killed run may belong to somebody else by now)."""
    pid = pidfile_pid(path)
    if pid is None or not alive(pid) or marker.encode() not in cmdline(pid):
        return None
    return pid


def each_process(file: str) -> Iterator[tuple[int, bytes]]:
    """(pid, contents of /proc/PID/FILE) of every process still there when read."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / file).read_bytes()
            except OSError:
                continue


def _parents() -> dict[int, int]:
    return {pid: int(stat.rpartition(b")")[2].split()[1]) for pid, stat in each_process("stat")}


def with_descendants(pids: Iterable[int]) -> set[int]:
    """``pids`` and every process below them (a container's processes under its shim)."""
    parents = _parents()
    found = set(pids)
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    return found


def in_cgroup(prefix: str) -> set[int]:
    """Processes in a cgroup whose path starts with ``/prefix`` in any hierarchy."""
    needle = f"/{prefix}".encode()
    # Lines are ID:CONTROLLERS:PATH.
    return {
        pid
        for pid, text in each_process("cgroup")
        if any(line.split(b":", 2)[-1].startswith(needle) for line in text.splitlines())
    }


def kill_all(pids: Iterable[int], sig: int = signal.SIGKILL, timeout: float = 10.0) -> list[int]:
    """Send ``sig`` to each and wait until all are gone; returns those still alive then."""
    pids = [p for p in set(pids) if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def wait_reaped(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """Wait until the pids are gone from /proc, zombies included (init reaps an orphan a
    moment after it died; dockerd takes a pid that still exists for a live containerd).
    Returns those still there."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if Path(f"/proc/{p}").exists()]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if Path(f"/proc/{p}").exists()]
    return left


def terminate(pids: Iterable[int], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what did not exit within ``timeout``."""
    left = kill_all(pids, signal.SIGTERM, timeout)
    if left:
        kill_all(left, signal.SIGKILL, 5.0)
