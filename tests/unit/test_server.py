"""The HTTP protocol layer over a real unix socket, with the driver on in-memory adapters."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_ovs_plugin.http.routes import build_routes
from docker_ovs_plugin.http.server import MAX_BODY, PluginServer
from docker_ovs_plugin.service.ipam import Ipam
from docker_ovs_plugin.service.overlay import Overlay
from testbed.http import UnixHTTPConnection

from .fakes import FakeIntegration, FakeLinks, FakeNorthbound, make_driver

GATEWAY = "com.docker.network.gateway"
NET = "1" * 64
EP = "2" * 64


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PluginServer]:
    driver = make_driver()
    srv = PluginServer(tmp_path / "plugins" / "ovs.sock", build_routes(driver))
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def call(srv: PluginServer, path: str, body: bytes | dict[str, Any] = b"") -> tuple[int, Any]:
    # Like Docker: no Content-Type, compact JSON with a trailing newline.
    data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
    conn = UnixHTTPConnection(srv.socket_path)
    try:
        conn.request("POST", path, body=data)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def network_body(**options: str) -> dict[str, Any]:
    return {
        "NetworkID": NET,
        "Options": {"com.docker.network.enable_ipv6": False, "com.docker.network.generic": options},
        "IPv4Data": [
            {"AddressSpace": "LocalDefault", "Pool": "10.99.0.0/24", "Gateway": "10.99.0.1/24"}
        ],
        "IPv6Data": [],
    }


def test_socket_is_root_only_and_removed_on_close(tmp_path: Path) -> None:
    driver = make_driver()
    path = tmp_path / "x.sock"
    srv = PluginServer(path, build_routes(driver))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    srv.server_close()
    assert not path.exists()


def test_stale_socket_is_replaced_but_a_file_is_not(tmp_path: Path) -> None:
    driver = make_driver()
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    PluginServer(stale, build_routes(driver)).server_close()
    regular = tmp_path / "file.sock"
    regular.write_text("x")
    with pytest.raises(FileExistsError):
        PluginServer(regular, build_routes(driver))


def test_activate_and_capabilities_with_empty_bodies(server: PluginServer) -> None:
    assert call(server, "/Plugin.Activate") == (
        200,
        {"Implements": ["NetworkDriver", "IpamDriver"]},
    )
    assert call(server, "/NetworkDriver.GetCapabilities") == (
        200,
        {"Scope": "local", "ConnectivityScope": "local"},
    )
    assert call(server, "/IpamDriver.GetCapabilities") == (
        200,
        {"RequiresMACAddress": False, "RequiresRequestReplay": False},
    )
    assert call(server, "/IpamDriver.GetDefaultAddressSpaces") == (
        200,
        {"LocalDefaultAddressSpace": "docker-ovs", "GlobalDefaultAddressSpace": "docker-ovs"},
    )


def test_ipam_without_ovn_nb_is_refused_with_err_naming_the_flag(server: PluginServer) -> None:
    status, body = call(server, "/IpamDriver.RequestPool", {"Pool": "10.90.0.0/16"})
    assert status == 400
    assert "--ovn-nb" in body["Err"]


def test_join_of_a_routed_overlay_network_sends_static_routes(tmp_path: Path) -> None:
    """Two overlay networks on one router (-o ovs.router=r1): Join gives the other's subnet
    via this network's gateway, in Docker's StaticRoutes form (RouteType 0: via NextHop)."""
    nb, integration = FakeNorthbound(), FakeIntegration()
    overlay = Overlay(nb, integration, FakeLinks(), datapath_type="netdev", join_timeout=1.0)
    overlay.load()
    routes = build_routes(make_driver(), overlay, Ipam(nb, integration))
    srv = PluginServer(tmp_path / "plugins" / "ovs.sock", routes)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        for net, subnet in ((NET, "10.90.0.0/16"), ("3" * 64, "10.91.0.0/24")):
            status, pool = call(srv, "/IpamDriver.RequestPool", {"Pool": subnet})
            assert status == 200, pool
            gw_req = {"PoolID": pool["PoolID"], "Options": {"RequestAddressType": GATEWAY}}
            status, gw = call(srv, "/IpamDriver.RequestAddress", gw_req)
            assert status == 200, gw
            body = {
                "NetworkID": net,
                "Options": {
                    "com.docker.network.generic": {"ovs.mode": "overlay", "ovs.router": "r1"}
                },
                "IPv4Data": [
                    {"AddressSpace": "docker-ovs", "Pool": subnet, "Gateway": gw["Address"]}
                ],
                "IPv6Data": [],
            }
            assert call(srv, "/NetworkDriver.CreateNetwork", body) == (200, {})
        status, address = call(srv, "/IpamDriver.RequestAddress", {"PoolID": "dop-10.90.0.0_16"})
        assert status == 200, address
        ids = {"NetworkID": NET, "EndpointID": EP}
        ep = {**ids, "Interface": {"Address": address["Address"]}, "Options": {}}
        assert call(srv, "/NetworkDriver.CreateEndpoint", ep)[0] == 200
        status, body = call(srv, "/NetworkDriver.Join", {**ids, "SandboxKey": "/x", "Options": {}})
        assert status == 200, body
        assert body["StaticRoutes"] == [
            {"Destination": "10.91.0.0/24", "RouteType": 0, "NextHop": "10.90.0.1"}
        ]
        assert "Gateway" not in body and body["DisableGatewayService"] is False
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_unknown_path_is_404_with_err(server: PluginServer) -> None:
    status, body = call(server, "/NetworkDriver.Frobnicate", {})
    assert status == 404
    assert "not implemented" in body["Err"]


def test_full_endpoint_sequence_as_docker_sends_it(server: PluginServer) -> None:
    assert call(server, "/NetworkDriver.CreateNetwork", network_body()) == (200, {})
    ep = {
        "NetworkID": NET,
        "EndpointID": EP,
        "Interface": {"Address": "10.99.0.2/24", "AddressIPv6": "", "MacAddress": ""},
        "Options": {
            "com.docker.network.endpoint.exposedports": [],
            "com.docker.network.portmap": [],
        },
    }
    status, body = call(server, "/NetworkDriver.CreateEndpoint", ep)
    assert (status, body) == (200, {"Interface": {"MacAddress": "02:42:0a:63:00:02"}})
    ids = {"NetworkID": NET, "EndpointID": EP}
    status, body = call(
        server,
        "/NetworkDriver.Join",
        {**ids, "SandboxKey": "/var/run/docker/netns/abc", "Options": {}},
    )
    assert status == 200
    assert body["InterfaceName"] == {"SrcName": "ovc" + EP[:12], "DstPrefix": "eth"}
    assert body["Gateway"] == "10.99.0.1"
    assert call(server, "/NetworkDriver.ProgramExternalConnectivity", {**ids, "Options": {}}) == (
        200,
        {},
    )
    status, body = call(server, "/NetworkDriver.EndpointOperInfo", ids)
    assert status == 200
    assert body["Value"]["port"] == "ovp" + EP[:12]
    for path in ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint"):
        assert call(server, f"/NetworkDriver.{path}", ids) == (200, {})
    assert call(server, "/NetworkDriver.DeleteNetwork", {"NetworkID": NET}) == (200, {})


def test_mac_given_by_docker_is_not_echoed(server: PluginServer) -> None:
    call(server, "/NetworkDriver.CreateNetwork", network_body())
    ep = {
        "NetworkID": NET,
        "EndpointID": EP,
        "Interface": {"Address": "10.99.0.2/24", "MacAddress": "02:42:0A:63:00:09"},
    }
    assert call(server, "/NetworkDriver.CreateEndpoint", ep) == (200, {"Interface": {}})


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/NetworkDriver.CreateNetwork", b"", "empty body"),
        ("/NetworkDriver.CreateNetwork", b"{not json", "not JSON"),
        ("/NetworkDriver.CreateNetwork", b"[1]", "JSON object"),
        ("/NetworkDriver.CreateNetwork", {"NetworkID": "xyz"}, "NetworkID"),
        (
            "/NetworkDriver.CreateNetwork",
            {"NetworkID": NET, "IPv4Data": [{"Pool": "10.0.0.0/33"}]},
            "Pool",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            {"NetworkID": NET, "IPv4Data": [{"Pool": "10.0.0.0/24", "Gateway": "10.1.0.1/24"}]},
            "not inside pool",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            {"NetworkID": NET, "IPv4Data": [{"Pool": "fd00::/64"}]},
            "IPv6 pool",
        ),
        (
            "/NetworkDriver.CreateEndpoint",
            {"NetworkID": NET, "EndpointID": EP, "Interface": {"Address": "10.0.0.300/24"}},
            "Interface.Address",
        ),
        (
            "/NetworkDriver.CreateEndpoint",
            {"NetworkID": NET, "EndpointID": EP, "Interface": {"MacAddress": "zz"}},
            "MacAddress",
        ),
        ("/NetworkDriver.Join", {"NetworkID": NET}, "EndpointID"),
    ],
)
def test_malformed_requests_get_400_and_change_nothing(
    server: PluginServer, path: str, body: bytes | dict[str, Any], fragment: str
) -> None:
    status, reply = call(server, path, body)
    assert status == 400
    assert fragment in reply["Err"]
    assert (
        call(server, "/NetworkDriver.EndpointOperInfo", {"NetworkID": NET, "EndpointID": EP})[0]
        == 404
    )


def test_bad_option_is_refused_with_a_message(server: PluginServer) -> None:
    status, body = call(server, "/NetworkDriver.CreateNetwork", network_body(**{"ovs.typo": "1"}))
    assert status == 400
    assert "unknown option(s) ovs.typo" in body["Err"]


def test_unknown_network_is_404(server: PluginServer) -> None:
    status, body = call(
        server,
        "/NetworkDriver.CreateEndpoint",
        {"NetworkID": NET, "EndpointID": EP, "Interface": {}},
    )
    assert status == 404
    assert NET[:12] in body["Err"]


def test_oversize_body_is_refused_unread(server: PluginServer) -> None:
    conn = UnixHTTPConnection(server.socket_path)
    try:
        conn.putrequest("POST", "/NetworkDriver.CreateNetwork")
        conn.putheader("Content-Length", str(MAX_BODY + 1))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413
        assert "exceeds" in json.loads(resp.read())["Err"]
    finally:
        conn.close()


def test_keep_alive_serves_several_requests_on_one_connection(server: PluginServer) -> None:
    conn = UnixHTTPConnection(server.socket_path)
    try:
        for _ in range(3):
            conn.request("POST", "/NetworkDriver.GetCapabilities", body=b"")
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
    finally:
        conn.close()


# -- requests as Docker 28.5 sends them (captured from Debian unstable's docker.io 28.5.2) -----

NET6 = "6" * 64
EP6 = "7" * 64
MAC_EP = "8" * 64


def test_docker_28_ipv6_only_network(server: PluginServer) -> None:
    # docker network create -d ovs --ipv4=false --ipv6 --subnet fd00:77::/64: enable_ipv4 is
    # false and IPv4Data empty; the endpoint has only an IPv6 address, Join only GatewayIPv6.
    created = {
        "NetworkID": NET6,
        "Options": {
            "com.docker.network.enable_ipv4": False,
            "com.docker.network.enable_ipv6": True,
            "com.docker.network.generic": {},
        },
        "IPv4Data": [],
        "IPv6Data": [
            {"AddressSpace": "LocalDefault", "Gateway": "fd00:77::1/64", "Pool": "fd00:77::/64"}
        ],
    }
    assert call(server, "/NetworkDriver.CreateNetwork", created) == (200, {})
    ports: dict[str, list[Any]] = {
        "com.docker.network.endpoint.exposedports": [],
        "com.docker.network.portmap": [],
    }
    ep = {
        "NetworkID": NET6,
        "EndpointID": EP6,
        "Interface": {"Address": "", "AddressIPv6": "fd00:77::2/64", "MacAddress": ""},
        "Options": ports,
    }
    status, body = call(server, "/NetworkDriver.CreateEndpoint", ep)
    assert status == 200 and body["Interface"]["MacAddress"].startswith("02:42:"), body
    ids = {"NetworkID": NET6, "EndpointID": EP6}
    join = {**ids, "SandboxKey": "/run/docker/netns/8e0309d4359e", "Options": ports}
    status, body = call(server, "/NetworkDriver.Join", join)
    assert status == 200
    assert body["GatewayIPv6"] == "fd00:77::1" and "Gateway" not in body, body
    program = {
        **ids,
        "Options": {"com.docker.network.driver.private.no_proxy_6to4": False, **ports},
    }
    assert call(server, "/NetworkDriver.ProgramExternalConnectivity", program) == (200, {})
    status, body = call(server, "/NetworkDriver.EndpointOperInfo", ids)
    assert status == 200
    assert body["Value"]["ipv6"] == "fd00:77::2/64" and "ipv4" not in body["Value"], body


def test_docker_28_per_endpoint_mac_and_ifname(server: PluginServer) -> None:
    # --network name=N,mac-address=…,driver-opt=com.docker.network.endpoint.ifname=foo0: the
    # MAC is Docker's (not echoed back); ifname reaches remote drivers but names nothing.
    call(server, "/NetworkDriver.CreateNetwork", network_body())
    ep = {
        "NetworkID": NET,
        "EndpointID": MAC_EP,
        "Interface": {
            "Address": "10.99.0.3/24",
            "AddressIPv6": "",
            "MacAddress": "02:42:0a:4e:00:99",
        },
        "Options": {
            "com.docker.network.endpoint.exposedports": [],
            "com.docker.network.endpoint.ifname": "foo0",
            "com.docker.network.endpoint.macaddress": "AkIKTgCZ",
            "com.docker.network.portmap": [],
        },
    }
    assert call(server, "/NetworkDriver.CreateEndpoint", ep) == (200, {"Interface": {}})
    ids = {"NetworkID": NET, "EndpointID": MAC_EP}
    status, body = call(server, "/NetworkDriver.EndpointOperInfo", ids)
    assert status == 200 and body["Value"]["mac"] == "02:42:0a:4e:00:99", body
    status, body = call(server, "/NetworkDriver.Join", {**ids, "SandboxKey": "", "Options": {}})
    assert status == 200
    assert body["InterfaceName"] == {"SrcName": "ovc" + MAC_EP[:12], "DstPrefix": "eth"}


def test_docker_29_gateway_check_is_not_announced(server: PluginServer) -> None:
    # Docker 29 sends GwAllocCheck only to drivers whose capabilities say GwAllocChecker: ours
    # do not, so it allocates gateways as 28 does; the call itself is "not implemented".
    status, caps = call(server, "/NetworkDriver.GetCapabilities")
    assert status == 200 and "GwAllocChecker" not in caps
    status, body = call(server, "/NetworkDriver.GwAllocCheck", {"Options": {}})
    assert status == 404 and "not implemented" in body["Err"]


def _program(server: PluginServer, *bindings: dict[str, Any]) -> tuple[int, Any]:
    call(server, "/NetworkDriver.CreateNetwork", network_body())
    ep = {"NetworkID": NET, "EndpointID": EP, "Interface": {"Address": "10.99.0.2/24"}}
    call(server, "/NetworkDriver.CreateEndpoint", ep)
    portmap = [{"Proto": 6, "IP": "", "Port": 80, "HostPortEnd": 0, **b} for b in bindings]
    body = {
        "NetworkID": NET,
        "EndpointID": EP,
        "Options": {"com.docker.network.portmap": portmap},
    }
    return call(server, "/NetworkDriver.ProgramExternalConnectivity", body)


def test_a_port_on_an_ipv6_host_address_is_refused(server: PluginServer) -> None:
    status, body = _program(server, {"HostIP": "::1", "HostPort": 8080})
    assert status == 400 and "[::1]:8080" in body["Err"] and "IPv4 addresses only" in body["Err"]


def test_the_ipv6_wildcard_alone_is_refused_beside_ipv4_it_is_left_out(
    server: PluginServer,
) -> None:
    status, body = _program(server, {"HostIP": "::", "HostPort": 8080})
    assert status == 400 and "[::]:8080" in body["Err"], body
    ok = _program(
        server, {"HostIP": "0.0.0.0", "HostPort": 8081}, {"HostIP": "::", "HostPort": 8081}
    )
    assert ok == (200, {})
