"""Run code inside a private network namespace, on a thread of its own.

Linux network namespaces belong to threads: the worker thread unshares its own, so netlink
sockets, ``/proc/sys/net`` and processes it starts (iptables) see only that namespace while the
rest of the test process stays in the host's. The namespace has no name and nothing else holds
it: it and every device in it vanish when the thread ends, also after a failure or a crash.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_NS = "/proc/thread-self/ns/net"


def _netns_inode() -> int:
    return os.stat(_NS).st_ino


class PrivateNetns:
    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None]
        self._calls = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, name="private-netns", daemon=True)

    def __enter__(self) -> PrivateNetns:
        self._thread.start()
        self._ready.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._calls.put(None)
        self._thread.join(timeout=10)

    def run(self, fn: Callable[[], T]) -> T:
        """Call `fn` inside the namespace and return its result (or raise its exception)."""
        done: Future[object] = Future()
        self._calls.put((fn, done))
        return done.result(timeout=60)  # type: ignore[return-value]

    def _serve(self) -> None:
        host = _netns_inode()
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNET) != 0:
            self._ready.set_exception(OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)"))
            return
        if _netns_inode() == host:  # never run a case in the host's namespace
            self._ready.set_exception(RuntimeError("still in the host's network namespace"))
            return
        self._ready.set_result(None)
        while (call := self._calls.get()) is not None:
            fn, done = call
            try:
                done.set_result(fn())
            except BaseException as e:  # handed to the caller's thread
                done.set_exception(e)
