"""Composition root: the only place that picks concrete adapters and wires them together."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from docker_ovs_plugin.adapters import datapath, ovsdb
from docker_ovs_plugin.adapters.docker_api import DockerApi
from docker_ovs_plugin.adapters.inventory import OvsdbPorts
from docker_ovs_plugin.adapters.iptables import IptablesFirewall
from docker_ovs_plugin.adapters.netlink import NetlinkLinks
from docker_ovs_plugin.adapters.openflow import OpenFlowFlows
from docker_ovs_plugin.adapters.vswitchd import VswitchdWatch
from docker_ovs_plugin.http.metrics import Metrics, MetricsServer, StateReaders
from docker_ovs_plugin.http.routes import build_routes
from docker_ovs_plugin.http.server import PluginServer
from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.service.reaper import Reaper
from docker_ovs_plugin.service.reconcile import Reconciler
from docker_ovs_plugin.settings import Settings

LOG = logging.getLogger(__name__)


@dataclass
class Core:
    """The driver and the adapters it runs on, without the HTTP server."""

    driver: Driver
    reconciler: Reconciler
    ovsdb_api: Any

    def close(self) -> None:
        self.reconciler.stop()
        self.driver.flush()  # queued deletions finish before the OVSDB connection goes
        self.ovsdb_api.ovsdb_connection.stop()


@dataclass
class App:
    core: Core
    server: PluginServer
    metrics: MetricsServer | None = None

    def close(self) -> None:
        self.server.server_close()
        if self.metrics is not None:
            self.metrics.close()
        self.core.close()


def build_core(settings: Settings, *, deferred_deletes: bool = False) -> Core:
    dp_type = datapath.resolve(settings.datapath_type)
    api = ovsdb.connect(settings.ovsdb, settings.ovsdb_timeout, ovsdb.DRIVER_COLUMNS)
    switch = ovsdb.OvsdbSwitch(api, settings.ovsdb_timeout)
    links = NetlinkLinks(settings.device_timeout)
    firewall = IptablesFirewall()
    flows = OpenFlowFlows(settings.rundir)
    driver = Driver(
        switch,
        links,
        firewall,
        flows,
        datapath_type=dp_type,
        name=settings.name,
        reaper=Reaper() if deferred_deletes else None,
    )
    docker = DockerApi(settings.name, settings.docker_url) if settings.docker_url else None
    reconciler = Reconciler(
        driver, switch=switch, links=links, firewall=firewall, flows=flows, docker=docker
    )
    return Core(driver=driver, reconciler=reconciler, ovsdb_api=api)


def build(settings: Settings) -> App:
    """Connect to OVS, rebuild state, then open the socket, then start reconciling.

    The socket comes after the state: Docker may call GetCapabilities the instant it exists,
    and one failed capability query leaves the driver unusable until dockerd restarts.
    """
    core = build_core(settings, deferred_deletes=True)
    metrics = metrics_server = None
    try:
        if settings.metrics_address:
            metrics = Metrics(settings.name)
            metrics.watch(
                StateReaders(
                    networks=lambda: len(core.driver.networks()),
                    endpoints=lambda: len(core.driver.endpoints()),
                    reconcile_actions=lambda: core.reconciler.actions,
                )
            )
            metrics_server = MetricsServer(metrics, settings.metrics_address)
        # Only the cache before serving (fast even with thousands of endpoints); addresses,
        # rules and flows that a restart lost come back in the reconciler's first pass.
        networks, endpoints = core.driver.load()
        LOG.info("loaded %d networks and %d endpoints from OVSDB", len(networks), len(endpoints))
        server = PluginServer(
            settings.socket_path,
            build_routes(core.driver),
            observe=metrics.observe if metrics is not None else None,
        )
    except BaseException:
        if metrics_server is not None:
            metrics_server.close()
        core.close()
        raise
    if settings.reconcile_interval > 0:
        core.reconciler.start(
            interval=settings.reconcile_interval,
            grace=settings.reconcile_grace,
            restarted=VswitchdWatch(settings.rundir).restarted,
        )
    else:
        threading.Thread(
            target=core.reconciler.restore_plumbing, name="restore", daemon=True
        ).start()
    LOG.info(
        "serving driver %r on %s (OVSDB %s, datapath %s)",
        settings.name,
        settings.socket_path,
        settings.ovsdb,
        core.driver.datapath_type,
    )
    return App(core=core, server=server, metrics=metrics_server)


@dataclass
class StatusSources:
    """What `docker-ovs-plugin status` reads: OVSDB records and ports, Docker's names."""

    records: ovsdb.OvsdbSwitch
    ports: OvsdbPorts
    docker: DockerApi | None
    ovsdb_api: Any

    def close(self) -> None:
        self.ovsdb_api.ovsdb_connection.stop()


def build_status(settings: Settings) -> StatusSources:
    api = ovsdb.connect(settings.ovsdb, settings.ovsdb_timeout)
    return StatusSources(
        records=ovsdb.OvsdbSwitch(api, settings.ovsdb_timeout),
        ports=OvsdbPorts(api),
        docker=DockerApi(settings.name, settings.docker_url) if settings.docker_url else None,
        ovsdb_api=api,
    )
