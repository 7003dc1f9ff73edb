"""Composition root: the only place that picks concrete adapters and wires them together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from docker_ovs_plugin.adapters import datapath, ovsdb
from docker_ovs_plugin.adapters.iptables import IptablesFirewall
from docker_ovs_plugin.adapters.netlink import NetlinkLinks
from docker_ovs_plugin.adapters.openflow import OfctlFlows
from docker_ovs_plugin.http.routes import build_routes
from docker_ovs_plugin.http.server import PluginServer
from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.settings import Settings

LOG = logging.getLogger(__name__)


@dataclass
class App:
    driver: Driver
    server: PluginServer
    ovsdb_api: Any

    def close(self) -> None:
        self.server.server_close()
        self.ovsdb_api.ovsdb_connection.stop()


def build(settings: Settings) -> App:
    """Connect to OVS, rebuild state, then open the socket.

    The socket comes last: Docker may call GetCapabilities the instant it exists, and one failed
    capability query leaves the driver unusable until dockerd restarts.
    """
    dp_type = datapath.resolve(settings.datapath_type)
    api = ovsdb.connect(settings.ovsdb, settings.ovsdb_timeout)
    try:
        firewall = IptablesFirewall()
        firewall.setup()
        driver = Driver(
            ovsdb.OvsdbSwitch(api, settings.ovsdb_timeout),
            NetlinkLinks(settings.device_timeout),
            firewall,
            OfctlFlows(settings.rundir),
            datapath_type=dp_type,
        )
        driver.restore()
        server = PluginServer(settings.socket_path, build_routes(driver))
    except BaseException:
        api.ovsdb_connection.stop()
        raise
    LOG.info(
        "serving driver %r on %s (OVSDB %s, datapath %s)",
        settings.name,
        settings.socket_path,
        settings.ovsdb,
        dp_type,
    )
    return App(driver=driver, server=server, ovsdb_api=api)
