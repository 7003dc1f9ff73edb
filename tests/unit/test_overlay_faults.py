"""Overlay faults: the plugin without the northbound database, the overlay reconciler's
findings, and doctor's checks of this host's part of OVN."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address

import pytest

from docker_ovs_plugin.adapters.ovn_link import NorthboundLink
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.ipam import Ipam
from docker_ovs_plugin.service.liveness import HostState
from docker_ovs_plugin.service.overlay import Overlay
from docker_ovs_plugin.service.overlay_reconcile import DockerNetworkView, OverlayDrift
from docker_ovs_plugin.service.ovn_doctor import Controller, check_host
from docker_ovs_plugin.service.reconcile import Reconciler

from .fakes import (
    FakeFirewall,
    FakeFlows,
    FakeIntegration,
    FakeLinks,
    FakeNorthbound,
    FakeSwitch,
    make_driver,
)
from .test_overlay import Host

REMOTES = "tcp:192.0.2.11:6641"


# -- starting without the northbound database --------------------------------------------------


def test_overlay_requests_fail_at_once_until_the_northbound_answers() -> None:
    nb = FakeNorthbound()
    up = [False]

    def connect() -> FakeNorthbound:
        if not up[0]:
            raise BackendError(f"cannot reach the OVN northbound database at {REMOTES}")
        return nb

    link = NorthboundLink(REMOTES, connect)
    host = Host(nb, "h1")  # the Host harness, its overlay on the link instead
    host.overlay = Overlay(
        link,
        host.integration,
        host.links,
        datapath_type="netdev",
        join_timeout=1.0,
    )
    host.ipam = Ipam(link, host.integration)
    from docker_ovs_plugin.service.networks import Networks

    host.networks = Networks(make_driver(), host.overlay)
    link.on_connected = lambda: (host.overlay.load(), None)[1]
    with pytest.raises(
        BackendError, match=rf"not connected to the OVN northbound database \({REMOTES}\)"
    ):
        host.ipam.request_pool(pool="10.90.0.0/16", sub_pool="", v6=False)
    # a request for a network not known yet (perhaps an overlay one) says the same
    with pytest.raises(BackendError, match="not connected"):
        host.networks.backend("b" * 64)
    assert not link.connect_once() and link.attempts == 1 and link.last_error
    up[0] = True
    assert link.connect_once() and link.ready and host.overlay.loaded
    net, pool = host.create_network()
    _, address = host.run(net, pool)
    assert address.ip == IPv4Address("10.90.0.2")


def test_bridge_networks_do_not_need_the_northbound() -> None:
    def connect() -> FakeNorthbound:
        raise BackendError("unreachable")

    link = NorthboundLink(REMOTES, connect)
    driver = make_driver()
    overlay = Overlay(
        link, FakeIntegration(), FakeLinks(), datapath_type="netdev", join_timeout=1.0
    )
    from docker_ovs_plugin.service.networks import Networks

    networks = Networks(driver, overlay)
    import ipaddress

    from docker_ovs_plugin.service.model import Subnet

    subnet = Subnet(ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_interface("10.1.0.1/24"))
    networks.create_network("a" * 64, {}, [subnet], [], internal=False, address_space="")
    assert networks.backend("a" * 64) is driver


# -- the overlay reconciler -----------------------------------------------------------------


class Docker:
    def __init__(self) -> None:
        self.view: dict[str, DockerNetworkView] = {}
        self.down = False

    def network_view(
        self, network_ids: Iterable[str], subnets: Iterable[str]
    ) -> dict[str, DockerNetworkView]:
        """Like Docker: asked by id, plus any network on one of the subnets."""
        if self.down:
            raise ConnectionError("docker.sock: connection refused")
        ids, wanted = set(network_ids), set(subnets)
        return {k: v for k, v in self.view.items() if k in ids or v.subnets & wanted}


class Wall:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall() -> Wall:
    return Wall()


def drift(host: Host, docker: Docker, wall: Wall) -> tuple[OverlayDrift, Reconciler]:
    d = OverlayDrift(
        host.overlay,
        host.nb,
        host.integration,
        host.links,
        name="ovs",
        docker=docker,
        grace=10.0,
        wall=wall,
    )
    switch = FakeSwitch()
    from docker_ovs_plugin.service.driver import Driver

    r = Reconciler(
        Driver(
            switch, host.links, FakeFirewall(), FakeFlows(switch=switch), datapath_type="netdev"
        ),
        switch=switch,
        links=host.links,
        firewall=FakeFirewall(),
        flows=FakeFlows(switch=switch),
        docker=None,
        extra=[d.findings],
    )
    return d, r


def view(
    endpoints: set[str], addresses: set[str], subnet: str = "10.90.0.0/16"
) -> DockerNetworkView:
    return DockerNetworkView(
        frozenset(endpoints), frozenset(IPv4Address(a) for a in addresses), frozenset({subnet})
    )


def test_consistent_overlay_has_no_findings(wall: Wall) -> None:
    nb = FakeNorthbound(clock=wall)
    h = Host(nb, "h1")
    net, pool = h.create_network()
    ep, a = h.run(net, pool)
    docker = Docker()
    docker.view = {net: view({ep}, {str(a.ip)})}
    d, _ = drift(h, docker, wall)
    wall.now += 3600
    assert d.findings() == []


def test_an_endpoint_docker_forgot_goes_and_its_address_is_then_collected(wall: Wall) -> None:
    nb = FakeNorthbound(clock=wall)
    h = Host(nb, "h1")
    net, pool = h.create_network()
    ep, a = h.run(net, pool)
    port = h.overlay.endpoints()[0].host_if
    docker = Docker()
    docker.view = {net: view(set(), set())}
    d, r = drift(h, docker, wall)
    assert [f.key for f in d.findings()] == [f"overlay-endpoint:{ep}"]
    assert r.run_once(grace=10.0) == []  # first sighting: nothing removed
    wall.now += 11
    r._suspects = {k: t - 11 for k, t in r._suspects.items()}
    assert len(r.run_once(grace=10.0)) == 1
    assert port not in h.integration.ports and not h.links.exists(port)
    res = nb.reservation(pool, a.ip)
    assert res is not None and res.endpoint_id is None  # a plain reservation now
    found = d.findings()
    assert [f.key for f in found] == [f"reservation:{pool}-{a.ip}"]
    assert "Docker never released it" in found[0].message
    found[0].repair()
    assert nb.reservation(pool, a.ip) is None


def test_a_fresh_reservation_and_one_docker_holds_are_not_collected(wall: Wall) -> None:
    nb = FakeNorthbound(clock=wall)
    h = Host(nb, "h1")
    net, pool = h.create_network()
    fresh = h.ipam.request_address(pool, "", {})  # RequestAddress, CreateEndpoint to come
    docker = Docker()
    docker.view = {net: view(set(), {fresh.split("/")[0]})}
    d, _ = drift(h, docker, wall)
    assert d.findings() == []
    wall.now += 3600  # old now, but Docker has it
    assert d.findings() == []
    docker.view = {net: view(set(), set())}
    assert [f.key for f in d.findings()] == [f"reservation:{pool}-{fresh.split('/')[0]}"]


def test_an_address_a_network_on_our_subnet_holds_is_not_collected(wall: Wall) -> None:
    # A Docker network this host has no record of (whatever Docker calls its driver) that is on
    # one of our pools' subnets may hold its addresses: they stay reserved.
    nb = FakeNorthbound(clock=wall)
    h = Host(nb, "h1")
    net, pool = h.create_network()
    held = h.ipam.request_address(pool, "", {}).split("/")[0]
    docker = Docker()
    docker.view = {net: view(set(), set()), "f" * 64: view(set(), {held})}
    d, _ = drift(h, docker, wall)
    wall.now += 3600
    assert d.findings() == []
    docker.view = {net: view(set(), set()), "f" * 64: view(set(), {held}, "10.91.0.0/16")}
    assert [f.key for f in d.findings()] == [f"reservation:{pool}-{held}"]


def test_a_network_removed_while_down_drops_this_hosts_keys_and_the_unused_switch(
    wall: Wall,
) -> None:
    nb = FakeNorthbound(clock=wall)
    h = Host(nb, "h1")
    net, pool = h.create_network()
    docker = Docker()  # Docker has no network any more
    d, _ = drift(h, docker, wall)
    found = d.findings()
    assert [f.key for f in found] == [f"overlay-network:{net}"]
    found[0].repair()
    found = d.findings()  # the next pass: the pool key RequestPool left
    assert [f.key for f in found] == [f"pool-key:{pool}"]
    found[0].repair()
    assert nb.pool(pool) is None  # no host uses it: deleted (compare-and-swap)
    # and RequestPool for the subnet works again instead of refusing with Conflict
    h.create_network()


def test_only_this_hosts_keys_are_dropped(wall: Wall) -> None:
    nb = FakeNorthbound(clock=wall)
    h1, h2 = Host(nb, "h1"), Host(nb, "h2")
    _net1, pool = h1.create_network()
    h2.create_network()
    d, _ = drift(h1, Docker(), wall)
    for _ in range(2):
        for f in d.findings():
            f.repair()
    p = nb.pool(pool)
    assert p is not None and set(p.networks) == {"h2"} and set(p.pool_hosts) == {"h2"}


def test_stray_ports_and_veths_of_ours_go_others_stay(wall: Wall) -> None:
    nb = FakeNorthbound(clock=wall)
    h = Host(nb, "h1")
    net, pool = h.create_network()
    ep, _ = h.run(net, pool)
    docker = Docker()
    docker.view = {net: view({ep}, set())}
    h.links.links["olpdeadbeef0000"] = "olcdeadbeef0000"  # left by a crash
    h.links.links["ovpforeign00000"] = "ovcforeign00000"  # bridge mode's: not judged here
    h.restart()  # a new process that lost nothing
    d, _ = drift(h, docker, wall)
    keys = [f.key for f in d.findings()]
    assert "overlay-link:olpdeadbeef0000" in keys
    assert not any("ovpforeign" in k for k in keys)
    assert not any(k.startswith("overlay-port") for k in keys)


def test_docker_down_or_northbound_down_judges_nothing(wall: Wall) -> None:
    nb = FakeNorthbound(clock=wall)
    h = Host(nb, "h1")
    h.create_network()
    docker = Docker()
    docker.down = True
    d, _ = drift(h, docker, wall)
    assert d.findings() == []


# -- doctor ------------------------------------------------------------------------------------


class Probe:
    def __init__(self) -> None:
        self.ids = {
            "system-id": "h1",
            "ovn-remote": "tcp:192.0.2.11:6642",
            "ovn-encap-type": "geneve",
            "ovn-encap-ip": "192.0.2.12",
            "ovn-bridge-datapath-type": "netdev",
        }
        self.bridges = {"br-int": "netdev", "br-phy": "netdev"}
        self.interfaces = {"br-phy": "internal", "eth1": ""}
        self.addresses = {"192.0.2.12": "br-phy"}
        self.ctl = Controller(
            running=True, where="/run/ovn/ovn-controller.pid", pid=7, status="connected"
        )

    def ovs_external_ids(self) -> dict[str, str]:
        return dict(self.ids)

    def bridge_datapath(self, name: str) -> str | None:
        return self.bridges.get(name)

    def interface_type(self, name: str) -> str | None:
        return self.interfaces.get(name)

    def device_of_address(self, address: str) -> str | None:
        return self.addresses.get(address)

    def controller(self) -> Controller:
        return self.ctl


def problems(
    probe: Probe, *, nb_error: str | None = None, state: HostState | None = None
) -> list[str]:
    checks = check_host(
        probe,
        remotes=REMOTES,
        nb_error=nb_error,
        host_state=lambda _: state,
        fence_period=120.0,
        wall=lambda: 1000.0,
    )
    return [c.message for c in checks if not c.ok]


def test_doctor_a_well_set_up_host() -> None:
    assert problems(Probe(), state=HostState("h1", "995.0")) == []


def test_doctor_says_what_is_missing_and_how_to_fix_it() -> None:
    p = Probe()
    del p.ids["ovn-remote"]
    p.ctl = Controller(running=False, where="/run/ovn/ovn-controller.pid")
    p.bridges.pop("br-int")
    p.addresses = {"192.0.2.12": "eth1"}
    out = problems(p, nb_error="connection refused")
    assert any("no external_ids:ovn-remote; set it: ovs-vsctl set" in m for m in out)
    assert any("ovn-controller is not running" in m for m in out)
    assert any("integration bridge br-int does not exist" in m for m in out)
    assert any("is on eth1, which is not an OVS bridge's internal port" in m for m in out)
    assert any(
        f"northbound database ({REMOTES}) is not reachable: connection refused" in m for m in out
    )


def test_doctor_controller_not_connected_datapath_mismatch_no_encap_device() -> None:
    p = Probe()
    p.ctl = Controller(running=True, where="x", pid=7, status="not connected")
    p.bridges["br-int"] = "system"
    p.addresses = {}
    out = problems(p, state=HostState("h1", "995.0"))
    assert len(out) == 3
    assert "not connected to the southbound database" in out[0]
    assert "datapath_type system" in out[1]
    assert "no device holds ovn-encap-ip 192.0.2.12" in out[2]


def test_doctor_heartbeat_states() -> None:
    assert "no heartbeat of this host" in problems(Probe(), state=None)[0]
    assert (
        "is FENCED (after 130 s" in problems(Probe(), state=HostState("h1", "1.0", 900.0, 130.0))[0]
    )
    assert "last heartbeat is 500 s old" in problems(Probe(), state=HostState("h1", "500.0"))[0]
