"""Heartbeat rows and fencing in the OVN northbound database, and the housekeeping lock.

A host's row is a Port_Group `dop_host_<system-id>` (unique name index; northd ignores a port
group without ports). Fencing is one transaction that verify()s the host's row: if the host
wrote a heartbeat after the fencer read it, OVSDB answers "try again", the command runs again
on the new replica, sees the new heartbeat and does nothing.

The lock lives on a connection of its own: python-ovs adds an "assert lock" to every
transaction of an IDL that has a lock set, so the plugin's main connection, whose writes must
not depend on the election, cannot carry it. The lock connection replicates one small table.
With a Raft cluster the IDL talks to the leader only (python-ovs' default), so locks are
granted by one server; a leader change moves the lock (tests/contract/test_ovn_hosts.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ovsdbapp.backend.ovs_idl import connection, idlutils

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.adapters.ovn_nb import (
    LS,
    PG,
    OvnNorthbound,
    _by_name,
    _Command,
    _ours,
    _pool_of,
    _reservation_of,
    _tags,
    delete_switch,
)
from docker_ovs_plugin.adapters.ovsdb import QuietIdl
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.liveness import Freed, HostState

LOG = logging.getLogger(__name__)

LOCK_TABLE = "NB_Global"  # one row: the cheapest table to replicate on the lock connection


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _state_of(row: Any) -> HostState | None:
    ids = row.external_ids
    if not _ours(row) or not str(row.name).startswith(c.HOST_ROW_PREFIX) or c.HOST_KEY not in ids:
        return None
    return HostState(
        system_id=ids[c.HOST_KEY],
        heartbeat=ids.get(c.HEARTBEAT_KEY, ""),
        fenced_at=_float(ids.get(c.FENCED_AT_KEY)),
        fenced_after=_float(ids.get(c.FENCED_AFTER_KEY)),
    )


def _host_row(api: Any, system_id: str) -> Any | None:
    row = _by_name(api, PG, c.host_row_name(system_id))
    if row is None:
        return None
    if not _ours(row) or row.external_ids.get(c.HOST_KEY) != system_id:
        raise BackendError(
            f"Port_Group {row.name} is not this plugin's row of host {system_id} "
            "(another system-id maps to the same name, or someone else made it)"
        )
    return row


class _Beat(_Command):
    def __init__(self, api: Any, host: str, driver: str) -> None:
        super().__init__(api)
        self.host, self.driver = host, driver

    def run_idl(self, txn: Any) -> None:
        now = f"{time.time():.3f}"
        row = _host_row(self.api, self.host)
        if row is None:
            row = txn.insert(self.api.tables[PG])
            row.name = c.host_row_name(self.host)
            row.external_ids = _tags(self.driver, {c.HOST_KEY: self.host, c.HEARTBEAT_KEY: now})
            self.result = HostState(self.host, now)
            return
        # Verified: a fence committed meanwhile makes this run again and see the mark.
        row.verify("external_ids")
        state = _state_of(row)
        if state is not None and state.fenced:
            self.result = state  # no heartbeat until the host has recovered
            return
        row.setkey("external_ids", c.HEARTBEAT_KEY, now)
        self.result = HostState(self.host, now)


class _ClearFence(_Command):
    def __init__(self, api: Any, host: str) -> None:
        super().__init__(api)
        self.host = host

    def run_idl(self, txn: Any) -> None:
        row = _host_row(self.api, self.host)
        if row is None:
            return
        row.verify("external_ids")
        for key in (c.FENCED_AT_KEY, c.FENCED_AFTER_KEY):
            if key in row.external_ids:
                row.delkey("external_ids", key)
        row.setkey("external_ids", c.HEARTBEAT_KEY, f"{time.time():.3f}")


class _Fence(_Command):
    def __init__(self, api: Any, host: str, seen: str, silent_for: float) -> None:
        super().__init__(api)
        self.host, self.seen, self.silent_for = host, seen, silent_for

    def run_idl(self, txn: Any) -> None:
        self.result = None
        row = _host_row(self.api, self.host)
        state = _state_of(row) if row is not None else None
        if row is None or state is None or state.fenced or state.heartbeat != self.seen:
            return  # back, or fenced already (by another host): nothing to do
        # The compare: a heartbeat committed before this makes it run again (and stop above).
        row.verify("external_ids")
        row.setkey("external_ids", c.FENCED_AT_KEY, f"{time.time():.3f}")
        row.setkey("external_ids", c.FENCED_AFTER_KEY, f"{self.silent_for:.0f}")
        freed: list[Freed] = []
        keys = (c.host_pool_key(self.host), c.host_network_key(self.host))
        for switch in list(self.api.tables[LS].rows.values()):
            pool = _pool_of(switch)
            if pool is None:
                continue
            mine = []
            for port in switch.ports:
                r = _reservation_of(pool.pool_id, port)
                if r is not None and r.host == self.host and not r.gateway:
                    mine.append((port, r))
            drop = [k for k in keys if k in switch.external_ids]
            if not mine and not drop:
                continue
            switch.verify("external_ids")
            switch.verify("ports")
            for port, r in mine:
                switch.delvalue("ports", port)
                port.delete()
                freed.append(Freed(pool.pool_id, r.address, r.endpoint_id))
            for key in drop:
                switch.delkey("external_ids", key)
            self._delete_if_unused(switch, {p for p, _ in mine}, set(drop))
        self.result = freed

    def _delete_if_unused(self, switch: Any, gone_ports: set[Any], gone_keys: set[str]) -> None:
        """As the last DeleteNetwork/ReleasePool would: no user, only the gateway left."""
        users = [
            k
            for k in switch.external_ids
            if k.startswith((c.HOST_POOL_PREFIX, c.HOST_NETWORK_PREFIX)) and k not in gone_keys
        ]
        left = [p for p in switch.ports if p not in gone_ports]
        if users or any(p.external_ids.get(c.ROLE_KEY) != c.ROLE_GATEWAY for p in left):
            return
        delete_switch(self.api, switch, frozenset(gone_ports))


class OvnHosts:
    """Hosts (service.liveness) on the northbound connection `nb()` returns."""

    def __init__(self, nb: Callable[[], OvnNorthbound], driver: str) -> None:
        self._nb = nb
        self._driver = driver

    def hosts(self) -> list[HostState]:
        with self._nb()._replica() as api:
            return [s for row in api.tables[PG].rows.values() if (s := _state_of(row))]

    def host(self, system_id: str) -> HostState | None:
        with self._nb()._replica() as api:
            row = _host_row(api, system_id)
            return _state_of(row) if row is not None else None

    def beat(self, system_id: str, driver: str) -> HostState:
        nb = self._nb()
        state = nb._write(
            "writing this host's heartbeat", lambda: _Beat(nb._api, system_id, driver)
        )
        if not isinstance(state, HostState):
            raise BackendError("writing this host's heartbeat: no row")
        return state

    def clear_fence(self, system_id: str) -> None:
        nb = self._nb()
        nb._write("clearing this host's fenced mark", lambda: _ClearFence(nb._api, system_id))

    def fence(self, system_id: str, seen_heartbeat: str, silent_for: float) -> list[Freed] | None:
        nb = self._nb()
        result = nb._write(
            f"fencing host {system_id}",
            lambda: _Fence(nb._api, system_id, seen_heartbeat, silent_for),
        )
        return list(result) if result is not None else None


class LockConnection:
    """The connection that asks for the housekeeping lock (a small one of its own)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @property
    def idl(self) -> Any:
        return self._conn.idl

    def close(self) -> None:
        # ovsdbapp's Connection has stop(), not close(): the link closes what it connected.
        self._conn.stop(timeout=1.0)


def connect_lock(remotes: str, timeout: float, name: str = c.HOUSEKEEPING_LOCK) -> LockConnection:
    """A connection that asks for the OVSDB lock `name` (SSL files as set by ovn_nb.connect);
    its IDL's has_lock says whether this process holds it."""
    try:
        helper = idlutils.get_schema_helper(remotes, "OVN_Northbound")
        helper.register_table(LOCK_TABLE)
        idl = QuietIdl(remotes, helper)
        idl.set_lock(name)
        conn = connection.Connection(idl=idl, timeout=timeout)
        conn.start()
        return LockConnection(conn)
    except Exception as e:
        raise BackendError(f"housekeeping lock: cannot reach {remotes}: {e}") from e


def lock_held(conn: Any) -> bool:
    # python-ovs clears has_lock only once it has reconnected: while the server that granted
    # the lock is gone, has_lock still says True (measured: both of two clients "held" it for
    # a moment after the leader was killed). A lock is only held over a live session. A gap
    # remains (a partition is noticed by the inactivity probe, seconds later): the fence is
    # idempotent and compare-and-swap for that reason.
    idl = conn.idl
    return bool(idl.has_lock and idl._session.is_connected())
