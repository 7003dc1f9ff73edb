"""HTTP/1.1 over the plugin's unix socket, one thread per connection.

Docker's plugin client keeps connections alive and sends requests in parallel, so the server is
threaded; the driver takes care of ordering per network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import stat
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from docker_ovs_plugin.http.errors import error_response
from docker_ovs_plugin.http.routes import Handler

LOG = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # Docker's largest bodies are a few KiB; refuse anything absurd unread
CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"

#: Called once per answered request with (method, HTTP status, seconds); metrics use it.
Observer = Callable[[str, int, float], None]


class PluginServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, socket_path: Path, routes: dict[str, Handler], observe: Observer | None = None
    ) -> None:
        self.socket_path = socket_path
        self.routes = routes
        self.observe = observe
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(socket_path)
        # Bind under a umask so the socket is root-only from its first instant (no chmod race).
        old = os.umask(0o177)
        try:
            super().__init__(str(socket_path), _RequestHandler)
        finally:
            os.umask(old)

    def server_close(self) -> None:
        super().server_close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def _remove_stale_socket(path: Path) -> None:
    """A plugin killed with SIGKILL leaves its socket behind; binding needs the name free."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PluginServer
    server_version = "docker-ovs-plugin"

    def do_POST(self) -> None:
        started = time.perf_counter()
        method = self.path.lstrip("/")
        status, body = self._dispatch(method)
        self._reply(status, body)
        elapsed = time.perf_counter() - started
        LOG.debug("POST %s -> %d in %.1f ms", self.path, status, elapsed * 1000)
        if self.server.observe is not None:
            known = self.path in self.server.routes  # unknown paths share one label
            self.server.observe(method if known else "unknown", status, elapsed)

    def _dispatch(self, method: str) -> tuple[int, dict[str, Any]]:
        handler = self.server.routes.get(self.path)
        length_header = self.headers.get("Content-Length", "0")
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            return 400, {"Err": f"bad Content-Length {length_header!r}"}
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the body stays unread
            return 413, {"Err": f"request body of {length} bytes exceeds {MAX_BODY} bytes"}
        body = self.rfile.read(length) if length else b""
        if handler is None:
            return 404, {"Err": f"{method} is not implemented by docker-ovs-plugin"}
        try:
            return 200, handler(body)
        except Exception as e:  # every failure becomes {"Err"}; the thread must answer
            status, err = error_response(method, e)
            LOG.warning("%s failed (%d): %s", method, status, err["Err"])
            return status, err

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_post(self) -> None:
        self._reply(405, {"Err": "only POST is supported"})

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_post

    def log_message(self, format: str, *args: Any) -> None:
        pass  # do_POST logs each request once, with its timing

    def address_string(self) -> str:
        return "unix"  # unix peers have no address; the default would index an empty string
