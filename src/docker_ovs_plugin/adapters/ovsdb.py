"""Open vSwitch configuration through the OVSDB IDL (ovsdbapp).

Every write is one transaction with errors checked; reads come from the IDL's in-memory replica.
Only rows that carry our owner tag are ever changed or deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from ovsdbapp import exceptions as ovsdb_exc
from ovsdbapp.backend.ovs_idl import connection, idlutils, vlog
from ovsdbapp.backend.ovs_idl import transaction as ovs_transaction
from ovsdbapp.schema.open_vswitch import impl_idl

from docker_ovs_plugin.adapters import ovs_json
from docker_ovs_plugin.contract import (
    DEFAULT_OVN_BRIDGE,
    IFACE_ID_KEY,
    NETWORK_ID_KEY,
    NETWORK_KEY_PREFIX,
    OVN_INSTALLED_KEY,
    OVS_ENCAP_IP_KEY,
    OVS_ENCAP_TYPE_KEY,
    OVS_OVN_BRIDGE_KEY,
    OVS_SYSTEM_ID_KEY,
    OWNER,
    OWNER_KEY,
    ROLE_GATEWAY,
    ROLE_KEY,
    ROLE_OVERLAY,
    ROLE_UPLINK,
    network_key,
    owned,
)
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import CorruptState, Endpoint, Network, networks_on_bridge
from docker_ovs_plugin.service.ports import BridgeState, Chassis

LOG = logging.getLogger(__name__)

# Open_vSwitch is needed for next_cfg/cur_cfg: writes wait until ovs-vswitchd applied them.
TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")
_OWNED = ("external_ids", "=", {OWNER_KEY: OWNER})


# The columns the driver reads or writes. Replicating only these (not Interface statistics,
# status, ...) makes the first sync at start a third faster with a thousand ports.
DRIVER_COLUMNS = {
    # external_ids: the chassis (system-id, ovn-bridge, ovn-encap-*) of overlay networks
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg", "external_ids"],
    "Bridge": ["name", "ports", "external_ids", "datapath_type"],
    "Port": ["name", "interfaces", "external_ids", "tag", "trunks", "protected"],
    "Interface": ["name", "type", "external_ids", "ofport", "error", "mtu_request"],
}


class QuietIdl(connection.OvsdbIdl):  # type: ignore[misc]
    def cooperative_yield(self) -> None:
        """ovsdbapp sleeps(0) after every row of an update so that eventlet's green threads
        get a turn; ours are OS threads, which the GIL's switch interval already serves.
        The sleep cost 0.2 s of the first sync with a thousand ports here."""


def connect(
    remote: str, timeout: float, columns: dict[str, list[str]] | None = None
) -> impl_idl.OvsdbIdl:
    """Connect and wait for the first copy of the tables (all their columns, or only
    `columns`); raise BackendError when impossible."""
    vlog.use_python_logger()
    ovs_json.use_c_parser()
    try:
        if columns is None:
            idl = QuietIdl.from_server(remote, "Open_vSwitch", helper_tables=TABLES)
        else:
            helper = idlutils.get_schema_helper(remote, "Open_vSwitch")
            for table, names in columns.items():
                helper.register_columns(table, names)
            idl = QuietIdl(remote, helper)
        return impl_idl.OvsdbIdl(connection.Connection(idl=idl, timeout=timeout))
    except Exception as e:
        raise BackendError(f"cannot reach the Open vSwitch database at {remote}: {e}") from e


class OvsdbSwitch:
    def __init__(self, api: Any, timeout: float) -> None:
        self._api = api
        self._timeout = timeout

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        # Fail at once while ovsdb-server is away (ovsdbapp reconnects in the background)
        # instead of letting Docker wait for the transaction timeout.
        if not self._api.ovsdb_connection.idl._session.is_connected():
            raise BackendError(
                f"{what}: not connected to the Open vSwitch database (is ovsdb-server running?)"
            )
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
                networks.extend(networks_on_bridge(row.name, dict(row.external_ids)))
            except CorruptState:
                LOG.exception("ignoring networks of bridge %s", row.name)
        return networks

    def list_endpoints(self) -> list[Endpoint]:
        endpoints = []
        for row in self._find("Interface", _OWNED):
            if IFACE_ID_KEY not in row.external_ids:
                continue  # gateway ports are ours too, but are not endpoints
            if row.external_ids.get(ROLE_KEY) == ROLE_OVERLAY:
                continue  # an overlay endpoint on the integration bridge (OvsdbIntegration)
            try:
                endpoints.append(Endpoint.from_external_ids(dict(row.external_ids)))
            except CorruptState:
                LOG.exception("ignoring interface %s", row.name)
        return endpoints

    def bridge_state(self, bridge: str) -> BridgeState | None:
        row = self._row("Bridge", bridge)
        if row is None:
            return None
        ids = dict(row.external_ids)
        if ids.get(OWNER_KEY) != OWNER:
            return BridgeState(owned=False)
        uplinks = [p.name for p in row.ports if p.external_ids.get(ROLE_KEY) == ROLE_UPLINK]
        return BridgeState(
            owned=True,
            networks=networks_on_bridge(bridge, ids),
            uplink=uplinks[0] if uplinks else None,
        )

    def port_bridge(self, port: str) -> str | None:
        row = self._row("Port", port)
        if row is None:
            return None
        for bridge in self._find("Bridge"):
            if any(p.uuid == row.uuid for p in bridge.ports):
                return str(bridge.name)
        return None

    # -- writes --------------------------------------------------------------------------------

    def add_network(self, network: Network, datapath_type: str, peers: Sequence[Network]) -> None:
        api = self._api
        br = network.bridge
        state = self.bridge_state(br)
        with self._errors(f"setting up bridge {br}"):
            with api.transaction(check_error=True) as txn:
                if state is None:
                    txn.add(api.add_br(br, may_exist=False, datapath_type=datapath_type))
                    txn.add(api.db_set("Bridge", br, ("external_ids", owned())))
                    # The bridge's own internal port may be the gateway: give it the MTU.
                    txn.add(api.db_set("Interface", br, ("mtu_request", network.mtu)))
                txn.add(
                    api.db_set(
                        "Bridge",
                        br,
                        ("external_ids", {network_key(network.network_id): network.to_json()}),
                    )
                )
                if network.vlan is not None and network.host_gateway:
                    port = network.gateway_port
                    ids = owned({ROLE_KEY: ROLE_GATEWAY, NETWORK_ID_KEY: network.network_id})
                    txn.add(api.add_port(br, port, may_exist=True))
                    txn.add(api.db_set("Port", port, ("tag", network.vlan), ("external_ids", ids)))
                    txn.add(
                        api.db_set(
                            "Interface",
                            port,
                            ("type", "internal"),
                            ("mtu_request", network.mtu),
                            ("external_ids", ids),
                        )
                    )
                uplink = state.uplink if state and state.uplink else network.uplink
                if uplink is not None:
                    if state is None or state.uplink is None:
                        txn.add(api.add_port(br, uplink, may_exist=False))
                        txn.add(
                            api.db_set(
                                "Port", uplink, ("external_ids", owned({ROLE_KEY: ROLE_UPLINK}))
                            )
                        )
                    txn.add(api.db_set("Port", uplink, ("trunks", _trunks([*peers, network]))))
            if network.vlan is not None and network.host_gateway:
                self._check_interface(network.gateway_port)
            if network.uplink is not None and (state is None or state.uplink is None):
                self._check_interface(network.uplink)
            self._check_interface(br)

    def remove_network(self, network: Network, peers: Sequence[Network]) -> None:
        api = self._api
        br = network.bridge
        state = self.bridge_state(br)
        if state is None:
            return
        if not state.owned:
            LOG.warning("not touching bridge %s: it is not managed by %s", br, OWNER)
            return
        with self._errors(f"removing network {network.network_id[:12]} from bridge {br}"):
            if not peers:
                api.del_br(br, if_exists=True).execute(check_error=True)
                return
            with api.transaction(check_error=True) as txn:
                txn.add(
                    api.db_remove(
                        "Bridge",
                        br,
                        "external_ids",
                        network_key(network.network_id),
                        if_exists=True,
                    )
                )
                if network.vlan is not None and network.host_gateway:
                    txn.add(api.del_port(network.gateway_port, bridge=br, if_exists=True))
                if state.uplink is not None:
                    txn.add(api.db_set("Port", state.uplink, ("trunks", _trunks(peers))))

    def add_port(self, network: Network, endpoint: Endpoint) -> None:
        api = self._api
        name = endpoint.host_if
        ids = endpoint.to_external_ids()
        port_columns: list[tuple[str, Any]] = [("external_ids", ids)]
        if network.vlan is not None:
            port_columns.append(("tag", network.vlan))
        if not network.icc:
            # OVS's protected ports never forward to each other: containers reach only the
            # gateway and the uplink, which stay unprotected.
            port_columns.append(("protected", True))
        with self._errors(f"adding port {name} to bridge {network.bridge}"):
            with api.transaction(check_error=True) as txn:
                # may_exist: a plugin killed mid-request may have left the port; the db_set
                # calls below re-apply what add_port skips for an existing port.
                txn.add(api.add_port(network.bridge, name, may_exist=True))
                txn.add(api.db_set("Port", name, *port_columns))
                txn.add(api.db_set("Interface", name, ("external_ids", ids)))
            self._check_interface(name)

    def update_endpoint(self, endpoint: Endpoint) -> None:
        api = self._api
        name = endpoint.host_if
        ids = endpoint.to_external_ids()
        with self._errors(f"updating port {name}"), api.transaction(check_error=True) as txn:
            txn.add(api.db_set("Port", name, ("external_ids", ids)))
            txn.add(api.db_set("Interface", name, ("external_ids", ids)))

    def delete_port(self, bridge: str, port: str) -> None:
        row = self._row("Port", port)
        if row is None:
            return
        if row.external_ids.get(OWNER_KEY) != OWNER:
            LOG.warning("not deleting port %s: it is not managed by %s", port, OWNER)
            return
        with self._errors(f"deleting port {port}"):
            # Not waiting for ovs-vswitchd to apply it: nobody waits on a deletion, and the
            # wait grows with the bridge's port count (about 200 ms at a thousand ports),
            # holding up the creations queued behind it on the one OVSDB connection.
            txn = ovs_transaction.Transaction(
                self._api, self._api.ovsdb_connection, self._timeout, check_error=True
            )
            txn.add(self._api.del_port(port, bridge=bridge, if_exists=True))
            txn.commit()

    def ofport(self, name: str) -> int | None:
        row = self._row("Interface", name)
        if row is None or not row.ofport or row.ofport[0] < 1:
            return None
        return int(row.ofport[0])

    def empty_bridges(self) -> list[str]:
        return [
            str(row.name)
            for row in self._find("Bridge", _OWNED)
            if not any(k.startswith(NETWORK_KEY_PREFIX) for k in row.external_ids)
        ]

    def delete_bridge(self, bridge: str) -> None:
        state = self.bridge_state(bridge)
        if state is None or not state.owned:
            return
        with self._errors(f"deleting bridge {bridge}"):
            self._api.del_br(bridge, if_exists=True).execute(check_error=True)

    def _check_interface(self, name: str) -> None:
        # ovsdbapp only logs a failed interface; OVS reports it in `error` and ofport -1.
        row = self._row("Interface", name)
        error = row.error if row is not None else ["row vanished"]
        if error:
            raise BackendError(f"Open vSwitch could not open interface {name}: {error[0]}")


_INSTALLED_POLL = 0.005  # ovn-controller needs 41-99 ms; a 5 ms poll of the replica is cheap


class OvsdbIntegration:
    """The integration bridge (br-int) that ovn-controller programs: overlay endpoints' ports
    and the chassis identity. The plugin writes no flows there, only Interface rows."""

    def __init__(self, api: Any, timeout: float) -> None:
        self._api = api
        self._ovs = OvsdbSwitch(api, timeout)  # its error boundary and row helpers

    def _locked(self) -> Any:
        """The lock the IDL thread holds while it applies updates: a row's map column is
        changed in place by an update (ovs.db.data.Datum.diff), so reading one outside it
        races with ovn-controller's writes ("dictionary changed size during iteration")."""
        return self._api.ovsdb_connection.lock

    def chassis(self) -> Chassis:
        with self._locked():
            rows = self._ovs._find("Open_vSwitch")
            ids = dict(rows[0].external_ids) if rows else {}
        system_id = ids.get(OVS_SYSTEM_ID_KEY)
        if not system_id:
            raise BackendError(
                "this host's Open vSwitch has no external_ids:system-id, so OVN does not know it "
                "as a chassis: set it up for ovn-controller (system-id, ovn-remote, ovn-encap-ip)"
            )
        bridge = ids.get(OVS_OVN_BRIDGE_KEY) or DEFAULT_OVN_BRIDGE
        row = self._ovs._row("Bridge", bridge)
        encap_ip = ids.get(OVS_ENCAP_IP_KEY, "").split(",")[0].strip() or None
        types = tuple(t.strip() for t in ids.get(OVS_ENCAP_TYPE_KEY, "geneve").split(","))
        return Chassis(
            system_id=system_id,
            bridge=bridge,
            encap_ip=encap_ip,
            encap_types=tuple(t for t in types if t),
            datapath_type=(str(row.datapath_type) or None) if row is not None else None,
        )

    def add_port(self, bridge: str, name: str, external_ids: Mapping[str, str]) -> None:
        api = self._api
        if self._ovs._row("Bridge", bridge) is None:
            raise BackendError(
                f"the integration bridge {bridge} does not exist: is ovn-controller running?"
            )
        ids = dict(external_ids)
        with self._ovs._errors(f"adding port {name} to {bridge}"):
            with api.transaction(check_error=True) as txn:
                txn.add(api.add_port(bridge, name, may_exist=True))
                txn.add(api.db_set("Port", name, ("external_ids", owned())))
                txn.add(api.db_set("Interface", name, ("external_ids", ids)))
            self._ovs._check_interface(name)

    def delete_port(self, bridge: str, name: str) -> None:
        self._ovs.delete_port(bridge, name)

    def installed(self, name: str) -> bool:
        with self._locked():
            row = self._ovs._row("Interface", name)
            return row is not None and row.external_ids.get(OVN_INSTALLED_KEY) == "true"

    def wait_installed(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.installed(name):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_INSTALLED_POLL)
        return True

    def list_endpoints(self) -> list[dict[str, str]]:
        with self._locked():
            return [
                dict(row.external_ids)
                for row in self._ovs._find("Interface", _OWNED)
                if row.external_ids.get(ROLE_KEY) == ROLE_OVERLAY
            ]


def _trunks(networks: Sequence[Network]) -> list[int]:
    """The VLANs the uplink carries: those of the networks, or all (empty) if one is untagged."""
    vlans = [n.vlan for n in networks]
    if any(v is None for v in vlans):
        return []
    return sorted({v for v in vlans if v is not None})
