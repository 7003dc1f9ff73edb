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

import hashlib
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


# -- OVN northbound: overlay networks (multi-host) ---------------------------------------------
#
# One Logical_Switch per overlay subnet, shared by every host of the cluster, created in one
# transaction with a Port_Group token (Port_Group names have a unique index, Logical_Switch
# names do not: a racing second creator fails instead of making a twin). One Logical_Switch_Port
# per reserved address (unique names: no address is ever handed out twice). Every row carries
# owned() and DRIVER_KEY.

MODE_OVERLAY: Final = "overlay"  # -o ovs.mode=overlay
ADDRESS_SPACE: Final = "docker-ovs"  # our IPAM's address space; Docker records it per network

SWITCH_PREFIX: Final = "dop-"
TOKEN_PREFIX: Final = "dop_"  # noqa: S105 (not a secret) Port_Group names must match [a-zA-Z_.][a-zA-Z_.0-9]*
# The one Port_Group whose external_ids every pool creation bumps (verify()'d): two hosts
# creating overlapping subnets at once cannot both pass the overlap check.
REGISTRY_NAME: Final = "dop_registry"
REGISTRY_GENERATION_KEY: Final = NS + "generation"

# Logical_Switch external_ids
SUBNET_KEY: Final = NS + "subnet"  # e.g. 10.90.0.0/16
GATEWAY_KEY: Final = NS + "gateway"  # e.g. 10.90.0.1; set once, by the first gateway request
CREATOR_KEY: Final = NS + "creator"  # system-id of the host whose RequestPool created it
TOKEN_KEY: Final = NS + "token"  # on the switch: its Port_Group's name
POOL_SWITCH_KEY: Final = NS + "switch"  # on the token: its switch's name
# Per host (chassis system-id): this host's IPAM handed the pool out (RequestPool until
# ReleasePool) ...
HOST_POOL_PREFIX: Final = NS + "host-pool:"
# ... and this host has a Docker network on it (CreateNetwork until DeleteNetwork), holding an
# OverlayRecord as JSON.
HOST_NETWORK_PREFIX: Final = NS + "host-network:"


def switch_name(subnet: str) -> str:
    """The Logical_Switch (and IPAM pool id) of an overlay subnet such as 10.90.0.0/16."""
    return SWITCH_PREFIX + subnet.replace("/", "_")


def token_name(subnet: str) -> str:
    """The Port_Group that makes the switch of a subnet unique (IPv4: dop_10.90.0.0_16)."""
    return TOKEN_PREFIX + subnet.replace("/", "_").replace(":", "_")


def reservation_name(switch: str, address: str) -> str:
    """The Logical_Switch_Port that reserves one address of a switch."""
    return f"{switch}-{address}"


def host_pool_key(system_id: str) -> str:
    return HOST_POOL_PREFIX + system_id


def host_network_key(system_id: str) -> str:
    return HOST_NETWORK_PREFIX + system_id


class OverlayRecord:
    """Keys of the JSON object under host_network_key(<system-id>)."""

    NETWORK_ID: Final = "network_id"
    MTU: Final = "mtu"
    PORT_SECURITY: Final = "port_security"
    IFACE_PREFIX: Final = "iface_prefix"
    OPTIONS: Final = "options"
    ROUTER: Final = "router"


# The cluster's Docker network on a switch ("create once"), written by the host whose plugin
# published it (its background sync, from its Docker API): every other host's sync creates a
# Docker network of that name, subnet and options through its own Docker API.
NAME_KEY: Final = NS + "name"  # the Docker network name (also on its name token)
DRIVER_OPTIONS_KEY: Final = NS + "driver-options"  # JSON object: the -o options
IPAM_OPTIONS_KEY: Final = NS + "ipam-options"  # JSON object: the --ipam-opt options
PUBLISHER_KEY: Final = NS + "publisher"  # system-id of the host that published it
NAME_TOKEN_KEY: Final = NS + "name-token"  # on the switch: its name token's Port_Group name
# `docker network rm` on some host while no container used the network anywhere: every host
# removes its Docker network; a TombstoneRecord as JSON.
DELETED_KEY: Final = NS + "deleted"
# Per host: it removed its Docker network while containers elsewhere used the cluster network,
# so its sync does not create it there again. The value is the id of the Docker network it
# removed: until dockerd has finished removing that one, it is still recorded, and is not a
# rejoin (marks of the first releases hold a unix time instead).
HOST_LEFT_PREFIX: Final = NS + "host-left:"
# Port_Group names match [a-zA-Z_.][a-zA-Z_.0-9]*, Docker network names may hold '-': a hash.
NAME_TOKEN_PREFIX: Final = "dopn_"  # noqa: S105 (not a secret)
NAME_TOKEN_HASH_CHARS: Final = 40  # of sha256's hex digest


def name_token(name: str) -> str:
    """The Port_Group whose unique name makes a Docker network name one network cluster-wide."""
    return NAME_TOKEN_PREFIX + hashlib.sha256(name.encode()).hexdigest()[:NAME_TOKEN_HASH_CHARS]


def host_left_key(system_id: str) -> str:
    return HOST_LEFT_PREFIX + system_id


class TombstoneRecord:
    """Keys of the JSON object under DELETED_KEY."""

    HOST: Final = "host"  # system-id of the host whose `docker network rm` it was
    AT: Final = "at"  # unix time
    NETWORKS: Final = "networks"  # system-id -> that host's Docker network id, to remove


# Logical_Switch_Port external_ids of a reservation
ADDRESS_KEY: Final = NS + "address"
HOST_KEY: Final = NS + "host"  # system-id of the host that reserved it
RESERVED_AT_KEY: Final = NS + "reserved-at"  # unix time, for a collector of forgotten ones
ENDPOINT_ID_KEY: Final = NS + "endpoint-id"  # once it is an endpoint's port
# ROLE_KEY = ROLE_GATEWAY marks the switch's gateway reservation (shared by all hosts).
REQUESTED_CHASSIS: Final = "requested-chassis"  # LSP options: only this chassis may claim it

# -- OVN northbound: routers joining overlay networks (-o ovs.router=NAME) -------------------
#
# One Logical_Router per NAME, made unique by a Port_Group token as switches are. A switch
# joins it through its gateway reservation, which becomes its router port (type "router",
# peer of a Logical_Router_Port holding the gateway address): routing between the joined
# subnets is OVN's, distributed on every chassis. The last switch to go deletes the router.
ROUTER_NAME_KEY: Final = NS + "router"  # on the router, its token, each joined switch: NAME
ROUTER_PREFIX: Final = "dopr-"
ROUTER_TOKEN_PREFIX: Final = "dopr_"  # noqa: S105 (not a secret)
ROLE_ROUTER_PORT: Final = "router-port"  # ROLE_KEY of a Logical_Router_Port of ours


def router_name(name: str) -> str:
    """The Logical_Router of `-o ovs.router=NAME`."""
    return ROUTER_PREFIX + name


def router_token(name: str) -> str:
    """The Port_Group whose unique name makes a router NAME one router cluster-wide."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:NAME_TOKEN_HASH_CHARS]
    return ROUTER_TOKEN_PREFIX + digest


def router_port_name(switch: str) -> str:
    """The Logical_Router_Port by which the switch `switch` joins its router."""
    return f"{switch}-router"


# -- the local integration bridge (br-int) ----------------------------------------------------

# Read from the local Open_vSwitch row, written there by whoever set up ovn-controller.
OVS_SYSTEM_ID_KEY: Final = "system-id"
OVS_OVN_BRIDGE_KEY: Final = "ovn-bridge"
OVS_ENCAP_IP_KEY: Final = "ovn-encap-ip"
OVS_ENCAP_TYPE_KEY: Final = "ovn-encap-type"
DEFAULT_OVN_BRIDGE: Final = "br-int"
# Set by ovn-controller on an Interface once the flows of its logical port are in.
OVN_INSTALLED_KEY: Final = "ovn-installed"
# An overlay endpoint's Interface carries IFACE_ID_KEY = its reservation's name (what
# ovn-controller matches), ENDPOINT_ID_KEY, NETWORK_ID_KEY, IPV4_ADDRESS_KEY, DRIVER_KEY and
# ROLE_KEY = ROLE_OVERLAY (so the bridge-mode code never takes it for one of its own).
ROLE_OVERLAY: Final = "overlay"
OVERLAY_HOST_VETH_PREFIX: Final = "olp"
OVERLAY_CONTAINER_VETH_PREFIX: Final = "olc"


def overlay_host_veth_name(endpoint_id: str) -> str:
    return OVERLAY_HOST_VETH_PREFIX + endpoint_id[:DEVICE_ID_CHARS]


def overlay_container_veth_name(endpoint_id: str) -> str:
    return OVERLAY_CONTAINER_VETH_PREFIX + endpoint_id[:DEVICE_ID_CHARS]


# -- OVN northbound: host liveness and fencing ------------------------------------------------
#
# Each plugin keeps one Port_Group of its own host (a row type with a unique name index, and
# one that ovn-northd ignores while it has no ports): HOST_KEY = its system-id, HEARTBEAT_KEY =
# the unix time of its last heartbeat. The host that holds HOUSEKEEPING_LOCK fences a host whose
# heartbeat has not changed for the fence period: it deletes that host's reservations and
# per-host keys and sets FENCED_AT_KEY / FENCED_AFTER_KEY, which only the fenced host clears,
# once it has torn down its own endpoints of them.

HOST_ROW_PREFIX: Final = "dop_host_"
HEARTBEAT_KEY: Final = NS + "heartbeat"
FENCED_AT_KEY: Final = NS + "fenced-at"  # unix time of the fence
FENCED_AFTER_KEY: Final = NS + "fenced-after"  # seconds without a heartbeat it was fenced after
HOUSEKEEPING_LOCK: Final = "docker_ovs_plugin_housekeeping"  # OVSDB lock (ovsdb-server(1))


def host_row_name(system_id: str) -> str:
    """The Port_Group of a host (names must match [a-zA-Z_.][a-zA-Z_.0-9]*)."""
    return HOST_ROW_PREFIX + "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "_.") else "_" for ch in system_id
    )
