"""The driver's cache of networks and endpoints (service/store.py)."""

from __future__ import annotations

import dataclasses
import threading

from docker_ovs_plugin.service.model import Endpoint, Network, PortMapping
from docker_ovs_plugin.service.store import NetworkView, Store

NET_A, NET_B, NET_C = ("aa" * 32, "bb" * 32, "cc" * 32)
EP_1, EP_2, EP_3 = ("11" * 32, "22" * 32, "33" * 32)


def _net(network_id: str, bridge: str, vlan: int | None = None) -> Network:
    return Network(network_id=network_id, bridge=bridge, mtu=1500, vlan=vlan)


def _ep(endpoint_id: str, network_id: str) -> Endpoint:
    return Endpoint(endpoint_id, network_id, "02:42:0a:00:00:02")


def _filled() -> Store[Network, Endpoint]:
    store: Store[Network, Endpoint] = Store()
    store.replace_all(
        [_net(NET_A, "shared", 10), _net(NET_B, "shared", 20), _net(NET_C, "own")],
        [_ep(EP_1, NET_A), _ep(EP_2, NET_A), _ep(EP_3, NET_C)],
    )
    return store


def test_reads_of_what_was_put() -> None:
    store = _filled()
    assert store.get_network(NET_A) == _net(NET_A, "shared", 10)
    assert store.get_network("ff" * 32) is None
    assert store.get_endpoint(EP_3) == _ep(EP_3, NET_C)
    assert store.get_endpoint("ff" * 32) is None
    assert [n.network_id for n in store.networks()] == [NET_A, NET_B, NET_C]
    assert [e.endpoint_id for e in store.endpoints()] == [EP_1, EP_2, EP_3]


def test_lists_are_copies() -> None:
    store = _filled()
    store.networks().clear()
    store.endpoints().clear()
    assert len(store.networks()) == 3
    assert len(store.endpoints()) == 3


def test_replace_all_drops_what_is_not_given() -> None:
    store = _filled()
    store.replace_all([_net(NET_B, "shared", 20)], [])
    assert store.networks() == [_net(NET_B, "shared", 20)]
    assert store.endpoints() == []


def test_put_replaces_and_remove_forgets() -> None:
    store = _filled()
    published = dataclasses.replace(_ep(EP_1, NET_A), port_mappings=(PortMapping("tcp", 80, 8080),))
    store.put_endpoint(published)
    assert store.get_endpoint(EP_1) == published
    store.remove_endpoint(EP_1)
    store.remove_endpoint(EP_1)  # unknown: nothing to do
    assert store.get_endpoint(EP_1) is None
    store.put_network(_net(NET_A, "elsewhere"))
    assert store.get_network(NET_A) == _net(NET_A, "elsewhere")
    store.remove_network(NET_A)
    store.remove_network(NET_A)
    assert store.get_network(NET_A) is None


def test_remove_if_current_keeps_a_newer_record_of_the_same_endpoint() -> None:
    store: Store[Network, Endpoint] = Store()
    old = _ep(EP_1, NET_A)
    store.put_endpoint(old)
    newer = _ep(EP_1, NET_A)  # equal, but put later (a re-created endpoint)
    store.put_endpoint(newer)
    store.remove_endpoint_if_current(old)
    assert store.get_endpoint(EP_1) is newer
    store.remove_endpoint_if_current(newer)
    assert store.get_endpoint(EP_1) is None
    store.remove_endpoint_if_current(newer)  # already gone: nothing to do


def test_view_of_a_network_on_a_shared_bridge() -> None:
    store = _filled()
    assert store.view(NET_A, "shared") == NetworkView(
        network=_net(NET_A, "shared", 10),
        peers=[_net(NET_B, "shared", 20)],
        endpoints=[_ep(EP_1, NET_A), _ep(EP_2, NET_A)],
    )
    assert store.view(NET_C, "own") == NetworkView(_net(NET_C, "own"), [], [_ep(EP_3, NET_C)])
    assert store.view("ff" * 32, "shared") is None


def test_view_takes_peers_on_the_bridge_it_is_asked_about() -> None:
    """The driver asks about the bridge it locked, even if the record changed meanwhile."""
    store = _filled()
    view = store.view(NET_C, "shared")
    assert view is not None
    assert [n.network_id for n in view.peers] == [NET_A, NET_B]


def test_network_and_endpoint_are_read_together() -> None:
    store = _filled()
    assert store.network_and_endpoint(NET_A, EP_1) == (
        _net(NET_A, "shared", 10),
        _ep(EP_1, NET_A),
    )
    # The endpoint is returned whatever network it is on: the caller decides what that means.
    assert store.network_and_endpoint(NET_B, EP_3) == (
        _net(NET_B, "shared", 20),
        _ep(EP_3, NET_C),
    )
    assert store.network_and_endpoint("ff" * 32, "ee" * 32) == (None, None)


def test_reads_while_others_write_see_whole_states() -> None:
    store: Store[Network, Endpoint] = Store()
    store.put_network(_net(NET_A, "shared", 10))
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            eid = f"{i % 50:064x}"
            store.put_endpoint(_ep(eid, NET_A))
            store.remove_endpoint(f"{(i + 25) % 50:064x}")
            i += 1

    writers = [threading.Thread(target=churn) for _ in range(2)]
    for t in writers:
        t.start()
    try:
        for _ in range(2000):
            view = store.view(NET_A, "shared")
            assert view is not None
            assert all(e.network_id == NET_A for e in view.endpoints)
            assert len(view.endpoints) <= 50
    finally:
        stop.set()
        for t in writers:
            t.join()
