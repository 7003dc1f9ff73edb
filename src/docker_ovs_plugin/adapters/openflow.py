"""OpenFlow rules: port security of endpoints.

Flows live only in ovs-vswitchd (not in OVSDB) and vanish when it restarts, so every install is a
complete, idempotent replacement: delete the endpoint's cookie, add its flows, wait for a barrier.
Cookies are (network id, endpoint id) prefixes, so flows can be listed and removed exactly.

Why a small OpenFlow 1.3 client of our own on the hot path: `ovs-ofctl` costs a process start
and a new connection per call (10-30 ms, a third of CreateEndpoint), and the maintained Python
OpenFlow stack (os-ken) brings an event loop and oslo.config for four message types. This module
speaks exactly HELLO, ECHO, FLOW_MOD and BARRIER over the bridge's local management socket
(BRIDGE.mgmt), one persistent connection per bridge. Listing flows (reconcile, not hot) still
uses `ovs-ofctl dump-flows`.
"""

from __future__ import annotations

import logging
import re
import socket
import struct
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import Endpoint, Network

LOG = logging.getLogger(__name__)

ALLOW_PRIORITY = 200
DROP_PRIORITY = 100

OFP_VERSION = 0x04  # OpenFlow 1.3
OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 1, 2, 3
OFPT_FLOW_MOD, OFPT_BARRIER_REQUEST, OFPT_BARRIER_REPLY = 14, 20, 21
OFPFC_ADD, OFPFC_DELETE = 0, 3
OFPP_NORMAL, OFPP_ANY = 0xFFFFFFFA, 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPTT_ALL = 0xFF
OFP_NO_BUFFER = 0xFFFFFFFF
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT = 0
OFPFF_SEND_FLOW_REM = 0

ETH_IPV4, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
IPPROTO_ICMPV6 = 58

# OXM fields of class OPENFLOW_BASIC (0x8000): (field number, value length)
IN_PORT, ETH_SRC, ETH_TYPE, IP_PROTO = (0, 4), (4, 6), (5, 2), (10, 1)
IPV4_SRC, ARP_SPA, ARP_SHA, IPV6_SRC = (11, 4), (22, 4), (24, 6), (26, 16)

_HEADER = struct.Struct("!BBHI")


def _oxm(field: tuple[int, int], value: bytes) -> bytes:
    number, length = field
    if len(value) != length:
        raise ValueError(f"OXM field {number} takes {length} bytes, not {len(value)}")
    return struct.pack("!HBB", 0x8000, number << 1, length) + value


def _match(fields: Iterable[bytes]) -> bytes:
    body = b"".join(fields)
    length = 4 + len(body)  # ofp_match header counts, padding does not
    padded = body + bytes((8 - length % 8) % 8)
    return struct.pack("!HH", 1, length) + padded  # type 1: OXM


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


@dataclass(frozen=True)
class Flow:
    priority: int
    match: tuple[bytes, ...]  # OXM TLVs
    normal: bool  # output NORMAL, else drop


def link_local(mac: str) -> IPv6Address:
    """The EUI-64 link-local address the kernel derives from a MAC."""
    b = _mac(mac)
    eui = bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def port_security_flows(endpoint: Endpoint, ofport: int) -> list[Flow]:
    """Flows that let the port send only from its MAC and its addresses; the rest is dropped."""
    port = _oxm(IN_PORT, struct.pack("!I", ofport))
    mac = _mac(endpoint.mac)
    src = _oxm(ETH_SRC, mac)

    def allow(*more: bytes) -> Flow:
        return Flow(ALLOW_PRIORITY, (port, src, *more), normal=True)

    def eth(kind: int) -> bytes:
        return _oxm(ETH_TYPE, struct.pack("!H", kind))

    flows = []
    if endpoint.ipv4 is None and endpoint.ipv6 is None:
        flows.append(allow())  # no address known: pin the MAC only
    if endpoint.ipv4 is not None:
        ip = endpoint.ipv4.ip.packed
        flows.append(allow(eth(ETH_IPV4), _oxm(IPV4_SRC, ip)))
        flows.append(allow(eth(ETH_ARP), _oxm(ARP_SPA, ip), _oxm(ARP_SHA, mac)))
    if endpoint.ipv6 is not None:
        flows.append(allow(eth(ETH_IPV6), _oxm(IPV6_SRC, endpoint.ipv6.ip.packed)))
        flows.append(allow(eth(ETH_IPV6), _oxm(IPV6_SRC, link_local(endpoint.mac).packed)))
        # Duplicate address detection and MLD reports are sent from the unspecified address.
        flows.append(
            allow(
                eth(ETH_IPV6),
                _oxm(IP_PROTO, bytes([IPPROTO_ICMPV6])),
                _oxm(IPV6_SRC, IPv6Address(0).packed),
            )
        )
    flows.append(Flow(DROP_PRIORITY, (port,), normal=False))
    return flows


def flow_mod_add(cookie: int, flow: Flow, xid: int) -> bytes:
    instructions = b""
    if flow.normal:
        action = struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, OFPP_NORMAL, 0xFFFF)
        instructions = struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(action)) + action
    body = (
        struct.pack(
            "!QQBBHHHIIIH2x",
            cookie,
            0,
            0,
            OFPFC_ADD,
            0,
            0,
            flow.priority,
            OFP_NO_BUFFER,
            OFPP_ANY,
            OFPG_ANY,
            OFPFF_SEND_FLOW_REM,
        )
        + _match(flow.match)
        + instructions
    )
    return _HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, 8 + len(body), xid) + body


def flow_mod_delete_cookie(cookie: int, xid: int) -> bytes:
    body = struct.pack(
        "!QQBBHHHIIIH2x",
        cookie,
        0xFFFFFFFFFFFFFFFF,
        OFPTT_ALL,
        OFPFC_DELETE,
        0,
        0,
        0,
        OFP_NO_BUFFER,
        OFPP_ANY,
        OFPG_ANY,
        0,
    ) + _match(())
    return _HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, 8 + len(body), xid) + body


class _Connection:
    """One OpenFlow session with a bridge's management socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._xid = 0
        try:
            self._sock.connect(str(path))
            self._send(OFPT_HELLO, b"")
            kind, _, _ = self._receive()
            if kind != OFPT_HELLO:
                raise OSError(f"expected HELLO, got message type {kind}")
        except BaseException:
            self._sock.close()
            raise

    def _next_xid(self) -> int:
        self._xid = (self._xid + 1) & 0xFFFFFFFF
        return self._xid

    def _send(self, kind: int, body: bytes) -> int:
        xid = self._next_xid()
        self._sock.sendall(_HEADER.pack(OFP_VERSION, kind, 8 + len(body), xid) + body)
        return xid

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise OSError("connection closed by ovs-vswitchd")
            data += chunk
        return data

    def _receive(self) -> tuple[int, int, bytes]:
        _, kind, length, xid = _HEADER.unpack(self._read_exact(8))
        return kind, xid, self._read_exact(length - 8)

    def transact(self, messages: list[bytes]) -> None:
        """Send flow mods (already carrying xids), then a barrier; raise on any error."""
        self._sock.sendall(b"".join(messages))
        barrier = self._send(OFPT_BARRIER_REQUEST, b"")
        errors = []
        while True:
            kind, xid, body = self._receive()
            if kind == OFPT_ECHO_REQUEST:
                self._sock.sendall(
                    _HEADER.pack(OFP_VERSION, OFPT_ECHO_REPLY, 8 + len(body), xid) + body
                )
            elif kind == OFPT_ERROR:
                err_type, code = struct.unpack("!HH", body[:4])
                errors.append(f"OpenFlow error type {err_type} code {code}")
            elif kind == OFPT_BARRIER_REPLY and xid == barrier:
                break
        if errors:
            raise BackendError("ovs-vswitchd refused flows: " + "; ".join(errors))

    def xid(self) -> int:
        return self._next_xid()

    def close(self) -> None:
        self._sock.close()


class OpenFlowFlows:
    def __init__(self, rundir: Path, timeout: float = 5.0) -> None:
        self._rundir = rundir
        self._timeout = timeout
        self._lock = threading.Lock()  # one request at a time per connection
        self._connections: dict[str, _Connection] = {}

    def _target(self, bridge: str) -> Path:
        return self._rundir / f"{bridge}.mgmt"

    def _apply(self, bridge: str, cookie: int, flows: list[Flow]) -> None:
        """Replace the flows of `cookie` by `flows` (none: just delete), up to a barrier."""
        with self._lock:
            for attempt in (1, 2):  # a connection from before an ovs-vswitchd restart is dead
                conn = self._connections.get(bridge)
                try:
                    if conn is None:
                        conn = _Connection(self._target(bridge), self._timeout)
                        self._connections[bridge] = conn
                    messages = [flow_mod_delete_cookie(cookie, conn.xid())]
                    messages += [flow_mod_add(cookie, f, conn.xid()) for f in flows]
                    conn.transact(messages)
                    return
                except OSError as e:
                    self._drop(bridge)
                    if attempt == 2:
                        raise BackendError(
                            f"cannot program flows on bridge {bridge} ({self._target(bridge)}): {e}"
                        ) from e
                except BackendError:
                    self._drop(bridge)
                    raise

    def _drop(self, bridge: str) -> None:
        conn = self._connections.pop(bridge, None)
        if conn is not None:
            conn.close()

    def install_endpoint(self, network: Network, endpoint: Endpoint, ofport: int) -> None:
        self._apply(network.bridge, endpoint.cookie, port_security_flows(endpoint, ofport))

    def remove_endpoint(self, network: Network, endpoint: Endpoint) -> None:
        self.remove_cookie(network.bridge, endpoint.cookie)

    def remove_cookie(self, bridge: str, cookie: int) -> None:
        if not self._target(bridge).exists():
            with self._lock:
                self._drop(bridge)  # no bridge, no flows
            return
        self._apply(bridge, cookie, [])

    def cookies(self, bridge: str) -> set[int]:
        if not self._target(bridge).exists():
            return set()
        argv = ["ovs-ofctl", "dump-flows", f"unix:{self._target(bridge)}"]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self._timeout * 2, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendError(f"ovs-ofctl did not run: {e}") from e
        if result.returncode != 0:
            raise BackendError(f"ovs-ofctl dump-flows {bridge} failed: {result.stderr.strip()}")
        return {int(c, 16) for c in _COOKIE_RE.findall(result.stdout)} - {0}

    def close(self) -> None:
        with self._lock:
            for bridge in list(self._connections):
                self._drop(bridge)


_COOKIE_RE = re.compile(r"cookie=0x([0-9a-f]+)")
