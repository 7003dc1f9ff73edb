"""Deterministic interface and bridge names.

Names are persistent state: a restarted plugin finds its ports and veths by these names, so the
prefixes must never change once released.
"""

IFNAMSIZ = 15  # usable characters of a Linux interface name (16 with the NUL)

BRIDGE_PREFIX = "ovsbr-"
HOST_VETH_PREFIX = "ovp"  # host end, an OVS port
CONTAINER_VETH_PREFIX = "ovc"  # container end, moved into the sandbox by libnetwork
_ID_CHARS = 12  # Docker's short id length; unique enough within one host


def default_bridge_name(network_id: str) -> str:
    return BRIDGE_PREFIX + network_id[:8]


def host_veth_name(endpoint_id: str) -> str:
    return HOST_VETH_PREFIX + endpoint_id[:_ID_CHARS]


def container_veth_name(endpoint_id: str) -> str:
    return CONTAINER_VETH_PREFIX + endpoint_id[:_ID_CHARS]


GATEWAY_PORT_PREFIX = "ovg"  # a VLAN network's own gateway port on a shared bridge


def gateway_port_name(network_id: str) -> str:
    return GATEWAY_PORT_PREFIX + network_id[:_ID_CHARS]
