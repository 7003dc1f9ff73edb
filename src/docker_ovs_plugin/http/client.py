"""HTTP over the plugin's unix socket, as dockerd speaks it: for tests, benchmarks and checks."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path


class UnixHTTPConnection(http.client.HTTPConnection):
    """An http.client connection to a unix socket (keep-alive works as with TCP)."""

    def __init__(self, path: Path | str, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
