"""Composition root: the only place that picks concrete adapters and wires them together."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from docker_ovs_plugin.adapters import datapath, ovn_hosts, ovn_nb, ovsdb
from docker_ovs_plugin.adapters.docker_api import DockerApi
from docker_ovs_plugin.adapters.docker_networks import DockerNetworksApi
from docker_ovs_plugin.adapters.inventory import OvsdbPorts
from docker_ovs_plugin.adapters.iptables import IptablesFirewall
from docker_ovs_plugin.adapters.netlink import NetlinkLinks
from docker_ovs_plugin.adapters.openflow import OpenFlowFlows
from docker_ovs_plugin.adapters.ovn_hosts import OvnHosts
from docker_ovs_plugin.adapters.ovn_link import NorthboundLink
from docker_ovs_plugin.adapters.ovn_probe import OvnProbe
from docker_ovs_plugin.adapters.vswitchd import VswitchdWatch
from docker_ovs_plugin.http.metrics import Metrics, MetricsServer, StateReaders
from docker_ovs_plugin.http.routes import build_routes
from docker_ovs_plugin.http.server import PluginServer
from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.service.ipam import Ipam
from docker_ovs_plugin.service.liveness import Liveness
from docker_ovs_plugin.service.overlay import Overlay
from docker_ovs_plugin.service.overlay_reconcile import OverlayDrift
from docker_ovs_plugin.service.ports import Catalog, Northbound
from docker_ovs_plugin.service.reaper import Reaper
from docker_ovs_plugin.service.reconcile import Reconciler
from docker_ovs_plugin.service.sync import NetworkSync
from docker_ovs_plugin.settings import Settings

LOG = logging.getLogger(__name__)


@dataclass
class Core:
    """The driver and the adapters it runs on, without the HTTP server."""

    driver: Driver
    reconciler: Reconciler
    ovsdb_api: Any
    ipam: Ipam
    overlay: Overlay | None = None  # with --ovn-nb
    northbound: NorthboundLink | None = None
    liveness: Liveness | None = None
    sync: NetworkSync | None = None  # with --ovn-nb and a Docker URL

    def close(self) -> None:
        if self.sync is not None:
            self.sync.stop()
        self.reconciler.stop()
        if self.liveness is not None:
            self.liveness.stop()
        self.driver.flush()  # queued deletions finish before the OVSDB connection goes
        if self.overlay is not None:
            self.overlay.flush()
        if self.northbound is not None:
            if self.northbound.lock is not None:
                self.northbound.lock.close()
            self.northbound.close()
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
    docker = DockerApi(settings.docker_url) if settings.docker_url else None
    reconciler = Reconciler(
        driver, switch=switch, links=links, firewall=firewall, flows=flows, docker=docker
    )
    if settings.ovn_nb is None:
        return Core(driver, reconciler, api, ipam=Ipam(None, None, name=settings.name))
    integration = ovsdb.OvsdbIntegration(api, settings.ovsdb_timeout)
    remotes = settings.ovn_nb
    # Connected in the background (build() starts it; doctor connects once, bounded): the
    # plugin serves bridge networks whether or not the OVN cluster answers.
    northbound = NorthboundLink(
        remotes,
        lambda: ovn_nb.OvnNorthbound(
            ovn_nb.connect(
                remotes,
                settings.ovsdb_timeout,
                private_key=settings.ovn_nb_private_key,
                certificate=settings.ovn_nb_certificate,
                ca_cert=settings.ovn_nb_ca_cert,
            ),
            settings.ovsdb_timeout,
            settings.ovn_retry_window,
            settings.name,
        ),
    )
    nb: Northbound = northbound  # the adapter's methods (__getattr__), or "not connected"
    overlay = Overlay(
        nb,
        integration,
        links,
        datapath_type=dp_type,
        join_timeout=settings.ovn_join_timeout,
        name=settings.name,
        reaper=Reaper() if deferred_deletes else None,
    )
    sync = None
    if settings.docker_url:
        sync = NetworkSync(
            cast(Catalog, northbound),  # the connected adapter's methods, or "not connected"
            DockerNetworksApi(settings.docker_url),
            integration,
            name=settings.name,
        )
        overlay.before_delete = sync.before_delete
    reconciler.add_source(
        OverlayDrift(
            overlay,
            nb,
            integration,
            links,
            name=settings.name,
            docker=docker,
            grace=settings.reconcile_grace,
        ).findings
    )
    northbound.on_connected = partial(_load_overlay, overlay)
    return Core(
        driver,
        reconciler,
        api,
        ipam=Ipam(nb, integration, name=settings.name),
        overlay=overlay,
        northbound=northbound,
        sync=sync,
        liveness=Liveness(
            OvnHosts(northbound.current, settings.name),
            nb,
            integration,
            links,
            overlay,
            name=settings.name,
            fence_period=settings.ovn_fence_period,
            elected=partial(_elected, northbound),
            docker=docker,
        ),
    )


def _elected(northbound: NorthboundLink) -> bool:
    lock = northbound.lock
    return lock is not None and lock.connected and ovn_hosts.lock_held(lock.current())


def _start_overlay(core: Core, settings: Settings) -> None:
    """The northbound connection, then (once connected) this host's fence check before its
    overlay state loads; the heartbeat; the housekeeping lock on a connection of its own."""
    link, liveness, overlay = core.northbound, core.liveness, core.overlay
    if link is None or liveness is None or overlay is None:
        return
    remotes = link.remotes

    sync_started = threading.Event()

    def connected() -> None:
        liveness.tick()  # a fenced host tears down what it lost before anything loads
        _load_overlay(overlay)
        if core.sync is not None and not sync_started.is_set():
            # Once connected (it watches the switches) and loaded; the socket listens already:
            # the Docker calls of its first pass (which make dockerd call this plugin) wait in
            # its backlog until serve_forever takes them.
            sync_started.set()
            core.sync.start()

    link.on_connected = connected
    link.lock = NorthboundLink(
        remotes, partial(ovn_hosts.connect_lock, remotes, settings.ovsdb_timeout)
    )
    link.start()
    link.lock.start()
    liveness.start(lambda: link.ready)


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
                    reconcile_passes=lambda: core.reconciler.passes,
                )
            )
            metrics_server = MetricsServer(metrics, settings.metrics_address)
        # Only the cache before serving (fast even with thousands of endpoints); addresses,
        # rules and flows that a restart lost come back in the reconciler's first pass.
        networks, endpoints = core.driver.load()
        LOG.info("loaded %d networks and %d endpoints from OVSDB", len(networks), len(endpoints))
        server = PluginServer(
            settings.socket_path,
            build_routes(core.driver, core.overlay, core.ipam),
            observe=metrics.observe if metrics is not None else None,
        )
    except BaseException:
        if metrics_server is not None:
            metrics_server.close()
        core.close()
        raise
    _start_overlay(core, settings)
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
        "serving driver %r on %s (OVSDB %s, datapath %s%s)",
        settings.name,
        settings.socket_path,
        settings.ovsdb,
        core.driver.datapath_type,
        f", OVN northbound {settings.ovn_nb}" if settings.ovn_nb else "",
    )
    return App(core=core, server=server, metrics=metrics_server)


def _load_overlay(overlay: Overlay) -> None:
    # A BackendError (e.g. no system-id yet) makes the link try again; bridge networks need
    # none of it, and overlay requests say what is missing meanwhile.
    networks, endpoints = overlay.load()
    LOG.info(
        "loaded %d overlay networks (OVN northbound) and %d endpoints (integration bridge)",
        len(networks),
        len(endpoints),
    )


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
        docker=DockerApi(settings.docker_url) if settings.docker_url else None,
        ovsdb_api=api,
    )


def ovn_probe(core: Core, settings: Settings) -> OvnProbe:
    """What doctor reads of this host's part of OVN."""
    return OvnProbe(core.ovsdb_api, settings.ovsdb_timeout, settings.ovn_rundir)


def host_rows(core: Core) -> OvnHosts | None:
    return OvnHosts(core.northbound.current, core.driver.name) if core.northbound else None
