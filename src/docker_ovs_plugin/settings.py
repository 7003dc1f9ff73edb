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
    log_level: str = "info"
    ovsdb_timeout: float = 10.0
    # How long to wait for ovs-vswitchd to create a bridge's internal device.
    device_timeout: float = 5.0

    @property
    def socket_path(self) -> Path:
        return self.socket or PLUGIN_DIR / f"{self.name}.sock"
