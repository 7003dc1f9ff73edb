from __future__ import annotations

import ipaddress
from ipaddress import IPv4Interface, IPv6Interface

import pytest

from docker_ovs_plugin import contract
from docker_ovs_plugin.service.model import (
    CorruptState,
    Endpoint,
    Network,
    Subnet,
    network_key,
    networks_on_bridge,
    owned,
)

EID = "0123456789abcdef" * 4


def test_names_fit_ifnamsiz_and_are_deterministic() -> None:
    for name in (
        contract.default_bridge_name(EID),
        contract.host_veth_name(EID),
        contract.container_veth_name(EID),
    ):
        assert len(name) <= contract.IFNAMSIZ
    assert contract.host_veth_name(EID) == "ovp0123456789ab"
    assert contract.container_veth_name(EID) == "ovc0123456789ab"
    assert contract.default_bridge_name(EID) == "ovsbr-01234567"


def test_network_round_trips_through_external_ids() -> None:
    net = Network(
        network_id=EID,
        bridge="br0",
        mtu=1400,
        internal=True,
        ipv4=(
            Subnet(ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_interface("10.0.0.1/24")),
            Subnet(ipaddress.ip_network("10.0.1.0/24")),
        ),
        ipv6=(Subnet(ipaddress.ip_network("fd00::/64"), ipaddress.ip_interface("fd00::1/64")),),
        options={"ovs.mtu": "1400"},
    )
    ids = {**owned(), network_key(EID): net.to_json(), "unrelated": "x"}
    assert ids["owner"] == "docker-ovs-plugin"
    assert networks_on_bridge("br0", ids) == [net]


def test_endpoint_round_trips_and_uses_ovs_integration_keys() -> None:
    ep = Endpoint(
        EID,
        "f" * 64,
        "02:42:0a:00:00:02",
        IPv4Interface("10.0.0.2/24"),
        IPv6Interface("fd00::2/64"),
    )
    ids = ep.to_external_ids()
    assert (ids["iface-id"], ids["attached-mac"], ids["iface-status"]) == (
        EID,
        "02:42:0a:00:00:02",
        "active",
    )
    assert Endpoint.from_external_ids(ids) == ep


def test_gateway_for_picks_the_subnet_of_the_address() -> None:
    net = Network(
        network_id=EID,
        bridge="br0",
        mtu=1500,
        ipv4=(
            Subnet(ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_interface("10.0.0.1/24")),
            Subnet(ipaddress.ip_network("10.0.1.0/24"), ipaddress.ip_interface("10.0.1.1/24")),
        ),
    )
    gw = net.gateway_for(IPv4Interface("10.0.1.9/24"))
    assert gw is not None
    assert str(gw.ip) == "10.0.1.1"
    assert net.gateway_for(None) is None


@pytest.mark.parametrize(
    "text",
    ["{", "[]", '{"mtu": "x"}', '{"mtu": 1500, "mode": "bogus"}', '{"mtu": 1500, "ipv4": [{}]}'],
)
def test_corrupt_network_records_are_reported(text: str) -> None:
    with pytest.raises(CorruptState, match="br0"):
        networks_on_bridge("br0", {network_key(EID): text})
