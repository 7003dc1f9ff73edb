"""Per-key locks: operations on one network are serialised, different networks run in parallel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from docker_ovs_plugin.service.errors import BackendError


class KeyedLocks:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._guard = threading.Lock()
        # key -> [lock, number of holders and waiters]; entries go away when unused, so the map
        # does not grow with every network ever seen.
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def hold(self, key: str, what: str) -> Iterator[None]:
        """Hold the lock of `key`; `what` names it for the operator when it stays busy."""
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            # Docker has no timeout on v1 plugins: never wait forever behind a stuck operation.
            if not lock.acquire(timeout=self._timeout):
                raise BackendError(
                    f"{what} is busy with another operation for more than "
                    f"{self._timeout:.0f}s; try again"
                )
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]
