"""Validation of the `-o key=value` options of `docker network create`.

Docker passes them under Options["com.docker.network.generic"]. Keys of our own start with
`ovs.`; an unknown one is refused so a typo never silently does nothing. Docker's generic keys that
apply to us are honoured; other foreign keys (e.g. another driver's) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from docker_ovs_plugin.service.errors import InvalidRequest
from docker_ovs_plugin.service.naming import IFNAMSIZ

OUR_PREFIX = "ovs."
BRIDGE_NAME = "ovs.bridge.name"
MTU = "ovs.mtu"
DOCKER_MTU = "com.docker.network.driver.mtu"

KNOWN_OPTIONS = frozenset({BRIDGE_NAME, MTU})

DEFAULT_MTU = 1500
MIN_MTU = 1280  # IPv6's minimum; below it dual-stack networks break
MAX_MTU = 9000

# Safe for OVS and the kernel, and for iptables arguments: no spaces, slashes or shell-ish bytes.
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class NetworkOptions:
    bridge_name: str | None = None
    mtu: int = DEFAULT_MTU


def validate_ifname(name: str, what: str) -> str:
    if not 0 < len(name) <= IFNAMSIZ or not _IFNAME_RE.match(name):
        raise InvalidRequest(
            f"{what} {name!r} is not a valid interface name: use 1 to {IFNAMSIZ} letters, "
            "digits, '.', '-' or '_', starting with a letter or digit"
        )
    return name


def _as_str(key: str, value: Any) -> str:
    # `-o` values are strings; swarm may deliver other JSON scalars.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequest(f"option {key} must be a string, got {value!r}")
    return str(value)


def _parse_mtu(key: str, value: str) -> int:
    try:
        mtu = int(value, 10)
    except ValueError:
        raise InvalidRequest(f"option {key}={value!r} is not a number") from None
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise InvalidRequest(f"option {key}={mtu} is out of range {MIN_MTU}-{MAX_MTU}")
    return mtu


def parse_network_options(generic: dict[str, Any]) -> tuple[NetworkOptions, dict[str, str]]:
    """Return the validated options and the raw key/values kept for operators."""
    raw = {key: _as_str(key, value) for key, value in generic.items()}
    unknown = sorted(k for k in raw if k.startswith(OUR_PREFIX) and k not in KNOWN_OPTIONS)
    if unknown:
        raise InvalidRequest(
            f"unknown option(s) {', '.join(unknown)}; supported: {', '.join(sorted(KNOWN_OPTIONS))}"
        )
    bridge = raw.get(BRIDGE_NAME)
    if bridge is not None:
        validate_ifname(bridge, f"option {BRIDGE_NAME}:")
    mtu = DEFAULT_MTU
    for key in (DOCKER_MTU, MTU):  # ours wins when both are given
        if key in raw:
            mtu = _parse_mtu(key, raw[key])
    return NetworkOptions(bridge_name=bridge, mtu=mtu), raw
