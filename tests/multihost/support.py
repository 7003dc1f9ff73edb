"""What is multi-host-specific in the suite: its names, the record of timings shown after the
run, and this machine's own state that the cluster must leave as it was."""

from __future__ import annotations

from dataclasses import dataclass

from docker_ovs_plugin import contract
from testbed.commands import wait_until
from testbed.host import LOCAL
from testbed.multihost import Layout
from testbed.snapshot import HostSnapshot, Ownership, Snapshots
from testbed.suite import Suite

LAYOUT = Layout()
DRIVER = "ovsmh"
SUITE = Suite(
    driver=DRIVER,
    label="docker-ovs-plugin-mh",
    prefix=LAYOUT.prefix,
    run_dir=LAYOUT.base,
)
#: The logical switch the hand-wired ports share (10.98.0.0/24).
SWITCH = f"{LAYOUT.prefix}-ls"

#: Every plugin's --ovn-fence-period: short enough for a test to outwait, longer than any
#: other test keeps a host's plugin down.
FENCE_PERIOD = 20.0

#: Shown after the run (bring-up, teardown, first replies).
TIMINGS: dict[str, float | int] = {}

#: Everything the cluster would leave in this machine's namespace if it leaked: the plugin's
#: links, ours, and those OVS/OVN make in a host namespace.
LOCAL_LINK_PREFIXES = (
    contract.HOST_VETH_PREFIX,
    contract.CONTAINER_VETH_PREFIX,
    contract.BRIDGE_PREFIX,
    LAYOUT.prefix,
    "br-phy",
    "br-int",
    "genev_sys",
)
#: What of ours could leak into this machine's namespace: our prefix, the underlay's and the
#: logical switch's addresses, what OVS/OVN make on a host, and (recorded as the tests make
#: them) the plugin networks of the cluster's hosts.
OURS = Ownership(LAYOUT.prefix)
OUR_MARKERS = ("192.0.2.", "10.98.0.", "br-phy", "br-int", "genev_sys", "ovn-h")


def not_ours(difference: str) -> bool:
    """Other users of this machine (another engineer's e2e run) create and remove their own
    objects meanwhile: only differences that name something of ours are judged."""
    return not (any(m in difference for m in OUR_MARKERS) or OURS.mentions_ours(difference))


LOCAL_SNAPSHOTS = Snapshots(LOCAL, LOCAL_LINK_PREFIXES, ignore=not_ours)


def local_ovn_settings() -> dict[str, str]:
    """The OVN keys of this machine's Open_vSwitch row: what an ovs-vsctl of ours that missed
    its --db would have set. (Not system-id or hostname: the e2e suite's restarts of this
    machine's Open vSwitch set them anew.)"""
    ids = LOCAL.ovs_external_ids("Open_vSwitch", ".")
    return {k: v for k, v in ids.items() if k.startswith("ovn-")}


def local_docker_answers() -> bool:
    return LOCAL.docker("info", "--format", "{{.ID}}", check=False).returncode == 0


@dataclass(frozen=True)
class LocalState:
    """This machine's Open vSwitch, links and iptables, and its OVS's OVN settings."""

    snapshot: HostSnapshot
    ovn_settings: dict[str, str]

    @classmethod
    def take(cls) -> LocalState:
        return cls(LOCAL_SNAPSHOTS.take(), local_ovn_settings())

    def assert_unchanged(self) -> None:
        LOCAL_SNAPSHOTS.assert_restored(self.snapshot)
        now = local_ovn_settings()
        assert now == self.ovn_settings, f"OVN keys of this machine's OVS: {now}"
        # Nothing of ours reached this machine's dockerd (which the e2e suite may be
        # restarting right now: wait for it).
        sock = LOCAL.plugin_socket(DRIVER)
        assert not sock.exists(), f"{sock} exists on this machine"
        wait_until(local_docker_answers, timeout=120, interval=0.5, what="this machine's dockerd")
        nets = LOCAL.docker("network", "ls", "-q", "--filter", f"driver={DRIVER}").stdout
        assert not nets.split(), f"this machine's dockerd has {DRIVER} networks: {nets}"
