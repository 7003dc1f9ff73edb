"""What `doctor` reads of this host's part of OVN: the Open_vSwitch row, bridges and
interfaces (OVSDB), the device holding the tunnel address (netlink), and ovn-controller (its
pid file and `ovn-appctl connection-status`, bounded)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from docker_ovs_plugin.adapters.netlink import _iproute
from docker_ovs_plugin.adapters.ovsdb import OvsdbSwitch
from docker_ovs_plugin.service.ovn_doctor import Controller

APPCTL_TIMEOUT = 5.0


class OvnProbe:
    def __init__(self, api: Any, timeout: float, rundir: Path) -> None:
        self._ovs = OvsdbSwitch(api, timeout)
        self._rundir = rundir

    def ovs_external_ids(self) -> dict[str, str]:
        rows = self._ovs._find("Open_vSwitch")
        return dict(rows[0].external_ids) if rows else {}

    def bridge_datapath(self, name: str) -> str | None:
        row = self._ovs._row("Bridge", name)
        return (str(row.datapath_type) or "system") if row is not None else None

    def interface_type(self, name: str) -> str | None:
        row = self._ovs._row("Interface", name)
        return str(row.type) if row is not None else None

    def device_of_address(self, address: str) -> str | None:
        with _iproute(f"finding the device of {address}") as ipr:
            for a in ipr.addr("dump"):
                if address in (a.get("IFA_ADDRESS"), a.get("IFA_LOCAL")):
                    return str(ipr.link("get", index=a["index"])[0].get("IFLA_IFNAME"))
        return None

    def controller(self) -> Controller:
        pidfile = self._rundir / "ovn-controller.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return Controller(running=False, where=str(pidfile))
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            comm = ""
        if "ovn-controller" not in comm:
            return Controller(running=False, where=str(pidfile), pid=pid)
        ctl = self._rundir / f"ovn-controller.{pid}.ctl"
        appctl = shutil.which("ovn-appctl")
        if appctl is None:
            return Controller(running=True, where=str(pidfile), pid=pid, status="no ovn-appctl")
        try:
            out = subprocess.run(
                [appctl, "-t", str(ctl), "connection-status"],
                capture_output=True,
                text=True,
                timeout=APPCTL_TIMEOUT,
                check=False,
                env={**os.environ},
            )
            status = (out.stdout or out.stderr).strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            status = f"ovn-appctl failed: {e}"
        return Controller(running=True, where=str(pidfile), pid=pid, status=status)
