"""HTTP over the plugin's unix socket, as dockerd speaks it."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

#: Headers dockerd 20.10 sends (protocol doc §9): no Content-Type, this Accept.
HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json"}


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


def _payload(body: dict[str, Any] | bytes | None) -> bytes:
    if body is None:
        return b""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _decoded(raw: bytes) -> Any:
    """The JSON of an answer; text when it is not JSON (a test may look at that)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def _post(conn: UnixHTTPConnection, method: str, payload: bytes) -> http.client.HTTPResponse:
    conn.request("POST", f"/{method}", body=payload, headers=HEADERS)
    return conn.getresponse()


def plugin_call(
    socket_path: Path,
    method: str,
    body: dict[str, Any] | bytes | None = None,
    *,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """POST one Docker v1 plugin protocol call on a new connection; returns (status, json)."""
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        resp = _post(conn, method, _payload(body))
        raw = resp.read()
    finally:
        conn.close()
    return resp.status, _decoded(raw)


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

    def call(self, method: str, body: dict[str, Any] | bytes | None = None) -> tuple[int, Any]:
        payload = _payload(body)
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            if self._conn is None:
                self._conn = UnixHTTPConnection(self._path, self._timeout)
            try:
                resp = _post(self._conn, method, payload)
                raw = resp.read()
                break
            except (http.client.HTTPException, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
        if resp.will_close:
            self.close()
        return resp.status, _decoded(raw)

    def ok(self, method: str, body: dict[str, Any] | None = None) -> Any:
        """Call and insist on 200 without Err."""
        status, out = self.call(method, body)
        if status != 200 or (isinstance(out, dict) and out.get("Err")):
            raise RuntimeError(f"{method} -> {status}: {out}")
        return out


def answers_activate(socket_path: Path, timeout: float = 2.0) -> bool:
    """True when a network driver answers Plugin.Activate on ``socket_path``."""
    if not socket_path.exists():
        return False
    try:
        status, body = plugin_call(socket_path, "Plugin.Activate", timeout=timeout)
    except (OSError, http.client.HTTPException):
        return False
    return (
        status == 200 and isinstance(body, dict) and "NetworkDriver" in body.get("Implements", [])
    )
