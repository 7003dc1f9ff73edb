"""Fixtures of the multi-host suite: one cluster of 3 Docker hosts on OVN for the session.

The cluster (testbed/multihost.py) lives in namespaces ``ovsmh-*`` and the directory
/run/docker-ovs-plugin-mh; it never touches this machine's Open vSwitch, Docker, links or
iptables, so this suite can share a pytest session (and the machine) with tests/e2e. It is
always torn down, and what a killed earlier run left is removed before the next bring-up.

When the machine cannot run it (not root, OVN/Docker/OVS tools missing) the tests are skipped
with the reason, except under ``CI=true`` where that fails them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Generator, Iterator

import pytest

from testbed.image import busybox_path
from testbed.multihost import Cluster, missing_tool
from testbed.suite import ci_mode

from .support import DRIVER, FENCE_PERIOD, LAYOUT, TIMINGS, LocalState

CLUSTER_KEY = pytest.StashKey[Cluster]()
#: Every host's plugin serves overlay networks on the cluster's NB (plain TCP: a lab).
#: (``--datapath-type netdev`` the harness passes itself.)
PLUGIN_ARGS = (
    "--ovn-nb",
    LAYOUT.nb_remote,
    "--ovn-nb-insecure-tcp",
    "--ovn-fence-period",
    str(FENCE_PERIOD),
)


def missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "the multi-host suite needs root (namespaces, mounts, dockerd)"
    if busybox_path() is None:
        return "a static busybox (Debian package busybox-static) is needed for the test image"
    if importlib.util.find_spec("docker_ovs_plugin") is None:
        return f"docker_ovs_plugin is not importable by {sys.executable} (pip install -e .)"
    return missing_tool()


@pytest.fixture(scope="session")
def local_before() -> LocalState:
    """This machine's own state, taken before the cluster exists."""
    reason = missing_requirement()
    if reason is not None:
        if ci_mode():
            pytest.fail(f"multi-host requirements not met (CI=true): {reason}", pytrace=False)
        pytest.skip(f"multi-host requirements not met: {reason}")
    return LocalState.take()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, local_before: LocalState) -> Iterator[Cluster]:
    """3 hosts up for the session, always torn down (test_teardown does it explicitly)."""
    c = Cluster(driver=DRIVER, plugin_args=PLUGIN_ARGS)
    request.config.stash[CLUSTER_KEY] = c
    try:
        c.up()
        TIMINGS["bring-up (s)"] = c.up_seconds
        TIMINGS.update({f"  {step} (s)": took for step, took in c.phases.items()})
        if c.leftovers:
            TIMINGS["left by an earlier run, removed"] = len(c.leftovers)
        yield c
    finally:
        c.down()
        if c.down_seconds:
            TIMINGS["teardown (s)"] = c.down_seconds


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed multi-host test reports OVN's state with it: an intermittent failure leaves
    no other trace in a CI log."""
    report = yield
    cluster = item.config.stash.get(CLUSTER_KEY, None)
    if report.failed and call.when == "call" and cluster is not None and cluster.is_up:
        report.sections.append(("OVN state after the failure", cluster.diagnostics()))
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The teardown test runs after every other multi-host test (it takes the cluster down)."""
    last = [i for i in items if i.get_closest_marker("multihost_last")]
    items[:] = [i for i in items if i not in last] + last


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("multi-host cluster timings")
        for what, value in TIMINGS.items():
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            terminalreporter.write_line(f"{what}: {shown}")
