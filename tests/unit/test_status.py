"""`docker-ovs-plugin status`: what it collects, and the table and JSON it prints."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, ip_interface, ip_network

from docker_ovs_plugin.service.model import Endpoint, Mode, Network, PortMapping, Subnet
from docker_ovs_plugin.service.ports import Attachment, DockerNetwork, PortInfo
from docker_ovs_plugin.status import (
    Report,
    collect,
    render_json,
    render_table,
)

NET_A = "a1" * 32
NET_B = "b2" * 32
NET_OTHER = "c3" * 32
EP_1 = "11" * 32
EP_2 = "22" * 32
EP_3 = "33" * 32


def _net(nid: str, driver: str = "ovs", vlan: int | None = None) -> Network:
    return Network(
        network_id=nid,
        bridge="ovsbr-" + nid[:8],
        mtu=1500,
        driver=driver,
        mode=Mode.NAT,
        vlan=vlan,
        ipv4=(Subnet(ip_network("10.77.0.0/24"), ip_interface("10.77.0.1/24")),),
    )


def _ep(eid: str, nid: str, ip: str, driver: str = "ovs") -> Endpoint:
    return Endpoint(
        endpoint_id=eid,
        network_id=nid,
        mac="02:42:0a:4d:00:" + ip.partition("/")[0].rpartition(".")[2].zfill(2),
        ipv4=IPv4Interface(ip),
        driver=driver,
    )


class Records:
    def __init__(self, networks: list[Network], endpoints: list[Endpoint]) -> None:
        self.networks = networks
        self.endpoints = endpoints

    def list_networks(self) -> list[Network]:
        return self.networks

    def list_endpoints(self) -> list[Endpoint]:
        return self.endpoints


class Ports:
    def __init__(self, ports: dict[str, PortInfo]) -> None:
        self._ports = ports

    def ports(self) -> dict[str, PortInfo]:
        return self._ports


class Docker:
    def __init__(self, known: dict[str, DockerNetwork], fail: bool = False) -> None:
        self.known = known
        self.fail = fail
        self.asked: list[str] = []

    def networks(self, network_ids: Iterable[str]) -> dict[str, DockerNetwork]:
        if self.fail:
            raise ConnectionError("docker.sock: connection refused")
        self.asked = list(network_ids)
        return {k: v for k, v in self.known.items() if k in self.asked}


def _setup() -> tuple[Records, Ports, Docker]:
    ep1 = replace(
        _ep(EP_1, NET_A, "10.77.0.2/24"),
        port_mappings=(
            PortMapping("tcp", 80, 8080),
            PortMapping("udp", 53, 5353, IPv4Address("127.0.0.1")),
        ),
    )
    ep2 = _ep(EP_2, NET_A, "10.77.0.3/24")
    ep3 = _ep(EP_3, NET_OTHER, "10.77.0.4/24", driver="ovsother")
    records = Records(
        [_net(NET_A), _net(NET_B, vlan=100), _net(NET_OTHER, driver="ovsother")],
        [ep1, ep2, ep3],
    )
    ports = Ports(
        {
            ep1.host_if: PortInfo(
                bridge="ovsbr-a1a1a1a1",
                ofport=1,
                vlan=None,
                link_state="up",
                statistics={"rx_packets": 12, "tx_packets": 34, "rx_dropped": 0, "tx_dropped": 5},
            ),
            ep2.host_if: PortInfo(bridge="ovsbr-a1a1a1a1", ofport=2, vlan=None),
        }
    )
    docker = Docker(
        {
            NET_A: DockerNetwork(
                name="web-net",
                driver="ovs",
                attachments={EP_1: Attachment(container_id="f" * 64, container="web")},
            ),
            NET_B: DockerNetwork(name="vlan-net", driver="ovs", attachments={}),
        }
    )
    return records, ports, docker


def test_collect_keeps_only_this_driver_and_joins_ovs_and_docker() -> None:
    records, ports, docker = _setup()
    report = collect(records, ports, docker, "ovs")
    assert [n.network_id for n in report.networks] == [NET_A, NET_B]
    assert sorted(docker.asked) == sorted([NET_A, NET_B])  # never another driver's networks
    net_a = report.networks[0]
    assert net_a.name == "web-net"
    assert net_a.subnets == ("10.77.0.0/24",)
    assert net_a.gateways == ("10.77.0.1",)
    ep1, ep2 = net_a.endpoints
    assert (ep1.container, ep1.ipv4, ep1.port, ep1.ofport) == (
        "web",
        "10.77.0.2/24",
        "ovp" + EP_1[:12],
        1,
    )
    assert ep1.statistics["rx_packets"] == 12
    assert ep2.container is None  # Docker does not list it (yet): shown as "-"
    assert report.networks[1].vlan == 100
    assert report.warnings == ()


def test_collect_all_drivers() -> None:
    records, ports, docker = _setup()
    report = collect(records, ports, docker, None)
    assert {n.driver for n in report.networks} == {"ovs", "ovsother"}
    assert any("not in Docker" in w for w in report.warnings)  # NET_OTHER is unknown to Docker
    assert any("is not in OVS" in w for w in report.warnings)  # EP_3's port is missing


def test_docker_down_still_shows_ovs_side() -> None:
    records, ports, _ = _setup()
    report = collect(records, ports, Docker({}, fail=True), "ovs")
    assert len(report.networks) == 2
    assert report.networks[0].name is None
    assert report.networks[0].endpoints[0].ofport == 1
    assert len(report.warnings) == 1
    assert "cannot ask Docker" in report.warnings[0]


def test_table_has_one_aligned_row_per_endpoint() -> None:
    records, ports, docker = _setup()
    text = render_table(collect(records, ports, docker, "ovs"))
    lines = text.splitlines()
    assert lines[0].split() == [
        "NETWORK", "ID", "NAME", "DRIVER", "BRIDGE", "MODE", "VLAN", "SUBNETS", "GATEWAYS",
        "ENDPOINTS",
    ]  # fmt: skip
    assert lines[1].split() == [
        NET_A[:12], "web-net", "ovs", "ovsbr-a1a1a1a1", "nat", "-", "10.77.0.0/24", "10.77.0.1",
        "2",
    ]  # fmt: skip
    assert lines[2].split()[:6] == [NET_B[:12], "vlan-net", "ovs", "ovsbr-b2b2b2b2", "nat", "100"]
    header = lines[4]
    assert header.split() == [
        "CONTAINER", "NETWORK", "IP", "MAC", "OVS", "PORT", "OFPORT", "VLAN", "RX", "PKTS", "TX",
        "PKTS", "RX", "DROP", "TX", "DROP", "PORTS",
    ]  # fmt: skip
    row1, row2 = lines[5], lines[6]
    assert row1.split() == [
        "web", "web-net", "10.77.0.2", "02:42:0a:4d:00:02", "ovp" + EP_1[:12], "1", "-", "12",
        "34", "0", "5", "0.0.0.0:8080->80/tcp,127.0.0.1:5353->53/udp",
    ]  # fmt: skip
    assert row2.split() == [
        "-", "web-net", "10.77.0.3", "02:42:0a:4d:00:03", "ovp" + EP_2[:12], "2", "-", "-", "-",
        "-", "-", "-",
    ]  # fmt: skip
    # Columns line up: every row puts the MAC where the header says MAC.
    col = header.index("MAC")
    assert row1[col:].startswith("02:42") and row2[col:].startswith("02:42")
    # Numbers are right-aligned under their header.
    ofport_end = header.index("OFPORT") + len("OFPORT")
    assert row1[ofport_end - 1] == "1"


def test_table_without_networks_says_so() -> None:
    text = render_table(Report(driver="ovs", networks=()))
    assert text == "no networks of driver 'ovs' in Open vSwitch\n"


def test_table_shows_warnings_last() -> None:
    records, ports, _ = _setup()
    text = render_table(collect(records, ports, Docker({}, fail=True), "ovs"))
    assert text.splitlines()[-1].startswith("warning: cannot ask Docker")


def test_json_is_complete_and_machine_readable() -> None:
    records, ports, docker = _setup()
    data = json.loads(render_json(collect(records, ports, docker, "ovs")))
    assert data["driver"] == "ovs"
    assert data["warnings"] == []
    net = data["networks"][0]
    assert net["id"] == NET_A
    assert net["name"] == "web-net"
    assert net["bridge"] == "ovsbr-a1a1a1a1"
    assert net["mode"] == "nat"
    assert net["subnets"] == ["10.77.0.0/24"]
    ep = net["endpoints"][0]
    assert ep == {
        "id": EP_1,
        "container": "web",
        "container_id": "f" * 64,
        "ipv4": "10.77.0.2/24",
        "ipv6": None,
        "mac": "02:42:0a:4d:00:02",
        "port": "ovp" + EP_1[:12],
        "ofport": 1,
        "vlan": None,
        "link_state": "up",
        "statistics": {"rx_packets": 12, "tx_packets": 34, "rx_dropped": 0, "tx_dropped": 5},
        "ports": ["0.0.0.0:8080->80/tcp", "127.0.0.1:5353->53/udp"],
    }
