"""The network sync against in-memory adapters: several hosts, each its own plugin (Overlay,
Ipam, NetworkSync) and its own dockerd (FakeDockerd, which calls that host's plugin in
Docker's order), share one fake northbound database."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pytest

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.service.errors import Conflict
from docker_ovs_plugin.service.ports import ClusterNetwork
from docker_ovs_plugin.service.sync import NetworkSync

from .fakes import FakeDockerd, FakeNorthbound
from .test_overlay import Host as PluginHost

OPTIONS = {"ovs.mode": "overlay", "ovs.mtu": "1400"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Host(PluginHost):
    """test_overlay's host (its plugin on fakes), with its own dockerd and network sync."""

    clock: Clock = field(default_factory=Clock)
    docker: FakeDockerd = field(init=False)
    sync: NetworkSync = field(init=False)

    def __post_init__(self) -> None:
        self.docker = FakeDockerd(self.system_id, "ovs", self)
        super().__post_init__()

    def restart(self) -> None:
        """A new plugin process (dockerd keeps its networks): nothing in memory survives."""
        super().restart()
        self.sync = NetworkSync(self.nb, self.docker, self.integration, clock=self.clock)
        self.overlay.before_delete = self.sync.before_delete

    def create(self, name: str = "web", subnet: str = "10.90.0.0/16", **ipam_opts: str) -> str:
        """docker network create -d ovs --ipam-driver ovs -o ... --subnet S NAME"""
        return self.docker.create_network(
            name,
            driver="ovs",
            options=OPTIONS,
            ipam_driver="ovs",
            subnet=subnet,
            gateway=None,
            ipam_options=ipam_opts,
        )

    def rm(self, name: str = "web") -> None:
        n = self.docker.by_name(name)
        assert n is not None
        self.docker.remove_network(n.network_id)

    def has(self, name: str = "web") -> str | None:
        """The subnet of this host's Docker network of that name."""
        n = self.docker.by_name(name)
        return n.subnet if n is not None else None


@pytest.fixture
def nb() -> FakeNorthbound:
    return FakeNorthbound()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hosts(nb: FakeNorthbound, clock: Clock) -> list[Host]:
    return [Host(nb, f"h{i}", clock=clock) for i in (1, 2, 3)]


def settle(hosts: list[Host], rounds: int = 4) -> None:
    for _ in range(rounds):
        for h in hosts:
            h.sync.run_once()


def named(nb: FakeNorthbound, name: str = "web") -> list[ClusterNetwork]:
    return [n for n in nb.cluster_networks() if n.name == name]


# -- publish and propagate -------------------------------------------------------------------


def test_a_new_network_is_published_with_its_name_and_options(hosts: list[Host]) -> None:
    h1 = hosts[0]
    h1.create(foo="bar")
    assert [n.name for n in h1.nb.cluster_networks()] == [None]  # CreateNetwork has no name
    h1.sync.run_once()
    [net] = h1.nb.cluster_networks()
    assert (net.name, net.publisher, net.holds_name) == ("web", "h1", True)
    assert net.driver_options == OPTIONS
    assert net.ipam_options == {"foo": "bar"}
    assert str(net.pool.subnet) == "10.90.0.0/16"
    sw = h1.nb.switches[net.pool.pool_id]
    assert sw.external_ids[c.NAME_TOKEN_KEY] == c.name_token("web")
    assert h1.nb.name_tokens == {c.name_token("web"): net.pool.pool_id}


def test_every_other_host_creates_it_with_the_same_name_subnet_and_options(
    hosts: list[Host],
) -> None:
    h1, h2, h3 = hosts
    h1.create(foo="bar")
    settle(hosts)
    [net] = h1.nb.cluster_networks()
    for h in (h2, h3):
        n = h.docker.by_name("web")
        assert n is not None
        assert (n.driver, n.ipam_driver, n.subnet, n.gateway) == (
            "ovs",
            "ovs",
            "10.90.0.0/16",
            "10.90.0.1",
        )
        assert n.options == OPTIONS
        assert n.ipam_options == {"foo": "bar"}
        # Its dockerd's calls joined the one switch: a record per host, one gateway.
        assert n.pool_id == net.pool.pool_id
    [net] = h1.nb.cluster_networks()
    assert set(net.pool.networks) == {"h1", "h2", "h3"}
    assert len(h1.nb.switches) == 1


def test_containers_of_every_host_share_the_subnet(hosts: list[Host]) -> None:
    h1, _h2, _h3 = hosts
    h1.create()
    settle(hosts)
    for h in hosts:
        h.docker.run("web")
    ports = next(iter(h1.nb.switches.values())).ports
    bound = sorted(p.external_ids[c.HOST_KEY] for p in ports.values() if p.addresses)
    assert bound == ["h1", "h2", "h3"]


def test_a_host_that_joins_later_or_restarts_catches_up_on_its_first_pass(
    nb: FakeNorthbound, clock: Clock
) -> None:
    h1, h2 = Host(nb, "h1", clock=clock), Host(nb, "h2", clock=clock)
    h1.create("web")
    h1.create("db", subnet="10.91.0.0/16")
    settle([h1])
    h2.restart()  # its plugin was down meanwhile
    h2.sync.run_once()
    assert (h2.has("web"), h2.has("db")) == ("10.90.0.0/16", "10.91.0.0/16")
    h3 = Host(nb, "h3", clock=clock)  # a host that joins the cluster now
    h3.sync.run_once()
    assert (h3.has("web"), h3.has("db")) == ("10.90.0.0/16", "10.91.0.0/16")
    settle([h1, h2, h3])
    assert len(h1.docker.nets) == len(h2.docker.nets) == len(h3.docker.nets) == 2


def test_a_network_not_yet_in_docker_is_looked_for_again_soon(hosts: list[Host]) -> None:
    """dockerd stores a network a moment after the plugin answered CreateNetwork."""
    h1 = hosts[0]
    h1.create()
    stored = h1.docker.nets.copy()
    h1.docker.nets.clear()
    assert h1.sync.run_once() is True  # pending: run again soon
    h1.docker.nets.update(stored)
    assert h1.sync.run_once() is False
    assert named(h1.nb)


def test_docker_down_is_a_warning_and_a_retry(
    hosts: list[Host], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    h1, h2, _ = hosts
    h1.create()
    h1.sync.run_once()
    h2.docker.down = True
    with caplog.at_level(logging.WARNING):
        h2.sync.run_once()
        h2.sync.run_once()  # not hammered, and said once
    assert sum("connection refused" in r.message for r in caplog.records) == 1
    h2.docker.down = False
    h2.sync.run_once()
    assert h2.has() is None  # not before the retry time
    clock.now += 5.0
    h2.sync.run_once()
    assert h2.has() == "10.90.0.0/16"


# -- the name race ----------------------------------------------------------------------------


def test_two_hosts_creating_the_same_name_at_once_end_with_one_network(
    hosts: list[Host],
) -> None:
    h1, h2, _h3 = hosts
    h1.create("web", subnet="10.1.0.0/16")
    h2.create("web", subnet="10.2.0.0/16")
    settle(hosts)
    assert [h.has() for h in hosts] == ["10.1.0.0/16"] * 3
    [net] = h1.nb.cluster_networks()  # the loser's switch went with its last use
    assert (net.name, str(net.pool.subnet)) == ("web", "10.1.0.0/16")
    assert set(net.pool.networks) == {"h1", "h2", "h3"}
    assert h1.nb.name_tokens == {c.name_token("web"): net.pool.pool_id}


def test_the_same_name_and_subnet_at_once_is_one_switch_published_once(
    hosts: list[Host],
) -> None:
    h1, h2, _ = hosts
    h1.create()
    h2.create()
    settle(hosts)
    [net] = h1.nb.cluster_networks()
    assert set(net.pool.networks) == {"h1", "h2", "h3"}
    assert len({h.docker.by_name("web").network_id for h in hosts}) == 3  # type: ignore[union-attr]


def test_a_race_loser_with_containers_is_left_alone_with_an_error(
    hosts: list[Host], caplog: pytest.LogCaptureFixture
) -> None:
    h1, h2, _h3 = hosts
    h1.create("web", subnet="10.1.0.0/16")
    h2.create("web", subnet="10.2.0.0/16")
    h2.docker.run("web")
    with caplog.at_level(logging.ERROR):
        settle(hosts)
    assert [h.has() for h in hosts] == ["10.1.0.0/16", "10.2.0.0/16", "10.1.0.0/16"]
    errors = [r.message for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # said once, not every pass
    assert "1 container(s)" in errors[0]
    assert "docker network rm web" in errors[0]


# -- remove once ------------------------------------------------------------------------------


def test_rm_on_one_host_removes_it_everywhere(hosts: list[Host]) -> None:
    h1, h2, _h3 = hosts
    h1.create()
    settle(hosts)
    h2.rm()
    [net] = h1.nb.cluster_networks()
    assert net.deleted is not None
    assert net.deleted.host == "h2"
    assert set(net.deleted.networks) == {"h1", "h2", "h3"}
    settle(hosts)
    assert [h.has() for h in hosts] == [None, None, None]
    assert h1.nb.switches == {}
    assert h1.nb.name_tokens == {}


def test_a_removed_network_refuses_new_hosts_until_it_is_gone(hosts: list[Host]) -> None:
    h1, _h2, _h3 = hosts
    h1.create()
    settle(hosts)
    h1.rm()
    with pytest.raises(Conflict, match=r"being removed.*h2, h3"):
        h1.create()
    settle(hosts)
    h1.create()  # a new network of the same name: published and propagated again
    settle(hosts)
    assert [h.has() for h in hosts] == ["10.90.0.0/16"] * 3


def test_a_new_network_may_take_a_removed_ones_name(hosts: list[Host]) -> None:
    h1, h2, h3 = hosts
    h1.create("web", subnet="10.1.0.0/16")
    settle(hosts)
    h3.docker.down = True  # h3 has not removed its copy yet
    h1.rm()
    settle(hosts[:2])
    h2.create("web", subnet="10.2.0.0/16")
    settle(hosts[:2])
    assert [h.has() for h in hosts] == ["10.2.0.0/16", "10.2.0.0/16", "10.1.0.0/16"]
    h3.docker.down = False
    h3.sync._retry_at.clear()
    settle(hosts)
    assert [h.has() for h in hosts] == ["10.2.0.0/16"] * 3
    assert [str(n.pool.subnet) for n in h1.nb.cluster_networks()] == ["10.2.0.0/16"]


def test_rm_while_containers_elsewhere_use_it_removes_it_here_only(
    hosts: list[Host], caplog: pytest.LogCaptureFixture
) -> None:
    h1, _h2, h3 = hosts
    h1.create()
    settle(hosts)
    h3.docker.run("web")
    h3.docker.run("web")
    removed = h1.docker.by_name("web").network_id  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING):
        h1.rm()
    [warning] = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert "removed on this host only" in warning
    assert "h3 (2 containers)" in warning
    assert "h2" not in warning  # h2 has the network but no container on it
    settle(hosts)
    assert [h.has() for h in hosts] == [None, "10.90.0.0/16", "10.90.0.0/16"]
    [net] = h1.nb.cluster_networks()
    assert net.deleted is None
    assert net.left == {"h1": removed}
    # Not created on h1 again, pass after pass.
    settle(hosts)
    assert h1.has() is None
    # The last containers gone, an rm removes it everywhere (h1 has nothing left to remove).
    for cid in list(h3.docker.by_name("web").containers):  # type: ignore[union-attr]
        h3.docker.stop("web", cid)
    h3.rm()
    settle(hosts)
    assert [h.has() for h in hosts] == [None, None, None]
    assert h1.nb.switches == {}


def test_a_pass_while_dockerd_still_removes_the_network_is_no_rejoin(hosts: list[Host]) -> None:
    """The sync thread wakes on the "left" mark while DeleteNetwork is still running: this
    host's Docker still lists the network and the switch still records it (found in the lab:
    the network came back on the host that had removed it, 10 ms later)."""
    h1, h2, _ = hosts
    h1.create()
    settle(hosts)
    h2.docker.run("web")
    before_delete = h1.sync.before_delete

    def and_a_pass_meanwhile(network_id: str, pool_id: str) -> None:
        before_delete(network_id, pool_id)
        h1.sync.run_once()

    h1.overlay.before_delete = and_a_pass_meanwhile
    h1.rm()
    settle(hosts)
    assert h1.has() is None
    [net] = h1.nb.cluster_networks()
    assert set(net.left) == {"h1"}


def test_a_host_that_left_rejoins_by_creating_it_again(hosts: list[Host]) -> None:
    h1, h2, _ = hosts
    h1.create()
    settle(hosts)
    h2.docker.run("web")
    h1.rm()
    settle(hosts)
    h1.create()
    settle(hosts)
    [net] = h1.nb.cluster_networks()
    assert net.left == {}
    assert h1.has() == "10.90.0.0/16"


def test_a_container_started_during_the_removal_keeps_its_network(
    hosts: list[Host], caplog: pytest.LogCaptureFixture
) -> None:
    h1, h2, _ = hosts
    h1.create()
    settle(hosts)
    h1.rm()
    h2.docker.run("web")  # after the tombstone, before h2's sync acted on it
    with caplog.at_level(logging.ERROR):
        settle(hosts)
    assert h2.has() == "10.90.0.0/16"
    assert any("1 container(s) here use it" in r.message for r in caplog.records)


# -- what the sync never touches -------------------------------------------------------------


def test_a_foreign_network_of_the_same_name_is_never_touched(
    hosts: list[Host], caplog: pytest.LogCaptureFixture
) -> None:
    h1, h2, _ = hosts
    h2.docker.create_network(
        "web",
        driver="bridge",
        options={},
        ipam_driver="default",
        subnet="172.30.0.0/16",
        gateway=None,
        ipam_options={},
    )
    h1.create()
    with caplog.at_level(logging.WARNING):
        settle(hosts)
    n = h2.docker.by_name("web")
    assert n is not None and n.driver == "bridge"
    assert sum("of driver 'bridge'" in r.message for r in caplog.records) == 1
    h1.rm()
    settle(hosts)
    assert h2.docker.by_name("web") is n


def test_a_removal_only_removes_the_network_id_this_host_recorded(hosts: list[Host]) -> None:
    h1, h2, _ = hosts
    h1.create()
    settle(hosts)
    h1.rm()
    # h2's Docker now holds another network under that id's name: only the recorded id goes.
    other = h2.docker.create_network(
        "other",
        driver="ovs",
        options=OPTIONS,
        ipam_driver="ovs",
        subnet="10.99.0.0/16",
        gateway=None,
        ipam_options={},
    )
    settle(hosts)
    assert h2.has() is None
    assert other in h2.docker.nets


def test_the_delete_hook_asks_no_docker(hosts: list[Host]) -> None:
    """DeleteNetwork runs inside dockerd's request: the hook writes OVN only."""
    h1, _h2, _ = hosts
    h1.create()
    settle(hosts)
    n = h1.docker.by_name("web")
    assert n is not None
    h1.docker.down = True  # any Docker call from the hook would raise
    h1.sync.before_delete(n.network_id, n.pool_id)
    assert named(h1.nb)[0].deleted is not None


# -- the thread: woken by northbound changes -------------------------------------------------


def test_the_background_threads_propagate_within_two_seconds(
    nb: FakeNorthbound, clock: Clock
) -> None:
    hosts = [Host(nb, f"h{i}", clock=clock) for i in (1, 2, 3)]
    for h in hosts:
        # A long interval: only the row events can make it within 2 s.
        h.sync = NetworkSync(nb, h.docker, h.integration, interval=60.0)
        h.overlay.before_delete = h.sync.before_delete
    for h in hosts:
        h.sync.start()
    try:
        began = time.monotonic()
        hosts[0].create()
        deadline = began + 2.0
        while time.monotonic() < deadline and not all(h.has() for h in hosts):
            time.sleep(0.01)
        assert [h.has() for h in hosts] == ["10.90.0.0/16"] * 3
        hosts[1].rm()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(h.has() for h in hosts):
            time.sleep(0.01)
        assert [h.has() for h in hosts] == [None, None, None]
    finally:
        for h in hosts:
            h.sync.stop()
