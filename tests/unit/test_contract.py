"""Golden test of the on-host contract (docker_ovs_plugin.contract).

Every value below is what released plugins wrote on hosts, typed out by hand. When this test
fails, a plugin built from this tree no longer finds what an earlier one left behind: write a
migration (and raise SCHEMA_VERSION), do not edit the literals here to make it pass.
"""

from __future__ import annotations

import ast
import json
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_interface, ip_network
from pathlib import Path

from docker_ovs_plugin import contract
from docker_ovs_plugin.adapters.iptables import network_rules, port_mapping_rules
from docker_ovs_plugin.service.model import (
    Endpoint,
    Mode,
    Network,
    PortMapping,
    Subnet,
    networks_on_bridge,
)

NET = "a1b2c3d4e5f60718" * 4
EP = "0f1e2d3c4b5a6978" * 4


def test_the_contract_is_a_leaf_module() -> None:
    """It imports the standard library only, so every layer may use it."""
    tree = ast.parse(Path(contract.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "typing", "hashlib"}


def test_constants_keep_their_released_values() -> None:
    expected = {
        # OVSDB tags and keys
        "OWNER_KEY": "owner",
        "OWNER": "docker-ovs-plugin",
        "SCHEMA_KEY": "docker-ovs:schema",
        "SCHEMA_VERSION": "1",
        "DRIVER_KEY": "docker-ovs:driver",
        "DEFAULT_DRIVER": "ovs",
        "NETWORK_KEY_PREFIX": "docker-ovs:network:",
        "IFACE_ID_KEY": "iface-id",
        "ATTACHED_MAC_KEY": "attached-mac",
        "IFACE_STATUS_KEY": "iface-status",
        "IFACE_STATUS_ACTIVE": "active",
        "NETWORK_ID_KEY": "docker-ovs:network-id",
        "IPV4_ADDRESS_KEY": "docker-ovs:ipv4-address",
        "IPV6_ADDRESS_KEY": "docker-ovs:ipv6-address",
        "PORTMAP_KEY": "docker-ovs:portmap",
        "ROLE_KEY": "docker-ovs:role",
        "ROLE_UPLINK": "uplink",
        "ROLE_GATEWAY": "gateway",
        # record values
        "MODE_NAT": "nat",
        "MODE_ROUTED": "routed",
        "MODE_FLAT": "flat",
        "DEFAULT_IFACE_PREFIX": "eth",
        # device names
        "IFNAMSIZ": 15,
        "BRIDGE_PREFIX": "ovsbr-",
        "HOST_VETH_PREFIX": "ovp",
        "CONTAINER_VETH_PREFIX": "ovc",
        "GATEWAY_PORT_PREFIX": "ovg",
        # iptables
        "CHAIN_FORWARD": "OVS-PLUGIN-FORWARD",
        "CHAIN_ISOLATION_1": "OVS-PLUGIN-ISOLATION-1",
        "CHAIN_ISOLATION_2": "OVS-PLUGIN-ISOLATION-2",
        "CHAIN_POSTROUTING": "OVS-PLUGIN-POSTROUTING",
        "CHAIN_DNAT": "OVS-PLUGIN-DNAT",
        "CHAIN_RAW_PREROUTING": "OVS-PLUGIN-PREROUTING",
        "COMMENT_PREFIX": "docker-ovs-plugin",
    }
    assert {name: getattr(contract, name) for name in expected} == expected
    assert [m.value for m in Mode] == ["nat", "routed", "flat"]


def test_device_names_for_fixed_ids() -> None:
    names = [
        contract.default_bridge_name(NET),
        contract.host_veth_name(EP),
        contract.container_veth_name(EP),
        contract.gateway_port_name(NET),
    ]
    assert names == ["ovsbr-a1b2c3d4", "ovp0f1e2d3c4b5a", "ovc0f1e2d3c4b5a", "ovga1b2c3d4e5f6"]
    assert all(len(n) <= 15 for n in names)


def test_cookies_for_fixed_ids() -> None:
    assert contract.network_cookie(NET) == 0xA1B2C3D4
    assert contract.endpoint_cookie(NET, EP) == 0xA1B2C3D40F1E2D3C
    assert Endpoint(EP, NET, "02:42:0a:4d:00:07").cookie == 0xA1B2C3D40F1E2D3C
    assert contract.cookie_network(0xA1B2C3D40F1E2D3C) == 0xA1B2C3D4


# -- the network record on its bridge -----------------------------------------------------------

NETWORK = Network(
    network_id=NET,
    bridge="br-apps",
    mtu=1450,
    driver="ovs2",
    mode=Mode.ROUTED,
    vlan=100,
    uplink="eth1",
    icc=False,
    masquerade=False,
    host_binding_ipv4=IPv4Address("198.51.100.1"),
    iface_prefix="ovs",
    ipv4=(
        Subnet(ip_network("10.77.0.0/24"), ip_interface("10.77.0.1/24")),
        Subnet(ip_network("10.78.0.0/24")),
    ),
    ipv6=(Subnet(ip_network("fd00:77::/64"), ip_interface("fd00:77::1/64")),),
    options={"ovs.mode": "routed", "ovs.vlan": "100", "ovs.bridge.uplink": "eth1"},
)

NETWORK_RECORD = {
    "driver": "ovs2",
    "mtu": 1450,
    "mode": "routed",
    "internal": False,
    "vlan": 100,
    "uplink": "eth1",
    "icc": False,
    "masquerade": False,
    "port_security": True,
    "host_binding_ipv4": "198.51.100.1",
    "iface_prefix": "ovs",
    "ipv4": [{"gateway": "10.77.0.1/24", "pool": "10.77.0.0/24"}, {"pool": "10.78.0.0/24"}],
    "ipv6": [{"gateway": "fd00:77::1/64", "pool": "fd00:77::/64"}],
    "options": {"ovs.bridge.uplink": "eth1", "ovs.mode": "routed", "ovs.vlan": "100"},
}


def test_network_record_is_written_and_read_back() -> None:
    text = NETWORK.to_json()
    assert json.loads(text) == NETWORK_RECORD
    # Compact, keys sorted: the same network always writes the same bytes.
    assert text == json.dumps(NETWORK_RECORD, sort_keys=True, separators=(",", ":"))
    bridge_ids = {
        "owner": "docker-ovs-plugin",
        "docker-ovs:schema": "1",
        f"docker-ovs:network:{NET}": text,
    }
    assert contract.owned({contract.network_key(NET): text}) == bridge_ids
    assert networks_on_bridge("br-apps", bridge_ids) == [NETWORK]
    assert NETWORK.gateway_port == "ovga1b2c3d4e5f6"  # a VLAN network's own gateway port


def test_a_minimal_record_reads_with_the_defaults_of_version_1() -> None:
    net = Network.from_json(NET, "ovsbr-a1b2c3d4", '{"mtu": 1500}')
    assert net == Network(network_id=NET, bridge="ovsbr-a1b2c3d4", mtu=1500)
    assert (net.driver, net.mode, net.iface_prefix, net.icc, net.masquerade) == (
        "ovs",
        Mode.NAT,
        "eth",
        True,
        True,
    )


def test_port_roles_are_tagged() -> None:
    assert contract.owned({contract.ROLE_KEY: contract.ROLE_UPLINK}) == {
        "owner": "docker-ovs-plugin",
        "docker-ovs:schema": "1",
        "docker-ovs:role": "uplink",
    }


# -- the endpoint record on its Interface row ---------------------------------------------------

ENDPOINT = Endpoint(
    endpoint_id=EP,
    network_id=NET,
    mac="02:42:0a:4d:00:07",
    ipv4=IPv4Interface("10.77.0.7/24"),
    ipv6=IPv6Interface("fd00:77::7/64"),
    port_mappings=(
        PortMapping("tcp", 80, 8080),
        PortMapping("udp", 53, 5353, IPv4Address("198.51.100.1")),
    ),
    driver="ovs2",
)

ENDPOINT_IDS = {
    "owner": "docker-ovs-plugin",
    "docker-ovs:schema": "1",
    "iface-id": EP,
    "attached-mac": "02:42:0a:4d:00:07",
    "iface-status": "active",
    "docker-ovs:network-id": NET,
    "docker-ovs:driver": "ovs2",
    "docker-ovs:portmap": (
        '[{"proto": "tcp", "container_port": 80, "host_port": 8080, "host_ip": null}, '
        '{"proto": "udp", "container_port": 53, "host_port": 5353, "host_ip": "198.51.100.1"}]'
    ),
    "docker-ovs:ipv4-address": "10.77.0.7/24",
    "docker-ovs:ipv6-address": "fd00:77::7/64",
}


def test_endpoint_record_is_written_and_read_back() -> None:
    assert ENDPOINT.to_external_ids() == ENDPOINT_IDS
    assert Endpoint.from_external_ids(ENDPOINT_IDS) == ENDPOINT


def test_a_minimal_endpoint_record_reads_with_the_defaults_of_version_1() -> None:
    ids = {"iface-id": EP, "docker-ovs:network-id": NET, "attached-mac": "02:42:0a:4d:00:07"}
    assert Endpoint.from_external_ids(ids) == Endpoint(EP, NET, "02:42:0a:4d:00:07", driver="ovs")


# -- iptables -----------------------------------------------------------------------------------


def test_rule_comments_for_fixed_ids() -> None:
    assert contract.network_comment(NET) == "docker-ovs-plugin:a1b2c3d4e5f6"
    assert contract.endpoint_comment(NET, EP) == "docker-ovs-plugin:a1b2c3d4e5f6:0f1e2d3c4b5a"
    assert contract.comment_network("docker-ovs-plugin:a1b2c3d4e5f6:0f1e2d3c4b5a") == (
        "a1b2c3d4e5f6"
    )
    assert contract.comment_network("another-tool:a1b2c3d4e5f6") is None


def test_rules_sit_in_these_chains_with_these_comments() -> None:
    nat = Network(NET, "ovsbr-a1b2c3d4", 1500, ipv4=NETWORK.ipv4, ipv6=NETWORK.ipv6)
    network = [(t, c, r[-1]) for family in (4, 6) for t, c, r in network_rules(nat, family)]
    assert sorted(set(network)) == [
        ("filter", "OVS-PLUGIN-FORWARD", "docker-ovs-plugin:a1b2c3d4e5f6"),
        ("filter", "OVS-PLUGIN-ISOLATION-1", "docker-ovs-plugin:a1b2c3d4e5f6"),
        ("filter", "OVS-PLUGIN-ISOLATION-2", "docker-ovs-plugin:a1b2c3d4e5f6"),
        ("nat", "OVS-PLUGIN-POSTROUTING", "docker-ovs-plugin:a1b2c3d4e5f6"),
        ("raw", "OVS-PLUGIN-PREROUTING", "docker-ovs-plugin:a1b2c3d4e5f6"),
    ]
    published = [(t, c, r[-1]) for t, c, r in port_mapping_rules(nat, ENDPOINT)]
    assert sorted(set(published)) == [
        ("filter", "OVS-PLUGIN-FORWARD", "docker-ovs-plugin:a1b2c3d4e5f6:0f1e2d3c4b5a"),
        ("nat", "OVS-PLUGIN-DNAT", "docker-ovs-plugin:a1b2c3d4e5f6:0f1e2d3c4b5a"),
    ]


def test_overlay_names_and_keys_keep_their_released_values() -> None:
    expected = {
        "MODE_OVERLAY": "overlay",
        "ADDRESS_SPACE": "docker-ovs",
        "REGISTRY_NAME": "dop_registry",
        "REGISTRY_GENERATION_KEY": "docker-ovs:generation",
        "SUBNET_KEY": "docker-ovs:subnet",
        "GATEWAY_KEY": "docker-ovs:gateway",
        "CREATOR_KEY": "docker-ovs:creator",
        "TOKEN_KEY": "docker-ovs:token",
        "POOL_SWITCH_KEY": "docker-ovs:switch",
        "HOST_POOL_PREFIX": "docker-ovs:host-pool:",
        "HOST_NETWORK_PREFIX": "docker-ovs:host-network:",
        "ADDRESS_KEY": "docker-ovs:address",
        "HOST_KEY": "docker-ovs:host",
        "RESERVED_AT_KEY": "docker-ovs:reserved-at",
        "ENDPOINT_ID_KEY": "docker-ovs:endpoint-id",
        "REQUESTED_CHASSIS": "requested-chassis",
        "ROLE_OVERLAY": "overlay",
        "OVN_INSTALLED_KEY": "ovn-installed",
        "DEFAULT_OVN_BRIDGE": "br-int",
        "HOST_ROW_PREFIX": "dop_host_",
        "HEARTBEAT_KEY": "docker-ovs:heartbeat",
        "FENCED_AT_KEY": "docker-ovs:fenced-at",
        "FENCED_AFTER_KEY": "docker-ovs:fenced-after",
        "HOUSEKEEPING_LOCK": "docker_ovs_plugin_housekeeping",
    }
    assert {name: getattr(contract, name) for name in expected} == expected
    subnet = "10.90.0.0/16"
    assert contract.switch_name(subnet) == "dop-10.90.0.0_16"
    assert contract.token_name(subnet) == "dop_10.90.0.0_16"
    assert (
        contract.reservation_name("dop-10.90.0.0_16", "10.90.0.5") == "dop-10.90.0.0_16-10.90.0.5"
    )
    assert contract.host_pool_key("h1") == "docker-ovs:host-pool:h1"
    assert contract.host_network_key("h1") == "docker-ovs:host-network:h1"
    assert contract.host_row_name("h1") == "dop_host_h1"
    assert (
        contract.host_row_name("3f2a9c1d-7e55-4b1a-9d3e-0a1b2c3d4e5f")
        == "dop_host_3f2a9c1d_7e55_4b1a_9d3e_0a1b2c3d4e5f"
    )
    names = [contract.overlay_host_veth_name(EP), contract.overlay_container_veth_name(EP)]
    assert names == ["olp0f1e2d3c4b5a", "olc0f1e2d3c4b5a"]


def test_cluster_network_keys_keep_their_released_values() -> None:
    expected = {
        "NAME_KEY": "docker-ovs:name",
        "DRIVER_OPTIONS_KEY": "docker-ovs:driver-options",
        "IPAM_OPTIONS_KEY": "docker-ovs:ipam-options",
        "PUBLISHER_KEY": "docker-ovs:publisher",
        "NAME_TOKEN_KEY": "docker-ovs:name-token",
        "DELETED_KEY": "docker-ovs:deleted",
        "HOST_LEFT_PREFIX": "docker-ovs:host-left:",
        "NAME_TOKEN_PREFIX": "dopn_",
    }
    assert {name: getattr(contract, name) for name in expected} == expected
    assert contract.name_token("web") == "dopn_4b5e57f6eb2f42b9039b3d1e13929295f231749c"
    assert contract.host_left_key("h1") == "docker-ovs:host-left:h1"
    r = contract.TombstoneRecord
    assert (r.HOST, r.AT, r.NETWORKS) == ("host", "at", "networks")
