"""Deletion work done after Docker has its answer.

Docker waits for DeleteEndpoint before `docker rm` or `docker stop` returns, and deleting an OVS
port on the userspace datapath costs tens of milliseconds. Nothing Docker sees depends on that
work, and nothing is lost if the plugin dies before it is done: the endpoint stays recorded in
OVSDB, Docker no longer has it, and the reconciler collects it. So DeleteEndpoint answers at once
and one background thread deletes, in order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

LOG = logging.getLogger(__name__)

Job = tuple[str, str, Callable[[], object]]  # (key, description, work; its result is unused)


class Reaper:
    def __init__(self) -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._pending: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self._thread.start()

    def submit(self, key: str, what: str, work: Callable[[], object]) -> None:
        with self._cond:
            self._pending[key] += 1
        self._jobs.put((key, what, work))

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            key, what, work = job
            try:
                work()
            except Exception:
                # Left for the reconciler, which finds it against Docker and OVSDB.
                LOG.exception("deferred %s failed", what)
            finally:
                with self._cond:
                    self._pending[key] -= 1
                    if self._pending[key] <= 0:
                        del self._pending[key]
                    self._cond.notify_all()

    def flush(self, key: str | None = None, timeout: float = 30.0) -> bool:
        """Wait until the jobs of `key` (or all jobs) are done; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending[key] if key is not None else sum(self._pending.values())) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued (bounded), then end the thread."""
        if not self.flush(timeout=timeout):
            LOG.warning("stopping with deletions still queued; the reconciler will finish them")
        self._jobs.put(None)
        self._thread.join(timeout=5)
