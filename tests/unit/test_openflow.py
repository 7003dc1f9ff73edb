"""OpenFlow 1.3 encoding of the port security flows (the switch itself is tested end to end)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface

from docker_ovs_plugin.adapters.openflow import (
    OFPFC_ADD,
    OFPFC_DELETE,
    flow_mod_add,
    flow_mod_delete_cookie,
    link_local,
    port_security_flows,
)
from docker_ovs_plugin.service.model import Endpoint

EP = Endpoint(
    "c" * 64,
    "a" * 64,
    "02:42:0a:01:00:05",
    IPv4Interface("10.1.0.5/24"),
    IPv6Interface("fd00::5/64"),
)


def test_link_local_is_eui64_of_the_mac() -> None:
    assert link_local("02:42:0a:01:00:05") == IPv6Address("fe80::42:aff:fe01:5")


def test_flows_allow_own_addresses_then_drop_the_rest() -> None:
    flows = port_security_flows(EP, 7)
    assert [f.priority for f in flows] == [200] * 5 + [100]
    assert [f.normal for f in flows] == [True] * 5 + [False]
    in_port = struct.pack("!HBBI", 0x8000, 0, 4, 7)
    assert all(f.match[0] == in_port for f in flows)
    v4 = flows[0].match
    assert v4[2] == struct.pack("!HBBH", 0x8000, 5 << 1, 2, 0x0800)
    assert v4[3] == struct.pack("!HBB", 0x8000, 11 << 1, 4) + bytes([10, 1, 0, 5])


def test_messages_are_well_formed() -> None:
    cookie = EP.cookie
    for flow in port_security_flows(EP, 7):
        msg = flow_mod_add(cookie, flow, xid=9)
        version, kind, length, xid = struct.unpack("!BBHI", msg[:8])
        assert (version, kind, length, xid) == (4, 14, len(msg), 9)
        assert len(msg) % 8 == 0
        got_cookie, mask, table, command = struct.unpack("!QQBB", msg[8:26])
        assert (got_cookie, mask, table, command) == (cookie, 0, 0, OFPFC_ADD)
        match_type, match_len = struct.unpack("!HH", msg[48:52])
        assert match_type == 1 and match_len == 4 + sum(len(m) for m in flow.match)
    delete = flow_mod_delete_cookie(cookie, xid=10)
    assert struct.unpack("!QQBB", delete[8:26]) == (cookie, 2**64 - 1, 0xFF, OFPFC_DELETE)
    assert len(delete) == 56 and struct.unpack("!HH", delete[48:52]) == (1, 4)
