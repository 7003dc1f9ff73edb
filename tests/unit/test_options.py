from __future__ import annotations

import pytest

from docker_ovs_plugin.service.errors import InvalidRequest
from docker_ovs_plugin.service.options import DEFAULT_MTU, parse_network_options


def test_defaults() -> None:
    opts, raw = parse_network_options({})
    assert opts.bridge_name is None
    assert opts.mtu == DEFAULT_MTU
    assert raw == {}


def test_foreign_keys_are_kept_but_ignored() -> None:
    opts, raw = parse_network_options({"com.docker.network.bridge.name": "x"})
    assert opts.bridge_name is None
    assert raw == {"com.docker.network.bridge.name": "x"}


@pytest.mark.parametrize("name", ["br0", "ovs-apps_1.2", "a" * 15])
def test_valid_bridge_names(name: str) -> None:
    assert parse_network_options({"ovs.bridge.name": name})[0].bridge_name == name


@pytest.mark.parametrize("name", ["", "a" * 16, "bad name", "-br", "br/0", "br;rm", "ü"])
def test_invalid_bridge_names(name: str) -> None:
    with pytest.raises(InvalidRequest, match="not a valid interface name"):
        parse_network_options({"ovs.bridge.name": name})


def test_mtu_ours_wins_over_dockers() -> None:
    opts, _ = parse_network_options({"com.docker.network.driver.mtu": "1400", "ovs.mtu": "1450"})
    assert opts.mtu == 1450


@pytest.mark.parametrize("value", ["abc", "100", "65536", "1.5e3"])
def test_bad_mtu(value: str) -> None:
    with pytest.raises(InvalidRequest, match=r"ovs\.mtu"):
        parse_network_options({"ovs.mtu": value})


def test_unknown_ovs_option_names_the_supported_ones() -> None:
    with pytest.raises(InvalidRequest, match=r"unknown option\(s\) ovs\.x.*ovs\.bridge\.name"):
        parse_network_options({"ovs.x": "1"})


@pytest.mark.parametrize("value", [None, 1.5, [1], {"a": 1}])
def test_non_scalar_values_refused(value: object) -> None:
    with pytest.raises(InvalidRequest, match="must be a string"):
        parse_network_options({"ovs.mtu": value})


def test_router_only_applies_to_overlay_networks() -> None:
    with pytest.raises(InvalidRequest, match=r"ovs\.router only applies to ovs\.mode=overlay"):
        parse_network_options({"ovs.router": "r1"})
