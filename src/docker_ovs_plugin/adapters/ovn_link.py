"""The OVN northbound connection, made in the background.

The plugin serves at once, whether or not the OVN cluster answers: bridge networks need none of
it, and Docker gives up on a plugin whose socket is missing at its start. A thread connects
(each attempt bounded by the IDL's timeout), retries with a capped back-off, and once connected
runs `on_connected` (this host's fence check, then loading the overlay state). Until then every
use of the northbound database fails at once with a message naming the remotes, instead of
making Docker wait.

After the first connection the IDL reconnects by itself (and writes retry through a leader
election, adapters/ovn_nb.py), so the link only ever connects once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from docker_ovs_plugin.service.errors import BackendError

LOG = logging.getLogger(__name__)

FIRST_RETRY = 1.0
MAX_RETRY = 10.0  # a cluster that comes up is found within 10 s


class NorthboundLink:
    """Stands for the northbound adapter: attributes are the connected adapter's, or raise
    BackendError("not connected ...") while there is none."""

    def __init__(
        self,
        remotes: str,
        connect: Callable[[], Any],
        *,
        on_connected: Callable[[], None] | None = None,
        first_retry: float = FIRST_RETRY,
        max_retry: float = MAX_RETRY,
    ) -> None:
        self._remotes = remotes
        self._connect = connect
        self.on_connected = on_connected
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._nb: Any = None
        self._ready = threading.Event()  # connected and on_connected done
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.attempts = 0
        self.last_error: str | None = None  # of the last failed attempt
        # The housekeeping lock's own connection (adapters/ovn_hosts.py), when there is one.
        self.lock: NorthboundLink | None = None

    # -- state -----------------------------------------------------------------------------

    @property
    def remotes(self) -> str:
        return self._remotes

    @property
    def connected(self) -> bool:
        return self._nb is not None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def current(self) -> Any:
        nb = self._nb
        if nb is None:
            raise BackendError(
                f"not connected to the OVN northbound database ({self._remotes}); overlay "
                "networks work again once it answers (bridge networks are not affected)"
            )
        return nb

    def __getattr__(self, name: str) -> Any:
        # Only for names this class does not have: the adapter's reads and writes.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.current(), name)

    # -- connecting ------------------------------------------------------------------------

    def connect_once(self) -> bool:
        """One bounded attempt (and on_connected after it); False when it failed."""
        if self._nb is None:
            self.attempts += 1
            try:
                self._nb = self._connect()
            except BackendError as e:
                self.last_error = str(e)
                LOG.warning("OVN northbound: %s", e)
                return False
            LOG.info("connected to the OVN northbound database (%s)", self._remotes)
        if self.on_connected is not None:
            try:
                self.on_connected()
            except BackendError as e:
                self.last_error = f"connected, but the overlay state is not loaded: {e}"
                LOG.warning("OVN northbound: %s", self.last_error)
                return False
            except Exception:
                # e.g. a write that failed while the cluster elects a leader: try again
                LOG.exception("OVN northbound: connected, but loading the overlay state failed")
                return False
        self._ready.set()
        return True

    def start(self) -> None:
        def run() -> None:
            pause = self._first_retry
            while not self._stop.is_set() and not self.connect_once():
                LOG.info("OVN northbound: trying again in %.0f s", pause)
                self._stop.wait(pause)
                pause = min(pause * 2, self._max_retry)

        self._thread = threading.Thread(target=run, name="ovn-nb-connect", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        # An attempt in progress is bounded by the IDL timeout; the thread is a daemon.
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._nb is not None:
            self._nb.close()
