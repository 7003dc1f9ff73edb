"""Prometheus metrics, served on an opt-in listener (`serve --metrics-address HOST:PORT`).

Requests are counted and timed per protocol method by the plugin server's `observe` hook; the
numbers of networks and endpoints and the reconciler's repairs are read when scraped. Each plugin
instance has its own registry (and listener), so several driver names on one host never mix.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from docker_ovs_plugin import __version__

LOG = logging.getLogger(__name__)

PREFIX = "docker_ovs_plugin"
# Most calls take milliseconds; CreateNetwork/CreateEndpoint wait for ovs-vswitchd (up to seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class StateReaders:
    """How to read the plugin's current state at scrape time."""

    networks: Callable[[], int]
    endpoints: Callable[[], int]
    reconcile_actions: Callable[[], int]
    reconcile_passes: Callable[[], int]


class _StateCollector(Collector):
    def __init__(self, readers: StateReaders) -> None:
        self._readers = readers

    def collect(self) -> Iterable[Metric]:
        r = self._readers
        yield GaugeMetricFamily(
            f"{PREFIX}_networks", "Networks this plugin instance manages", value=r.networks()
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_endpoints",
            "Endpoints (container ports) on those networks",
            value=r.endpoints(),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_reconcile_actions",
            "Repairs and removals the reconciler applied",
            value=r.reconcile_actions(),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_reconcile_passes",
            "Full reconcile passes done (each judges every network and endpoint once)",
            value=r.reconcile_passes(),
        )


class Metrics:
    """The plugin's metrics in a registry of their own."""

    def __init__(self, driver: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        info = Gauge(
            f"{PREFIX}_info",
            "Always 1; the labels say which plugin instance this is",
            ["driver", "version"],
            registry=self.registry,
        )
        info.labels(driver=driver, version=__version__).set(1)
        self._requests = Counter(
            f"{PREFIX}_requests",
            "Requests from Docker by protocol method and HTTP status",
            ["method", "code"],
            registry=self.registry,
        )
        self._errors = Counter(
            f"{PREFIX}_request_errors",
            "Requests answered with an error (non-200) by protocol method",
            ["method"],
            registry=self.registry,
        )
        self._latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from reading a request to answering it, by protocol method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, status: int, seconds: float) -> None:
        """One answered request (the plugin server's hook)."""
        self._requests.labels(method=method, code=str(status)).inc()
        self._latency.labels(method=method).observe(seconds)
        if status != 200:
            self._errors.labels(method=method).inc()

    def watch(self, readers: StateReaders) -> None:
        self.registry.register(_StateCollector(readers))


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (all addresses) into (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"metrics address {text!r} is not HOST:PORT (e.g. 127.0.0.1:9163)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError names the bad address
    return host or "0.0.0.0", int(port_text)  # noqa: S104 (":PORT" asks for all addresses)


class MetricsServer:
    """The /metrics listener on its own thread."""

    def __init__(self, metrics: Metrics, address: str) -> None:
        host, port = parse_address(address)
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.host = host
        self.port = int(server.server_port)
        LOG.info("metrics on http://%s/metrics", _join(host, self.port))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
