from __future__ import annotations

import pytest

from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.locks import KeyedLocks


def test_a_busy_lock_is_named_as_the_caller_names_it() -> None:
    locks = KeyedLocks(timeout=0.05)
    with (
        locks.hold("bridge:br-apps", "bridge br-apps"),
        pytest.raises(BackendError, match=r"^bridge br-apps is busy with another operation"),
        locks.hold("bridge:br-apps", "bridge br-apps"),
    ):
        pass  # pragma: no cover (never entered)
    with locks.hold("bridge:br-apps", "bridge br-apps"):  # released after the failure
        pass
