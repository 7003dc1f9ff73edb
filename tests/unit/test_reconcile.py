"""Drift between Docker, OVS, the kernel and iptables is found, worded and repaired."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Interface

import pytest

from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import Subnet
from docker_ovs_plugin.service.reconcile import Reconciler

from .fakes import FakeBridge, FakeDocker, FakeFirewall, FakeFlows, FakeLinks, FakeSwitch

NET = "a" * 64
EP = "c" * 64
EP2 = "d" * 64
SUBNET = Subnet(ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_interface("10.1.0.1/24"))


class World:
    def __init__(self) -> None:
        self.switch = FakeSwitch()
        self.links = FakeLinks()
        self.firewall = FakeFirewall()
        self.flows = FakeFlows(switch=self.switch)
        self.docker = FakeDocker()
        self.driver = Driver(
            self.switch, self.links, self.firewall, self.flows, datapath_type="netdev"
        )
        self.reconciler = Reconciler(
            self.driver,
            switch=self.switch,
            links=self.links,
            firewall=self.firewall,
            flows=self.flows,
            docker=self.docker,
        )

    def network_with(self, *endpoints: str) -> None:
        self.driver.create_network(NET, {}, [SUBNET], [], internal=False)
        for i, ep in enumerate(endpoints, start=2):
            self.driver.create_endpoint(
                NET, ep, ipv4=IPv4Interface(f"10.1.0.{i}/24"), ipv6=None, mac=None
            )
        self.docker.networks[NET] = set(endpoints)


@pytest.fixture
def world() -> World:
    return World()


def test_consistent_world_has_no_findings(world: World) -> None:
    world.network_with(EP, EP2)
    assert world.reconciler.findings() == []


def test_endpoint_docker_forgot_is_collected_on_the_second_pass(world: World) -> None:
    world.network_with(EP, EP2)
    world.docker.networks[NET] = {EP2}  # EP's container stopped while the plugin was down
    (finding,) = world.reconciler.findings()
    assert "gone from Docker" in finding.message and EP[:12] in finding.message
    assert world.reconciler.run_once() == []  # first sighting: wait
    assert "ovp" + EP[:12] in world.switch.ports
    assert len(world.reconciler.run_once()) == 1
    assert "ovp" + EP[:12] not in world.switch.ports
    assert "ovp" + EP[:12] not in world.links.links
    assert [e.endpoint_id for e in world.driver.endpoints()] == [EP2]


def test_a_suspect_that_recovers_is_not_collected(world: World) -> None:
    world.network_with(EP)
    world.docker.networks[NET] = set()  # e.g. between CreateEndpoint and Join
    world.reconciler.run_once()
    world.docker.networks[NET] = {EP}
    world.reconciler.run_once()
    world.docker.networks[NET] = set()
    assert world.reconciler.run_once() == []
    assert world.driver.endpoints()


def test_network_docker_forgot_is_removed(world: World) -> None:
    world.network_with(EP)
    del world.docker.networks[NET]
    applied = world.reconciler.run_once(confirmed=True)
    assert any("no longer exists in Docker" in f.message for f in applied)
    assert world.switch.bridges == {}
    assert world.firewall.networks == {}


def test_docker_is_asked_about_each_network_by_its_own_id(world: World) -> None:
    # Not by listing networks by driver name: under a managed plugin's alias Docker names the
    # driver differently, and such a list would miss every live network.
    world.network_with(EP)
    assert world.reconciler.run_once(confirmed=True) == []
    assert world.docker.asked == [[NET]]


def test_docker_down_judges_nothing(world: World) -> None:
    world.network_with(EP)
    world.docker.down = True
    world.docker.networks.clear()
    assert world.reconciler.run_once(confirmed=True) == []
    assert world.driver.endpoints()


def test_missing_address_rules_and_flows_are_put_back_at_once(world: World) -> None:
    world.network_with(EP)
    world.links.assigned.clear()  # ovs-vswitchd recreated the internal port
    world.firewall.networks.clear()
    world.flows.endpoints.clear()
    messages = [f.message for f in world.reconciler.run_once()]
    assert len(messages) == 3, messages
    assert world.links.assigned["ovsbr-aaaaaaaa"] == [SUBNET.gateway]
    assert NET in world.firewall.networks
    assert EP in world.flows.endpoints
    assert world.reconciler.findings() == []


def test_flows_of_an_endpoint_without_its_veth_are_not_reinstalled(world: World) -> None:
    """After a reboot the veth is gone until Docker replugs or forgets the endpoint: there is no
    OpenFlow port to guard, and trying would only fail on every pass."""
    world.network_with(EP, EP2)
    world.flows.endpoints.clear()
    ep = next(e for e in world.driver.endpoints() if e.endpoint_id == EP)
    del world.links.links[ep.host_if]
    assert [f.key for f in world.reconciler.findings()] == [f"flows:{EP2}"]


def test_a_backend_refusal_is_one_warning_and_is_tried_again(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While ovs-vswitchd brings a bridge back, flows cannot go in yet: a warning without a
    traceback, and the next pass repairs it."""
    world.network_with(EP)
    world.flows.endpoints.clear()
    real_install = world.flows.install_endpoint

    def refuse(*args: object) -> None:
        raise BackendError("ovs-vswitchd refused flows: no such bridge")

    monkeypatch.setattr(world.flows, "install_endpoint", refuse)
    assert world.reconciler.run_once() == []
    (record,) = [r for r in caplog.records if "could not repair" in r.getMessage()]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "no such bridge" in record.getMessage()
    monkeypatch.setattr(world.flows, "install_endpoint", real_install)
    assert [f.key for f in world.reconciler.run_once()] == [f"flows:{EP}"]


def test_an_unexpected_repair_failure_keeps_its_traceback(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world.network_with(EP)
    world.flows.endpoints.clear()

    def broken(*args: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(world.flows, "install_endpoint", broken)
    assert world.reconciler.run_once() == []
    (record,) = [r for r in caplog.records if "could not repair" in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is not None


def test_restore_plumbing_never_removes(world: World) -> None:
    world.network_with(EP)
    world.docker.networks.clear()
    world.flows.endpoints.clear()
    applied = world.reconciler.restore_plumbing()
    assert [f.key for f in applied] == [f"flows:{EP}"]
    assert world.switch.bridges


def test_leftovers_are_found_and_removed(world: World) -> None:
    world.network_with(EP)
    world.links.create_veth(
        "ovp0123456789ab", "ovc0123456789ab", mtu=1500, peer_mac="x", peer_tx_checksum=True
    )
    world.switch.bridges["ovsbr-deadbeef"] = FakeBridge({"owner": "docker-ovs-plugin"})
    world.firewall.unknown.add("0123456789ab")
    stale_cookie = (int(NET[:8], 16) << 32) | 0x1234
    world.flows.extra_cookies.add(stale_cookie)
    messages = sorted(f.message for f in world.reconciler.findings())
    assert len(messages) == 5, messages
    world.reconciler.run_once(confirmed=True)
    assert world.reconciler.findings() == []
    assert "ovp0123456789ab" not in world.links.links
    assert "ovsbr-deadbeef" not in world.switch.bridges
    assert world.firewall.unknown == set()
    assert stale_cookie not in world.flows.cookies("ovsbr-aaaaaaaa")
    assert world.driver.endpoints()  # what is consistent stays


def test_deleted_bridge_is_recreated_with_its_ports(world: World) -> None:
    world.network_with(EP)
    del world.switch.bridges["ovsbr-aaaaaaaa"]
    world.switch.ports.clear()
    (finding,) = world.reconciler.findings()
    assert "missing from Open vSwitch" in finding.message
    world.reconciler.run_once()
    assert "ovsbr-aaaaaaaa" in world.switch.bridges
    assert "ovp" + EP[:12] in world.switch.ports


def test_recreated_bridge_gets_its_flows_back_in_the_same_pass(world: World) -> None:
    world.network_with(EP)
    del world.switch.bridges["ovsbr-aaaaaaaa"]
    world.switch.ports.clear()
    world.reconciler.run_once()
    assert world.reconciler.findings() == []


def test_another_plugin_instance_on_the_same_ovs_is_left_alone(world: World) -> None:
    world.network_with(EP)
    other = Driver(
        world.switch, world.links, world.firewall, world.flows, datapath_type="netdev", name="ovs2"
    )
    other_net = "b" * 64
    other.create_network(
        other_net,
        {},
        [Subnet(ipaddress.ip_network("10.2.0.0/24"), ipaddress.ip_interface("10.2.0.1/24"))],
        [],
        internal=False,
    )
    other.create_endpoint(other_net, EP2, ipv4=IPv4Interface("10.2.0.2/24"), ipv6=None, mac=None)
    assert world.reconciler.findings() == []  # this instance's Docker view knows only NET
    world.driver.load()
    assert [n.network_id for n in world.driver.networks()] == [NET]
    assert [e.endpoint_id for e in world.driver.endpoints()] == [EP]


def test_removal_waits_for_the_grace_period(world: World) -> None:
    world.network_with(EP)
    world.docker.networks[NET] = set()
    assert world.reconciler.run_once(grace=60) == []
    assert world.reconciler.run_once(grace=60) == []  # seen twice, but not for 60 s yet
    assert world.driver.endpoints()
    assert len(world.reconciler.run_once(grace=0)) == 1


def test_recorded_endpoint_the_plugin_forgot_is_collected(world: World) -> None:
    world.network_with(EP)
    ep = world.driver.endpoints()[0]
    # as after a deferred deletion that failed half-way
    world.driver._store.remove_endpoint(ep.endpoint_id)
    messages = [f.message for f in world.reconciler.findings()]
    assert any("recorded in OVSDB but no longer served" in m for m in messages), messages
    world.reconciler.run_once(confirmed=True)
    assert ep.host_if not in world.switch.ports
    assert ep.host_if not in world.links.links
    assert world.reconciler.findings() == []
