"""`doctor` for this host's part of OVN: each check says in words what is missing and how to
fix it (multi-host.md: ovn-controller, the chassis keys, the tunnel address on an OVS bridge
for userspace tunnels, br-int, the northbound database, this host's heartbeat)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from docker_ovs_plugin.contract import (
    DEFAULT_OVN_BRIDGE,
    OVS_ENCAP_IP_KEY,
    OVS_ENCAP_TYPE_KEY,
    OVS_OVN_BRIDGE_KEY,
    OVS_SYSTEM_ID_KEY,
)
from docker_ovs_plugin.service.errors import PluginError
from docker_ovs_plugin.service.liveness import HostState

OVN_REMOTE_KEY = "ovn-remote"  # ovn-controller's own key (the SB database), not ours
BRIDGE_DATAPATH_KEY = "ovn-bridge-datapath-type"
NETDEV = "netdev"


@dataclass(frozen=True)
class Controller:
    running: bool
    where: str  # its pid file
    pid: int | None = None
    status: str | None = None  # `ovn-appctl connection-status`: "connected", ...


class Probe(Protocol):
    def ovs_external_ids(self) -> dict[str, str]: ...

    def bridge_datapath(self, name: str) -> str | None:
        """Its datapath type; None when there is no such bridge."""

    def interface_type(self, name: str) -> str | None: ...

    def device_of_address(self, address: str) -> str | None: ...

    def controller(self) -> Controller: ...


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str


class _Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def good(self, text: str) -> None:
        self.checks.append(Check(True, text))

    def bad(self, text: str) -> None:
        self.checks.append(Check(False, text))


def check_host(
    probe: Probe,
    *,
    remotes: str,
    nb_error: str | None,
    host_state: Callable[[str], HostState | None] | None,
    fence_period: float,
    wall: Callable[[], float] = time.time,
) -> list[Check]:
    r = _Report()
    ids = probe.ovs_external_ids()
    _chassis_keys(r, ids)
    _controller(r, probe.controller())
    wanted = ids.get(BRIDGE_DATAPATH_KEY) or "system"
    _bridge(r, ids.get(OVS_OVN_BRIDGE_KEY) or DEFAULT_OVN_BRIDGE, wanted, probe)
    _encap(r, (ids.get(OVS_ENCAP_IP_KEY) or "").split(",")[0].strip(), wanted, probe)
    if nb_error is not None:
        r.bad(f"the OVN northbound database ({remotes}) is not reachable: {nb_error}")
    else:
        r.good(f"the OVN northbound database ({remotes}) is reachable")
        system_id = ids.get(OVS_SYSTEM_ID_KEY)
        if system_id and host_state is not None:
            _heartbeat(r, system_id, host_state, fence_period=fence_period, now=wall())
    return r.checks


def _chassis_keys(r: _Report, ids: dict[str, str]) -> None:
    for key, fix in (
        (OVS_SYSTEM_ID_KEY, "ovs-vsctl set Open_vSwitch . external_ids:system-id=$(hostname)"),
        (OVN_REMOTE_KEY, "ovs-vsctl set Open_vSwitch . external_ids:ovn-remote=tcp:SB_IP:6642"),
        (OVS_ENCAP_TYPE_KEY, "ovs-vsctl set Open_vSwitch . external_ids:ovn-encap-type=geneve"),
        (OVS_ENCAP_IP_KEY, "ovs-vsctl set Open_vSwitch . external_ids:ovn-encap-ip=TUNNEL_IP"),
    ):
        if ids.get(key):
            r.good(f"external_ids:{key}={ids[key]}")
        else:
            r.bad(f"the Open_vSwitch row has no external_ids:{key}; set it: {fix}")


def _controller(r: _Report, c: Controller) -> None:
    if not c.running:
        r.bad(
            f"ovn-controller is not running (no live process in {c.where}); start it "
            "(systemctl start ovn-controller, or --ovn-rundir if it runs elsewhere)"
        )
    elif c.status == "connected":
        r.good(f"ovn-controller (pid {c.pid}) is connected to the southbound database")
    else:
        r.bad(
            f"ovn-controller (pid {c.pid}) is not connected to the southbound database "
            f"({c.status}): check external_ids:ovn-remote and that the SB cluster is reachable"
        )


def _bridge(r: _Report, bridge: str, wanted: str, probe: Probe) -> None:
    datapath = probe.bridge_datapath(bridge)
    if datapath is None:
        r.bad(
            f"the integration bridge {bridge} does not exist: ovn-controller creates it once "
            "it runs"
        )
    elif datapath != wanted:
        r.bad(
            f"{bridge} has datapath_type {datapath} but external_ids:{BRIDGE_DATAPATH_KEY} asks "
            f"for {wanted}: set one to the other (the tunnels and br-int must share a datapath)"
        )
    else:
        r.good(f"{bridge} exists (datapath {datapath})")


def _encap(r: _Report, encap_ip: str, wanted: str, probe: Probe) -> None:
    if not encap_ip:
        return  # said by _chassis_keys
    device = probe.device_of_address(encap_ip)
    if device is None:
        r.bad(
            f"no device holds ovn-encap-ip {encap_ip}: tunnels cannot start; put the "
            "address on the host (with the userspace datapath: on an OVS bridge's internal "
            "port, e.g. br-phy holding the underlay NIC)"
        )
    elif wanted == NETDEV and probe.interface_type(device) != "internal":
        r.bad(
            f"ovn-encap-ip {encap_ip} is on {device}, which is not an OVS bridge's internal "
            "port: userspace (netdev) tunnels are routed through OVS's own ports only; move "
            "the address to an internal port (e.g. br-phy, with the underlay NIC as its port)"
        )
    else:
        r.good(f"ovn-encap-ip {encap_ip} is on {device}")


def _heartbeat(
    r: _Report,
    system_id: str,
    host_state: Callable[[str], HostState | None],
    *,
    fence_period: float,
    now: float,
) -> None:
    try:
        state = host_state(system_id)
    except PluginError as e:
        r.bad(f"cannot read this host's heartbeat: {e}")
        return
    if state is None:
        r.bad(
            f"no heartbeat of this host ({system_id}) in the northbound database: is the "
            "plugin serving with --ovn-nb?"
        )
        return
    if state.fenced:
        r.bad(
            f"this host ({system_id}) is FENCED (after {state.fenced_after or 0:.0f} s without "
            "heartbeat): its addresses were freed; the plugin tears down its endpoints of them "
            "and clears the mark when it reconnects"
        )
        return
    try:
        age: float | None = now - float(state.heartbeat)
    except ValueError:
        age = None
    if age is None or age > fence_period / 2:
        shown = "?" if age is None else f"{age:.0f}"
        r.bad(
            f"this host's last heartbeat is {shown} s old (fence after {fence_period:.0f} s): "
            "is the plugin serving and connected?"
        )
    else:
        r.good(f"this host's heartbeat is {age:.0f} s old (fence period {fence_period:.0f} s)")
