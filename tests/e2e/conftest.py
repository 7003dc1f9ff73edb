"""Fixtures for the end-to-end suite (real dockerd + real Open vSwitch, root only).

Run (as root, with the package installed: ``pip install -e .``)::

    python -m pytest tests/e2e            # or: -m e2e

The suite starts the plugin itself as driver ``ovse2e`` (socket
/run/docker/plugins/ovse2e.sock; override with OVS_E2E_DRIVER), builds the image
``docker-ovs-plugin-test/busybox:latest`` from the host's static busybox, and creates the
namespace ``ovse2e-out`` (198.51.100.0/24) as the "outside" host. Everything it makes is
removed at teardown, and leftovers of an interrupted run are removed at the next start.
It compares the whole host state (OVS, ovp/ovc/ovsbr- links, iptables) before and after
each test, so it expects no other Docker/OVS activity on the host while it runs.

When the machine cannot run the suite (not root, docker/OVS missing or not answering,
plugin package not installed) every e2e test is skipped with the reason, except under
``CI=true`` where the same condition fails the tests: CI must never go green by skipping.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from testbed import (
    IMAGE_TAG,
    DockerEnv,
    HostSnapshot,
    OutsideHost,
    PluginError,
    PluginProcess,
    build_busybox_image,
)
from testbed.docker import RETRIED_EXCHANGES
from testbed.suite import ci_mode

from .support import (
    DOCKER_WORKAROUNDS,
    HOST,
    docker_env,
    e2e_plugin,
    make_outside_host,
    missing_requirement,
    prime_plugin_chains,
    remove_leftovers,
    take_snapshot,
)

PLUGIN_KEY = pytest.StashKey[PluginProcess]()
PLUGIN_LOGS_KEY = pytest.StashKey[tuple[list[Path], str]]()


def _unavailable(reason: str) -> None:
    if ci_mode():
        pytest.fail(f"e2e requirements not met (CI=true, so not skipping): {reason}", pytrace=False)
    pytest.skip(f"e2e requirements not met: {reason}")


@pytest.fixture(scope="session", autouse=True)
def e2e_requirements() -> None:
    """Skip (or, under CI=true, fail) when the machine cannot run the e2e suite."""
    reason = missing_requirement()
    if reason is not None:
        _unavailable(reason)


@pytest.fixture(scope="session")
def busybox_image(e2e_requirements: None) -> str:
    """The busybox test image, built once with ``docker import`` (reused if tagged)."""
    build_busybox_image(HOST, IMAGE_TAG)
    return IMAGE_TAG


@pytest.fixture(scope="session")
def plugin_session(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    e2e_requirements: None,
) -> Iterator[PluginProcess]:
    """The plugin process, shared by the session (restart tests stop/start it)."""
    plugin = e2e_plugin(tmp_path_factory.mktemp("plugin-logs"))
    plugin.reap_orphan()
    request.config.stash[PLUGIN_KEY] = plugin
    try:
        plugin.start()
        remove_leftovers()
        prime_plugin_chains()
        yield plugin
    finally:
        try:
            with contextlib.suppress(PluginError):
                plugin.ensure_running()  # docker needs the plugin to remove our networks
            if plugin.running:
                remove_leftovers()
        finally:
            plugin.stop(signal.SIGTERM)
            del request.config.stash[PLUGIN_KEY]
            # Shown by pytest_terminal_summary when something failed (output written
            # here, inside the last test's teardown, would be captured and dropped).
            request.config.stash[PLUGIN_LOGS_KEY] = (list(plugin.logs), plugin.log_tail(40))


@pytest.fixture
def plugin(plugin_session: PluginProcess) -> Iterator[PluginProcess]:
    """The session plugin, (re)started if an earlier test left it stopped.

    Fails the test if the plugin process died on its own while the test ran.
    """
    plugin_session.ensure_running()
    crashes_before = len(plugin_session.crashes)
    yield plugin_session
    plugin_session.check_alive()
    crashes = plugin_session.crashes[crashes_before:]
    if crashes:
        pytest.fail(
            "the plugin exited without being asked to: "
            + ", ".join(f"status {code} (log {log})" for code, log in crashes),
            pytrace=False,
        )


@pytest.fixture
def dk(plugin: PluginProcess, busybox_image: str) -> Iterator[DockerEnv]:
    """Docker helper whose networks and containers are always removed at teardown."""
    env = docker_env(plugin, image=busybox_image)
    try:
        yield env
    finally:
        errors = env.cleanup()
        if errors:
            pytest.fail("e2e teardown could not clean up:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def outside_host(
    tmp_path_factory: pytest.TempPathFactory, e2e_requirements: None
) -> Iterator[OutsideHost]:
    """Namespace ``ovse2e-out`` (198.51.100.2/24, TCP server) linked to the host."""
    host = make_outside_host(tmp_path_factory.mktemp("outside"))
    try:
        host.create()
        yield host
    finally:
        host.remove()


@pytest.fixture
def snapshot_before(plugin: PluginProcess, busybox_image: str) -> HostSnapshot:
    """Host state (OVS, links, iptables) with the plugin up, before the test acts."""
    return take_snapshot()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of the plugin log to every failing e2e test report."""
    report = yield
    if report.failed:
        plugin = item.config.stash.get(PLUGIN_KEY, None)
        if plugin is not None:
            report.sections.append(("docker-ovs-plugin log", plugin.log_tail()))
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """After a failed e2e run, say where the plugin logs are and show the last lines; after
    any run, list the TCP exchanges that needed a second attempt (a flaky data path shows)
    and the faults of Docker a test worked around."""
    if RETRIED_EXCHANGES:
        terminalreporter.section("e2e TCP exchanges that needed a second attempt")
        for line in RETRIED_EXCHANGES:
            terminalreporter.write_line(line)
    if DOCKER_WORKAROUNDS:
        terminalreporter.section("e2e: faults of Docker itself that tests worked around")
        for line in DOCKER_WORKAROUNDS:
            terminalreporter.write_line(line)
    logs = config.stash.get(PLUGIN_LOGS_KEY, None)
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    if logs is None or not failed:
        return
    paths, tail = logs
    terminalreporter.section("docker-ovs-plugin logs")
    terminalreporter.write_line("logs: " + ", ".join(map(str, paths)))
    terminalreporter.write_line(tail)
