"""Everything the plugin can be told, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PLUGIN_DIR = Path("/run/docker/plugins")
DEFAULT_NAME = "ovs"
DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"


@dataclass(frozen=True)
class Settings:
    name: str = DEFAULT_NAME
    socket: Path | None = None
    ovsdb: str = DEFAULT_OVSDB
    datapath_type: str = "auto"
    ovsdb_timeout: float = 10.0
    # How long to wait for ovs-vswitchd to create a bridge's internal device.
    device_timeout: float = 5.0

    # Docker's API, asked only by the background reconciler; "" turns that check off.
    docker_url: str = "unix:///var/run/docker.sock"
    reconcile_interval: float = 30.0  # seconds; 0 turns the background reconciler off
    # How long something must keep looking stale before it is removed: an endpoint being
    # created is in OVS a moment before Docker lists it.
    reconcile_grace: float = 10.0

    # Where ovs-vswitchd keeps the bridges' OpenFlow management sockets (BRIDGE.mgmt).
    ovs_rundir: Path | None = None

    # OVN northbound database (comma list of a cluster's remotes); None: no overlay networks.
    ovn_nb: str | None = None
    ovn_nb_private_key: Path | None = None  # for ssl: remotes
    ovn_nb_certificate: Path | None = None
    ovn_nb_ca_cert: Path | None = None
    # How long Join waits for ovn-controller to claim a port (OVN's standby northd takes
    # 7-15 s to take over after a leader loss; no port is bound meanwhile).
    ovn_join_timeout: float = 30.0
    # How long a northbound write keeps retrying through a Raft leader election (~1-1.5 s).
    ovn_retry_window: float = 5.0
    # How long a host may be without heartbeat before another host frees its addresses.
    ovn_fence_period: float = 120.0
    # Where ovn-controller keeps its pid file and control socket (for doctor).
    ovn_rundir: Path = Path("/var/run/ovn")

    # HOST:PORT of the Prometheus /metrics listener; None (the default) serves no metrics.
    metrics_address: str | None = None

    @property
    def rundir(self) -> Path:
        """Given, or beside the OVSDB unix socket (OVS puts both in its run directory)."""
        if self.ovs_rundir is not None:
            return self.ovs_rundir
        if self.ovsdb.startswith("unix:"):
            return Path(self.ovsdb.removeprefix("unix:")).parent
        return Path("/var/run/openvswitch")

    @property
    def socket_path(self) -> Path:
        return self.socket or PLUGIN_DIR / f"{self.name}.sock"
