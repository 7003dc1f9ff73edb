"""After the cluster's teardown nothing of it remains, and this machine is as it was."""

from __future__ import annotations

import pytest

from testbed.multihost import Cluster, leftovers

from .support import LAYOUT, TIMINGS, LocalState

pytestmark = pytest.mark.multihost


@pytest.mark.multihost_last
def test_teardown_leaves_nothing(cluster: Cluster, local_before: LocalState) -> None:
    cluster.down()
    TIMINGS["teardown (s)"] = cluster.down_seconds
    assert leftovers(LAYOUT) == []
    # Each plugin stopped cleanly on SIGTERM (a traceback at shutdown is an exit status 1).
    assert set(cluster.plugin_exits.values()) <= {0}, cluster.plugin_exits
    local_before.assert_unchanged()
