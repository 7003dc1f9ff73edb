"""A container registry on loopback (Debian's docker-registry), for pushing and installing the
managed plugin as users do. Docker talks plain HTTP to registries on 127.0.0.0/8 without being
configured to. Its storage lives in a directory the caller owns; nothing outlives the context.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from testbed.commands import wait_until

BINARY = "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def local_registry(workdir: Path) -> Iterator[str]:
    """A running registry; yields its address HOST:PORT (the prefix of references in it)."""
    port = _free_port()
    config = workdir / "registry.yml"
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (workdir / "registry.log").open("ab")
    proc = subprocess.Popen(
        [BINARY, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    try:
        wait_until(
            lambda: _answers(port),
            timeout=30,
            what=f"the registry on 127.0.0.1:{port} (log: {workdir / 'registry.log'})",
        )
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()
