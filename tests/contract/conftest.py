"""Contract cases: one set of behaviours, each run against the in-memory fake the unit tests
use (tests/unit/fakes.py) and against the real adapter.

The real side needs root and Open vSwitch's tools: Switch and Flows talk to a private
ovsdb-server/ovs-vswitchd (testbed.ovs_sandbox, one per session), Links and Firewall work inside
a network namespace of their own (tests/contract/netns.py). Nothing touches the host's own
Open vSwitch, devices or rules. When the machine cannot run the real side, its cases are skipped
with the reason, except under ``CI=true``, where they fail: CI must never go green by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from docker_ovs_plugin.adapters import ovsdb
from testbed import ovs_sandbox
from testbed.ovs_sandbox import OvsSandbox

from .netns import PrivateNetns

IMPLEMENTATIONS = ["fake", "real"]
OVSDB_TIMEOUT = 10.0


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"contract requirements not met (CI=true, so not skipping): {reason}", pytrace=False
        )
    pytest.skip(f"contract requirements not met: {reason}")


def _missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "needs root (private network namespaces, Open vSwitch daemons)"
    return ovs_sandbox.missing()


@pytest.fixture(scope="session")
def real_side() -> None:
    """Skip (or, under CI=true, fail) the real cases when the machine cannot run them."""
    reason = _missing_requirement()
    if reason is not None:
        _unavailable(reason)


@pytest.fixture(scope="session")
def sandbox(real_side: None) -> Iterator[OvsSandbox]:
    with OvsSandbox() as box:
        yield box


@pytest.fixture(scope="session")
def ovsdb_api(sandbox: OvsSandbox) -> Iterator[Any]:
    api = ovsdb.connect(sandbox.db, OVSDB_TIMEOUT, ovsdb.DRIVER_COLUMNS)
    try:
        yield api
    finally:
        api.ovsdb_connection.stop()


@pytest.fixture
def clean_sandbox(ovsdb_api: Any) -> Iterator[Any]:
    """The sandbox's database, emptied of every bridge after the test."""
    try:
        yield ovsdb_api
    finally:
        bridges = ovsdb_api.list_br().execute(check_error=True)
        if bridges:
            with ovsdb_api.transaction(check_error=True) as txn:
                for bridge in bridges:
                    txn.add(ovsdb_api.del_br(bridge))


@pytest.fixture
def netns(real_side: None) -> Iterator[PrivateNetns]:
    """A network namespace that lives as long as the test (its devices go with it)."""
    with PrivateNetns() as ns:
        yield ns
