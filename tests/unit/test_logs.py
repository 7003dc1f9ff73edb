"""Log formats (--log-format) and systemd readiness notification."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_ovs_plugin import logs, sdnotify


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines() -> None:
    out = io.StringIO()
    logs.configure("info", "json", out)
    log = logging.getLogger("docker_ovs_plugin.test")
    log.info("network %s created", "abc", extra={"network_id": "abc"})
    log.debug("not shown at info")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info"
    assert first["logger"] == "docker_ovs_plugin.test"
    assert first["message"] == "network abc created"
    assert first["network_id"] == "abc"
    assert first["time"].endswith("+00:00")
    assert second["level"] == "error"
    assert "RuntimeError: boom" in second["exception"]


def test_text_lines() -> None:
    out = io.StringIO()
    logs.configure("debug", "text", out)
    logging.getLogger("docker_ovs_plugin.test").debug("hello %d", 1)
    line = out.getvalue().strip()
    assert line.endswith(" DEBUG docker_ovs_plugin.test: hello 1")


def test_unknown_format() -> None:
    with pytest.raises(ValueError):
        logs.formatter("xml")


def test_sdnotify_without_systemd_does_nothing() -> None:
    assert sdnotify.notify("READY=1", environ={}) is False


def test_sdnotify_sends_datagram(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": str(path)}) is True
        assert sock.recv(64) == b"READY=1"


def test_sdnotify_unreachable_socket_is_not_fatal(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "gone")}
    assert sdnotify.notify("READY=1", environ=env) is False
