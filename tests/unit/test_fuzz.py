"""Property-based fuzzing of every endpoint of the HTTP layer (the driver on in-memory adapters).

Whatever arrives, the plugin answers with JSON, never a 500, and a refused request changes
nothing. The end-to-end suite runs a smaller campaign against the real plugin.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docker_ovs_plugin.http.routes import build_routes
from docker_ovs_plugin.http.server import PluginServer
from docker_ovs_plugin.service.driver import Driver

from .fakes import FakeFirewall, FakeFlows, FakeLinks, FakeSwitch
from .test_server import call

PATHS = [
    "/Plugin.Activate",
    "/NetworkDriver.GetCapabilities",
    "/NetworkDriver.CreateNetwork",
    "/NetworkDriver.DeleteNetwork",
    "/NetworkDriver.CreateEndpoint",
    "/NetworkDriver.DeleteEndpoint",
    "/NetworkDriver.Join",
    "/NetworkDriver.Leave",
    "/NetworkDriver.EndpointOperInfo",
    "/NetworkDriver.ProgramExternalConnectivity",
    "/NetworkDriver.RevokeExternalConnectivity",
    "/NetworkDriver.AllocateNetwork",
    "/NetworkDriver.FreeNetwork",
    "/NetworkDriver.DiscoverNew",
    "/NetworkDriver.DiscoverDelete",
    "/NetworkDriver.Nope",
    "/",
    "/Plugin.Activate/extra",
]
IDS = ["1" * 64, "2" * 64, "f" * 64]

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.sampled_from(IDS) | st.text(max_size=70)
cidrs = st.sampled_from(
    [
        "10.9.0.0/24",
        "10.9.0.1/24",
        "10.9.0.2/24",
        "0.0.0.0/0",
        "fd00::/64",
        "fd00::2/64",
        "300.1.1.1/24",
        "10.9.0.0/33",
        "",
        "x",
    ]
) | st.text(max_size=20)
options = st.dictionaries(
    st.sampled_from(
        [
            "ovs.mode",
            "ovs.vlan",
            "ovs.mtu",
            "ovs.bridge.name",
            "ovs.icc",
            "ovs.bridge.uplink",
            "ovs.port_security",
            "ovs.bogus",
            "com.docker.network.driver.mtu",
            "com.docker.network.container_iface_prefix",
            "com.docker.network.bridge.host_binding_ipv4",
        ]
    ),
    st.sampled_from(
        [
            "nat",
            "flat",
            "routed",
            "10",
            "0",
            "4095",
            "1400",
            "br0",
            "eth1",
            "true",
            "false",
            "a b",
            "x" * 20,
            "198.51.100.1",
        ]
    )
    | json_values,
    max_size=4,
)
ipam = st.lists(
    st.fixed_dictionaries(
        {"AddressSpace": st.text(max_size=5), "Pool": cidrs},
        optional={"Gateway": cidrs, "AuxAddresses": json_values},
    ),
    max_size=2,
)
portmap = st.lists(
    st.fixed_dictionaries(
        {
            "Proto": st.sampled_from([6, 17, 132, 1, -1]),
            "Port": st.integers(-1, 70000),
            "HostPort": st.integers(-1, 70000),
        },
        optional={"HostIP": st.sampled_from(["", "0.0.0.0", "::", "10.0.0.1", "bad"])},
    ),
    max_size=2,
)
structured = st.fixed_dictionaries(
    {},
    optional={
        "NetworkID": ids,
        "EndpointID": ids,
        "Options": st.fixed_dictionaries(
            {},
            optional={
                "com.docker.network.generic": options | json_values,
                "com.docker.network.internal": json_values,
                "com.docker.network.portmap": portmap | json_values,
            },
        )
        | json_values,
        "IPv4Data": ipam | json_values,
        "IPv6Data": ipam | json_values,
        "Interface": st.fixed_dictionaries(
            {},
            optional={
                "Address": cidrs,
                "AddressIPv6": cidrs,
                "MacAddress": st.sampled_from(["", "02:42:0a:09:00:02", "zz"]),
            },
        )
        | json_values,
        "SandboxKey": st.text(max_size=30),
    },
)
bodies = (
    structured.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
)


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.switch, self.links = FakeSwitch(), FakeLinks()
        self.firewall, self.flows = FakeFirewall(), FakeFlows(switch=self.switch)
        self.links.host_devices.add("eth1")
        driver = Driver(self.switch, self.links, self.firewall, self.flows, datapath_type="netdev")
        self.server = PluginServer(tmp / "fuzz.sock", build_routes(driver))
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def state(self) -> Any:
        return copy.deepcopy(
            (
                self.switch.bridges,
                self.switch.ports,
                self.switch.port_columns,
                self.links.links,
                self.links.assigned,
                self.firewall.networks,
                self.firewall.published,
                self.flows.endpoints,
            )
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fuzz"))
    yield h
    h.close()


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(path=st.sampled_from(PATHS), body=bodies)
def test_every_request_gets_json_and_errors_change_nothing(
    harness: Harness, path: str, body: bytes
) -> None:
    before = harness.state()
    status, reply = call(harness.server, path, body)
    assert status in (200, 400, 404, 409), (status, reply)
    assert isinstance(reply, dict)
    if status != 200:
        assert isinstance(reply.get("Err"), str) and reply["Err"]
        assert harness.state() == before, f"{path} failed with {reply} but changed state"
