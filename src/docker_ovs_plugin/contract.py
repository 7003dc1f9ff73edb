"""The on-host contract: every name and value a restarted or upgraded plugin must find again.

OVSDB keys and owner tags, the JSON record of a network, device names, OpenFlow cookies and
iptables chains and comments outlive the process that wrote them. They are defined here and
nowhere else. A change here is a migration, not a refactor: a plugin with other values no longer
recognises what an earlier one left on the host (it would neither serve nor delete it), so it
needs code that reads the old form and a new SCHEMA_VERSION. tests/unit/test_contract.py holds
the released values as literals and fails when one changes.

A leaf module: the standard library only, nothing from this project.
"""

from __future__ import annotations

from typing import Final

# -- OVSDB external_ids: tags on every row we create -------------------------------------------

OWNER_KEY: Final = "owner"
OWNER: Final = "docker-ovs-plugin"  # only rows tagged so are ever changed or deleted
NS: Final = "docker-ovs:"  # namespace of the plugin's own keys
SCHEMA_KEY: Final = NS + "schema"
SCHEMA_VERSION: Final = "1"
DRIVER_KEY: Final = NS + "driver"  # which plugin instance (driver name) owns the row
# Rows and records written before driver names existed belong to the default instance.
DEFAULT_DRIVER: Final = "ovs"


def owned(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags every row we create carries."""
    return {OWNER_KEY: OWNER, SCHEMA_KEY: SCHEMA_VERSION, **(extra or {})}


# -- OVSDB external_ids: Bridge rows ---------------------------------------------------------

# One key per network on its bridge (VLAN networks share one), holding a NetworkRecord as JSON.
NETWORK_KEY_PREFIX: Final = NS + "network:"


def network_key(network_id: str) -> str:
    return NETWORK_KEY_PREFIX + network_id


class NetworkRecord:
    """Keys of the JSON object stored under network_key(<network id>)."""

    DRIVER: Final = "driver"
    MTU: Final = "mtu"
    MODE: Final = "mode"  # one of the MODE_ values below
    INTERNAL: Final = "internal"
    VLAN: Final = "vlan"
    UPLINK: Final = "uplink"
    ICC: Final = "icc"
    MASQUERADE: Final = "masquerade"
    PORT_SECURITY: Final = "port_security"
    HOST_BINDING_IPV4: Final = "host_binding_ipv4"
    IFACE_PREFIX: Final = "iface_prefix"
    IPV4: Final = "ipv4"  # lists of SubnetRecord
    IPV6: Final = "ipv6"
    OPTIONS: Final = "options"  # the -o options as the user gave them


class SubnetRecord:
    """Keys of one pool in NetworkRecord.IPV4 / IPV6."""

    POOL: Final = "pool"
    GATEWAY: Final = "gateway"  # with its prefix length; absent when IPAM gave none


MODE_NAT: Final = "nat"
MODE_ROUTED: Final = "routed"
MODE_FLAT: Final = "flat"
# What a record without iface_prefix means (and the option's default).
DEFAULT_IFACE_PREFIX: Final = "eth"

# -- OVSDB external_ids: Port and Interface rows ---------------------------------------------

# An endpoint's Interface (and Port) row. The first keys are those of OVS's integration guide,
# so other OVS tooling recognises the port.
IFACE_ID_KEY: Final = "iface-id"  # the endpoint id; rows without it are not endpoints
ATTACHED_MAC_KEY: Final = "attached-mac"
IFACE_STATUS_KEY: Final = "iface-status"
IFACE_STATUS_ACTIVE: Final = "active"
NETWORK_ID_KEY: Final = NS + "network-id"  # also on a VLAN network's gateway port
IPV4_ADDRESS_KEY: Final = NS + "ipv4-address"
IPV6_ADDRESS_KEY: Final = NS + "ipv6-address"
PORTMAP_KEY: Final = NS + "portmap"  # JSON list of PortRecord


class PortRecord:
    """Keys of one published port in PORTMAP_KEY."""

    PROTO: Final = "proto"
    CONTAINER_PORT: Final = "container_port"
    HOST_PORT: Final = "host_port"
    HOST_IP: Final = "host_ip"


# Ports that are not endpoints say what they are.
ROLE_KEY: Final = NS + "role"
ROLE_UPLINK: Final = "uplink"
ROLE_GATEWAY: Final = "gateway"

# -- device names (kernel and OVS) ------------------------------------------------------------

IFNAMSIZ: Final = 15  # usable characters of a Linux interface name (16 with the NUL)
BRIDGE_PREFIX: Final = "ovsbr-"  # a network's default bridge
BRIDGE_ID_CHARS: Final = 8
HOST_VETH_PREFIX: Final = "ovp"  # host end of a container's veth, an OVS port
CONTAINER_VETH_PREFIX: Final = "ovc"  # container end, moved into the sandbox by libnetwork
GATEWAY_PORT_PREFIX: Final = "ovg"  # a VLAN network's own gateway port on a shared bridge
DEVICE_ID_CHARS: Final = 12  # Docker's short id length; unique enough within one host


def default_bridge_name(network_id: str) -> str:
    return BRIDGE_PREFIX + network_id[:BRIDGE_ID_CHARS]


def host_veth_name(endpoint_id: str) -> str:
    return HOST_VETH_PREFIX + endpoint_id[:DEVICE_ID_CHARS]


def container_veth_name(endpoint_id: str) -> str:
    return CONTAINER_VETH_PREFIX + endpoint_id[:DEVICE_ID_CHARS]


def gateway_port_name(network_id: str) -> str:
    return GATEWAY_PORT_PREFIX + network_id[:DEVICE_ID_CHARS]


# -- OpenFlow cookies -------------------------------------------------------------------------

# 64 bits: the network id's first 8 hex digits, then the endpoint id's first 8.
COOKIE_ID_CHARS: Final = 8
COOKIE_NETWORK_SHIFT: Final = 32


def network_cookie(network_id: str) -> int:
    """The upper 32 bits of the OpenFlow cookies of a network's flows."""
    return int(network_id[:COOKIE_ID_CHARS], 16)


def endpoint_cookie(network_id: str, endpoint_id: str) -> int:
    """The cookie of an endpoint's flows."""
    return (network_cookie(network_id) << COOKIE_NETWORK_SHIFT) | int(
        endpoint_id[:COOKIE_ID_CHARS], 16
    )


def cookie_network(cookie: int) -> int:
    """The network part of a cookie, to compare with network_cookie()."""
    return cookie >> COOKIE_NETWORK_SHIFT


# -- iptables ---------------------------------------------------------------------------------

CHAIN_FORWARD: Final = "OVS-PLUGIN-FORWARD"  # filter
CHAIN_ISOLATION_1: Final = "OVS-PLUGIN-ISOLATION-1"  # filter
CHAIN_ISOLATION_2: Final = "OVS-PLUGIN-ISOLATION-2"  # filter
CHAIN_POSTROUTING: Final = "OVS-PLUGIN-POSTROUTING"  # nat
CHAIN_DNAT: Final = "OVS-PLUGIN-DNAT"  # nat
CHAIN_RAW_PREROUTING: Final = "OVS-PLUGIN-PREROUTING"  # raw
# Rules are found for removal by their comment: "docker-ovs-plugin:<network id>" on a network's
# rules, "docker-ovs-plugin:<network id>:<endpoint id>" on an endpoint's (ids cut short).
COMMENT_PREFIX: Final = "docker-ovs-plugin"
COMMENT_ID_CHARS: Final = 12


def network_comment(network_id: str) -> str:
    return f"{COMMENT_PREFIX}:{network_id[:COMMENT_ID_CHARS]}"


def endpoint_comment(network_id: str, endpoint_id: str) -> str:
    return f"{network_comment(network_id)}:{endpoint_id[:COMMENT_ID_CHARS]}"


def comment_network(comment: str) -> str | None:
    """The short network id a rule's comment names, or None when the rule is not ours."""
    parts = comment.split(":")
    if len(parts) >= 2 and parts[0] == COMMENT_PREFIX:
        return parts[1]
    return None
