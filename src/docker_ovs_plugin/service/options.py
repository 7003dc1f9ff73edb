"""Validation of the `-o key=value` options of `docker network create`.

Docker passes them under Options["com.docker.network.generic"]. Keys of our own start with
`ovs.`; an unknown one is refused so a typo never silently does nothing. Docker's bridge-driver
keys that mean something here are honoured; other foreign keys (another driver's) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from docker_ovs_plugin.contract import DEFAULT_IFACE_PREFIX, IFNAMSIZ, MODE_OVERLAY
from docker_ovs_plugin.service.errors import InvalidRequest
from docker_ovs_plugin.service.model import Mode

OUR_PREFIX = "ovs."
MODE = "ovs.mode"
BRIDGE_NAME = "ovs.bridge.name"
UPLINK = "ovs.bridge.uplink"
UPLINK_ALIAS = "ovs.bridge.bind_interface"  # the original Go project's name
VLAN = "ovs.vlan"
MTU = "ovs.mtu"
ICC = "ovs.icc"
PORT_SECURITY = "ovs.port_security"
ROUTER = "ovs.router"  # overlay only: the OVN logical router the network joins
DOCKER_MTU = "com.docker.network.driver.mtu"
DOCKER_ICC = "com.docker.network.bridge.enable_icc"
DOCKER_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
DOCKER_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
DOCKER_IFACE_PREFIX = "com.docker.network.container_iface_prefix"

KNOWN_OPTIONS = frozenset(
    {MODE, BRIDGE_NAME, UPLINK, UPLINK_ALIAS, VLAN, MTU, ICC, PORT_SECURITY, ROUTER}
)

DEFAULT_MTU = 1500
MIN_MTU = 1280  # IPv6's minimum; below it dual-stack networks break
MAX_MTU = 9000

# Safe for OVS and the kernel, and for iptables arguments: no spaces, slashes or shell-ish bytes.
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,10}$")
_ROUTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class NetworkOptions:
    mode: Mode = Mode.NAT
    bridge_name: str | None = None
    uplink: str | None = None
    vlan: int | None = None
    mtu: int = DEFAULT_MTU
    icc: bool = True
    masquerade: bool = True
    port_security: bool = True
    host_binding_ipv4: IPv4Address | None = None
    iface_prefix: str = DEFAULT_IFACE_PREFIX


def validate_ifname(name: str, what: str) -> str:
    if not 0 < len(name) <= IFNAMSIZ or not _IFNAME_RE.match(name):
        raise InvalidRequest(
            f"{what} {name!r} is not a valid interface name: use 1 to {IFNAMSIZ} letters, "
            "digits, '.', '-' or '_', starting with a letter or digit"
        )
    return name


def _as_str(key: str, value: Any) -> str:
    # `-o` values are strings; swarm may deliver other JSON scalars.
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str | int):
        raise InvalidRequest(f"option {key} must be a string, got {value!r}")
    return str(value)


def _int(key: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise InvalidRequest(f"option {key}={value!r} is not a number") from None
    if not low <= number <= high:
        raise InvalidRequest(f"option {key}={number} is out of range {low}-{high}")
    return number


def _bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidRequest(f"option {key}={value!r} must be true or false")


def _last_given(raw: dict[str, str], *keys: str) -> tuple[str, str] | None:
    """The value of the last key given (ours are listed last, so they win over Docker's)."""
    found = [(k, raw[k]) for k in keys if k in raw]
    return found[-1] if found else None


def _iface_prefix(raw: dict[str, str]) -> str:
    prefix = raw.get(DOCKER_IFACE_PREFIX) or DEFAULT_IFACE_PREFIX
    if not _PREFIX_RE.match(prefix):
        raise InvalidRequest(
            f"option {DOCKER_IFACE_PREFIX}={prefix!r}: use 1 to 11 letters, digits, '-' or '_', "
            "starting with a letter (the kernel appends an index)"
        )
    return prefix


def parse_network_options(generic: dict[str, Any]) -> tuple[NetworkOptions, dict[str, str]]:
    """Return the validated options and the raw key/values kept for operators."""
    raw = {key: _as_str(key, value) for key, value in generic.items()}
    unknown = sorted(k for k in raw if k.startswith(OUR_PREFIX) and k not in KNOWN_OPTIONS)
    if unknown:
        raise InvalidRequest(
            f"unknown option(s) {', '.join(unknown)}; supported: {', '.join(sorted(KNOWN_OPTIONS))}"
        )
    if ROUTER in raw:
        raise InvalidRequest(f"option {ROUTER} only applies to {MODE}={MODE_OVERLAY}")
    if UPLINK in raw and UPLINK_ALIAS in raw and raw[UPLINK] != raw[UPLINK_ALIAS]:
        raise InvalidRequest(f"options {UPLINK} and {UPLINK_ALIAS} name different interfaces")

    mode = Mode.NAT
    if MODE in raw:
        try:
            mode = Mode(raw[MODE].strip().lower())
        except ValueError:
            choices = ", ".join(m.value for m in Mode)
            raise InvalidRequest(f"option {MODE}={raw[MODE]!r} must be one of {choices}") from None

    bridge = raw.get(BRIDGE_NAME)
    if bridge is not None:
        validate_ifname(bridge, f"option {BRIDGE_NAME}:")
    uplink_opt = _last_given(raw, UPLINK_ALIAS, UPLINK)
    uplink = validate_ifname(uplink_opt[1], f"option {uplink_opt[0]}:") if uplink_opt else None

    vlan = _int(VLAN, raw[VLAN], 1, 4094) if VLAN in raw else None
    mtu_opt = _last_given(raw, DOCKER_MTU, MTU)
    mtu = _int(mtu_opt[0], mtu_opt[1], MIN_MTU, MAX_MTU) if mtu_opt else DEFAULT_MTU
    icc_opt = _last_given(raw, DOCKER_ICC, ICC)
    icc = _bool(*icc_opt) if icc_opt else True
    masquerade = (
        _bool(DOCKER_MASQUERADE, raw[DOCKER_MASQUERADE]) if DOCKER_MASQUERADE in raw else True
    )
    port_security = _bool(PORT_SECURITY, raw[PORT_SECURITY]) if PORT_SECURITY in raw else True

    host_binding = None
    if raw.get(DOCKER_HOST_BINDING):
        try:
            host_binding = IPv4Address(raw[DOCKER_HOST_BINDING])
        except ValueError:
            raise InvalidRequest(
                f"option {DOCKER_HOST_BINDING}={raw[DOCKER_HOST_BINDING]!r} is not an IPv4 address"
            ) from None
    prefix = _iface_prefix(raw)
    if mode is not Mode.NAT and DOCKER_MASQUERADE in raw and masquerade:
        raise InvalidRequest(f"option {DOCKER_MASQUERADE}=true only applies to {MODE}=nat")

    return (
        NetworkOptions(
            mode=mode,
            bridge_name=bridge,
            uplink=uplink,
            vlan=vlan,
            mtu=mtu,
            icc=icc,
            masquerade=masquerade and mode is Mode.NAT,
            port_security=port_security,
            host_binding_ipv4=host_binding,
            iface_prefix=prefix,
        ),
        raw,
    )


# -- overlay networks (-o ovs.mode=overlay) ---------------------------------------------------

OVERLAY_OPTIONS = frozenset({MODE, MTU, PORT_SECURITY, ROUTER})


@dataclass(frozen=True)
class OverlayOptions:
    mtu: int | None = None  # None: the underlay's MTU less the encapsulation's overhead
    port_security: bool = True
    iface_prefix: str = DEFAULT_IFACE_PREFIX
    router: str | None = None  # overlay networks on the same router reach each other


def is_overlay(generic: dict[str, Any]) -> bool:
    mode = generic.get(MODE)
    return isinstance(mode, str) and mode.strip().lower() == MODE_OVERLAY


def parse_overlay_options(generic: dict[str, Any]) -> tuple[OverlayOptions, dict[str, str]]:
    """The options of an overlay network, and the raw key/values kept for operators."""
    raw = {key: _as_str(key, value) for key, value in generic.items()}
    ours = sorted(k for k in raw if k.startswith(OUR_PREFIX))
    unknown = [k for k in ours if k not in KNOWN_OPTIONS]
    if unknown:
        raise InvalidRequest(
            f"unknown option(s) {', '.join(unknown)}; supported with {MODE}={MODE_OVERLAY}: "
            f"{', '.join(sorted(OVERLAY_OPTIONS))}"
        )
    other = [k for k in ours if k not in OVERLAY_OPTIONS]
    if other:
        raise InvalidRequest(
            f"option(s) {', '.join(other)} do not apply to {MODE}={MODE_OVERLAY} (its ports "
            "are on OVN's integration bridge)"
        )
    mtu_opt = _last_given(raw, DOCKER_MTU, MTU)
    prefix = _iface_prefix(raw)
    router = raw.get(ROUTER)
    if router is not None and not _ROUTER_RE.match(router):
        raise InvalidRequest(
            f"option {ROUTER}={router!r}: use 1 to 63 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    return (
        OverlayOptions(
            mtu=_int(mtu_opt[0], mtu_opt[1], MIN_MTU, MAX_MTU) if mtu_opt else None,
            port_security=_bool(PORT_SECURITY, raw[PORT_SECURITY])
            if PORT_SECURITY in raw
            else True,
            iface_prefix=prefix,
            router=router,
        ),
        raw,
    )
