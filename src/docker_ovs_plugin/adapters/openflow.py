"""OpenFlow rules through ovs-ofctl: port security of endpoints.

Flows live only in ovs-vswitchd (not in OVSDB) and vanish when it restarts, so every install is a
complete, idempotent replacement: one atomic bundle deletes the endpoint's cookie and adds its
flows. Cookies are (network id, endpoint id) prefixes, so flows can be listed and removed exactly.
Why ovs-ofctl: it is OVS's own OpenFlow client and speaks to the bridge's local management socket;
a Python OpenFlow stack (os-ken) would bring an event loop and a controller framework for a
handful of flow mods. The flow text is built from validated names, MACs and ipaddress objects,
and passed on stdin, never through a shell.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
from ipaddress import IPv6Address
from pathlib import Path

from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import Endpoint, Network

LOG = logging.getLogger(__name__)

ALLOW_PRIORITY = 200
DROP_PRIORITY = 100


def link_local(mac: str) -> IPv6Address:
    """The EUI-64 link-local address the kernel derives from a MAC."""
    b = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def port_security_flows(endpoint: Endpoint) -> list[str]:
    """Flows that let the port send only from its MAC and its addresses; the rest is dropped."""
    port = endpoint.host_if
    mac = endpoint.mac
    head = f"cookie={endpoint.cookie:#x},table=0"
    allow = f"{head},priority={ALLOW_PRIORITY},in_port={port},dl_src={mac}"
    flows = []
    if endpoint.ipv4 is None and endpoint.ipv6 is None:
        flows.append(f"{allow},actions=NORMAL")  # no address known: pin the MAC only
    if endpoint.ipv4 is not None:
        ip = endpoint.ipv4.ip
        flows.append(f"{allow},ip,nw_src={ip},actions=NORMAL")
        flows.append(f"{allow},arp,arp_spa={ip},arp_sha={mac},actions=NORMAL")
    if endpoint.ipv6 is not None:
        flows.append(f"{allow},ipv6,ipv6_src={endpoint.ipv6.ip},actions=NORMAL")
        flows.append(f"{allow},ipv6,ipv6_src={link_local(mac)},actions=NORMAL")
        # Duplicate address detection and MLD reports are sent from the unspecified address.
        flows.append(f"{allow},icmp6,ipv6_src={ipaddress.IPv6Address(0)},actions=NORMAL")
    flows.append(f"{head},priority={DROP_PRIORITY},in_port={port},actions=drop")
    return flows


class OfctlFlows:
    def __init__(self, rundir: Path, timeout: float = 10.0) -> None:
        self._rundir = rundir
        self._timeout = timeout

    def _target(self, bridge: str) -> Path:
        return self._rundir / f"{bridge}.mgmt"

    def _ofctl(self, command: str, bridge: str, *args: str, stdin: str | None = None) -> str:
        # --bundle: the whole change applies atomically, or not at all.
        bundle = ["--bundle"] if command != "dump-flows" else []
        argv = ["ovs-ofctl", *bundle, command, f"unix:{self._target(bridge)}", *args]
        try:
            result = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendError(f"ovs-ofctl did not run: {e}") from e
        if result.returncode != 0:
            raise BackendError(
                f"ovs-ofctl {command} on bridge {bridge} failed: {result.stderr.strip()}"
            )
        return result.stdout

    def install_endpoint(self, network: Network, endpoint: Endpoint) -> None:
        lines = [f"delete cookie={endpoint.cookie:#x}/-1"]
        lines += [f"add {f}" for f in port_security_flows(endpoint)]
        self._ofctl("add-flows", network.bridge, "-", stdin="\n".join(lines) + "\n")

    def remove_endpoint(self, network: Network, endpoint: Endpoint) -> None:
        self.remove_cookie(network.bridge, endpoint.cookie)

    def cookies(self, bridge: str) -> set[int]:
        if not self._target(bridge).exists():
            return set()
        found = {int(c, 16) for c in _COOKIE_RE.findall(self._ofctl("dump-flows", bridge))}
        return found - {0}

    def remove_cookie(self, bridge: str, cookie: int) -> None:
        if self._target(bridge).exists():  # no bridge, no flows
            self._ofctl("del-flows", bridge, f"cookie={cookie:#x}/-1")


_COOKIE_RE = re.compile(r"cookie=0x([0-9a-f]+)")
