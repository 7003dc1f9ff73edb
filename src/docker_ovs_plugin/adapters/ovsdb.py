"""Open vSwitch configuration through the OVSDB IDL (ovsdbapp).

Every write is one transaction with errors checked; reads come from the IDL's in-memory replica.
Only rows that carry our owner tag are ever changed or deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from ovsdbapp import exceptions as ovsdb_exc
from ovsdbapp.backend.ovs_idl import connection, vlog
from ovsdbapp.schema.open_vswitch import impl_idl

from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import (
    OWNER,
    OWNER_KEY,
    CorruptState,
    Endpoint,
    Network,
)

LOG = logging.getLogger(__name__)

# Open_vSwitch is needed for next_cfg/cur_cfg: writes wait until ovs-vswitchd applied them.
TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")
_OWNED = ("external_ids", "=", {OWNER_KEY: OWNER})


def connect(remote: str, timeout: float) -> impl_idl.OvsdbIdl:
    """Connect and wait for the first copy of the tables; raise BackendError when impossible."""
    vlog.use_python_logger()
    try:
        idl = connection.OvsdbIdl.from_server(remote, "Open_vSwitch", helper_tables=TABLES)
        return impl_idl.OvsdbIdl(connection.Connection(idl=idl, timeout=timeout))
    except Exception as e:
        raise BackendError(f"cannot reach the Open vSwitch database at {remote}: {e}") from e


class OvsdbSwitch:
    def __init__(self, api: Any, timeout: float) -> None:
        self._api = api
        self._timeout = timeout

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except ovsdb_exc.TimeoutException as e:
            raise BackendError(
                f"{what}: the Open vSwitch database did not answer within {self._timeout:.0f}s "
                "(is ovsdb-server running?)"
            ) from e
        except BackendError:
            raise
        except Exception as e:
            raise BackendError(f"{what}: Open vSwitch refused: {e}") from e

    def _find(self, table: str, *conditions: Any) -> list[Any]:
        return cast(list[Any], self._api.db_find_rows(table, *conditions).execute(check_error=True))

    def _row(self, table: str, name: str) -> Any | None:
        rows = self._find(table, ("name", "=", name))
        return rows[0] if rows else None

    # -- reads ---------------------------------------------------------------------------------

    def list_networks(self) -> list[Network]:
        networks = []
        for row in self._find("Bridge", _OWNED):
            try:
                networks.append(Network.from_external_ids(row.name, dict(row.external_ids)))
            except CorruptState:
                LOG.exception("ignoring bridge %s", row.name)
        return networks

    def list_endpoints(self) -> list[Endpoint]:
        endpoints = []
        for row in self._find("Interface", _OWNED):
            try:
                endpoints.append(Endpoint.from_external_ids(dict(row.external_ids)))
            except CorruptState:
                LOG.exception("ignoring interface %s", row.name)
        return endpoints

    def bridge_external_ids(self, bridge: str) -> dict[str, str] | None:
        row = self._row("Bridge", bridge)
        return None if row is None else dict(row.external_ids)

    # -- writes --------------------------------------------------------------------------------

    def create_bridge(self, network: Network, datapath_type: str) -> None:
        api = self._api
        name = network.bridge
        with self._errors(f"creating bridge {name}"):
            with api.transaction(check_error=True) as txn:
                txn.add(api.add_br(name, may_exist=False, datapath_type=datapath_type))
                txn.add(api.db_set("Bridge", name, ("external_ids", network.to_external_ids())))
                # The bridge's own internal port is the gateway; give it the network's MTU.
                txn.add(api.db_set("Interface", name, ("mtu_request", network.mtu)))
            self._check_interface(name)

    def delete_bridge(self, bridge: str) -> None:
        row = self._row("Bridge", bridge)
        if row is None:
            return
        if row.external_ids.get(OWNER_KEY) != OWNER:
            LOG.warning("not deleting bridge %s: it is not managed by %s", bridge, OWNER)
            return
        with self._errors(f"deleting bridge {bridge}"):
            self._api.del_br(bridge, if_exists=True).execute(check_error=True)

    def add_port(self, bridge: str, endpoint: Endpoint) -> None:
        api = self._api
        name = endpoint.host_if
        ids = endpoint.to_external_ids()
        with self._errors(f"adding port {name} to bridge {bridge}"):
            with api.transaction(check_error=True) as txn:
                # may_exist: a plugin killed mid-request may have left the port; the db_set
                # calls below re-apply what add_port skips for an existing port.
                txn.add(api.add_port(bridge, name, may_exist=True))
                txn.add(api.db_set("Port", name, ("external_ids", ids)))
                txn.add(api.db_set("Interface", name, ("external_ids", ids)))
            self._check_interface(name)

    def delete_port(self, bridge: str, port: str) -> None:
        row = self._row("Port", port)
        if row is None:
            return
        if row.external_ids.get(OWNER_KEY) != OWNER:
            LOG.warning("not deleting port %s: it is not managed by %s", port, OWNER)
            return
        with self._errors(f"deleting port {port}"):
            self._api.del_port(port, bridge=bridge, if_exists=True).execute(check_error=True)

    def _check_interface(self, name: str) -> None:
        # ovsdbapp only logs a failed interface; OVS reports it in `error` and ofport -1.
        row = self._row("Interface", name)
        error = row.error if row is not None else ["row vanished"]
        if error:
            raise BackendError(f"Open vSwitch could not open interface {name}: {error[0]}")
