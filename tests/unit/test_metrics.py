"""Prometheus metrics: what the server hook records, and the opt-in /metrics listener."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from docker_ovs_plugin.http.metrics import (
    Metrics,
    MetricsServer,
    StateReaders,
    parse_address,
)
from docker_ovs_plugin.http.routes import build_routes
from docker_ovs_plugin.http.server import PluginServer
from testbed.http import UnixHTTPConnection

from .fakes import make_driver


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_observe_counts_times_and_errors_per_method() -> None:
    metrics = Metrics("ovs")
    metrics.observe("NetworkDriver.CreateNetwork", 200, 0.020)
    metrics.observe("NetworkDriver.CreateNetwork", 200, 0.030)
    metrics.observe("NetworkDriver.CreateNetwork", 400, 0.001)
    reg = metrics.registry
    name = "docker_ovs_plugin_requests_total"
    assert _value(reg, name, method="NetworkDriver.CreateNetwork", code="200") == 2
    assert _value(reg, name, method="NetworkDriver.CreateNetwork", code="400") == 1
    errors = "docker_ovs_plugin_request_errors_total"
    assert _value(reg, errors, method="NetworkDriver.CreateNetwork") == 1
    hist = "docker_ovs_plugin_request_duration_seconds"
    assert _value(reg, hist + "_count", method="NetworkDriver.CreateNetwork") == 3
    assert _value(reg, hist + "_sum", method="NetworkDriver.CreateNetwork") == pytest.approx(0.051)
    assert _value(reg, hist + "_bucket", method="NetworkDriver.CreateNetwork", le="0.025") == 2
    assert _value(reg, "docker_ovs_plugin_info", driver="ovs", version="0.1.0") == 1


def test_state_is_read_at_scrape_time() -> None:
    metrics = Metrics("ovs")
    state = {"networks": 1, "endpoints": 2, "actions": 0}
    metrics.watch(
        StateReaders(
            networks=lambda: state["networks"],
            endpoints=lambda: state["endpoints"],
            reconcile_actions=lambda: state["actions"],
            reconcile_passes=lambda: 7,
        )
    )
    reg = metrics.registry
    assert _value(reg, "docker_ovs_plugin_networks") == 1
    assert _value(reg, "docker_ovs_plugin_endpoints") == 2
    state.update(networks=3, endpoints=7, actions=4)
    assert _value(reg, "docker_ovs_plugin_networks") == 3
    assert _value(reg, "docker_ovs_plugin_endpoints") == 7
    assert _value(reg, "docker_ovs_plugin_reconcile_actions_total") == 4
    assert _value(reg, "docker_ovs_plugin_reconcile_passes_total") == 7


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = Metrics("ovs"), Metrics("ovs2")
    a.observe("Plugin.Activate", 200, 0.001)
    assert _value(b.registry, "docker_ovs_plugin_requests_total", method="Plugin.Activate", code="200") is None  # fmt: skip  # noqa: E501


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9163", ("127.0.0.1", 9163)),
        (":9163", ("0.0.0.0", 9163)),
        ("[::1]:9163", ("::1", 9163)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["9163", "127.0.0.1", "127.0.0.1:http", "1.2.3.4:70000", "[x]:1"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def _post(path: Path, method: str, body: object) -> int:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("POST", f"/{method}", body=json.dumps(body).encode())
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, MetricsServer]]:
    """The plugin server with the metrics hook, and the /metrics listener on a free port."""
    metrics = Metrics("ovs")
    driver = make_driver()
    metrics.watch(
        StateReaders(
            networks=lambda: len(driver.networks()),
            endpoints=lambda: len(driver.endpoints()),
            reconcile_actions=lambda: 0,
            reconcile_passes=lambda: 0,
        )
    )
    sock = tmp_path / "ovs.sock"
    srv = PluginServer(sock, build_routes(driver), observe=metrics.observe)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    listener = MetricsServer(metrics, "127.0.0.1:0")
    try:
        yield sock, listener
    finally:
        listener.close()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def test_requests_show_up_on_the_metrics_listener(served: tuple[Path, MetricsServer]) -> None:
    sock, listener = served
    assert _post(sock, "NetworkDriver.GetCapabilities", {}) == 200
    assert _post(sock, "NetworkDriver.CreateNetwork", {"NetworkID": "bad"}) != 200
    assert _post(sock, "No.Such/Path", {}) == 404
    url = f"http://127.0.0.1:{listener.port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    lines = set(text.splitlines())
    assert (
        'docker_ovs_plugin_requests_total{code="200",method="NetworkDriver.GetCapabilities"} 1.0'
        in lines
    )
    assert (
        'docker_ovs_plugin_request_errors_total{method="NetworkDriver.CreateNetwork"} 1.0' in lines
    )
    # Unknown paths share one label instead of one series per path.
    assert 'docker_ovs_plugin_requests_total{code="404",method="unknown"} 1.0' in lines
    assert "docker_ovs_plugin_networks 0.0" in lines
    assert "docker_ovs_plugin_endpoints 0.0" in lines
    assert any(
        line.startswith("docker_ovs_plugin_request_duration_seconds_bucket") for line in lines
    )


def test_metrics_listener_closes(tmp_path: Path) -> None:
    listener = MetricsServer(Metrics("ovs"), "127.0.0.1:0")
    port = listener.port
    listener.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
