"""The OVN northbound database (ovsdbapp): overlay pools and their address reservations.

Data model (keys in docker_ovs_plugin.contract):

* a pool is a Logical_Switch, created in one transaction with a Port_Group "token" of a name
  derived from the subnet. Logical_Switch names have no unique index, Port_Group names do: a
  second host creating the same subnet at the same instant gets "constraint violation" and then
  uses the winner's switch;
* every reserved address is a Logical_Switch_Port `<switch>-<ip>` (unique names: two hosts can
  never hold the same address), with no `addresses` until it becomes an endpoint's port.

Every decision that depends on what is in the database (is the subnet free, which address is
lowest, is the switch unused) is taken inside the transaction, in a command's run_idl, on rows
it verify()s: if another host changed them meanwhile, OVSDB answers "try again" and ovsdbapp
re-runs the command on the updated replica. So each write is a compare-and-swap.

Writes retry for a bounded window when the cluster is electing a leader ("not leader",
connection lost: about 1-1.5 s after a leader dies). One error boundary (_write) turns every
ovsdbapp/OVSDB failure into BackendError (or the service error a command raised).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

from ovs import stream
from ovsdbapp import exceptions as ovsdb_exc
from ovsdbapp.backend.ovs_idl import command, connection, idlutils, vlog
from ovsdbapp.backend.ovs_idl import event as ovs_event
from ovsdbapp.backend.ovs_idl import transaction as ovs_transaction
from ovsdbapp.schema.ovn_northbound import impl_idl

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.adapters import ovs_json
from docker_ovs_plugin.adapters.ovsdb import QuietIdl
from docker_ovs_plugin.service.errors import BackendError, Conflict, NotFound, PluginError
from docker_ovs_plugin.service.model import recorded_network_id
from docker_ovs_plugin.service.ports import ClusterNetwork, Pool, Reservation, Tombstone

LOG = logging.getLogger(__name__)

TABLES = (
    "Logical_Switch",
    "Logical_Switch_Port",
    "Port_Group",
    "Logical_Router",
    "Logical_Router_Port",
)
LS, LSP, PG, LR, LRP = TABLES

# Messages of failures that pass once the cluster has a leader again.
_TRANSIENT = (
    "not leader",
    "not cluster leader",
    "connection refused",
    "connection reset",
    "connection lost",
    "not connected",
    "transaction timed out",
    "no leader",
)
_RETRY_PAUSE = 0.2
_RECONNECT_BACKOFF_MS = 1000
_TAKEN_ATTEMPTS = 64  # other hosts winning the same lowest address this many times in a row
_HOLDER_WAIT = 1.0  # for the replica to show who holds an address someone else just took

T = TypeVar("T")


class _Taken(Exception):
    """A unique index refused the insert: another host was faster."""


class _NbIdl(QuietIdl):
    """Hands row changes to ovsdbapp's event handler (its own thread), for watchers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.notify_handler = ovs_event.RowEventHandler()
        super().__init__(*args, **kwargs)

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        self.notify_handler.notify(event, row, updates)


class _SwitchChanged(ovs_event.RowEvent):  # type: ignore[misc]
    """Any change of one of our Logical_Switch rows (created, updated, deleted)."""

    def __init__(self, callbacks: list[Callable[[], None]]) -> None:
        super().__init__((self.ROW_CREATE, self.ROW_UPDATE, self.ROW_DELETE), LS, None)
        self.callbacks = callbacks

    def match_fn(self, event: str, row: Any, old: Any) -> bool:
        return _ours(row)

    def run(self, event: str, row: Any, old: Any) -> None:
        for callback in list(self.callbacks):
            callback()


def connect(
    remotes: str,
    timeout: float,
    *,
    private_key: Path | None = None,
    certificate: Path | None = None,
    ca_cert: Path | None = None,
) -> Any:
    """Connect and wait for the first copy of the tables; BackendError when impossible."""
    vlog.use_python_logger()
    ovs_json.use_c_parser()
    if private_key is not None:
        stream.Stream.ssl_set_private_key_file(str(private_key))
    if certificate is not None:
        stream.Stream.ssl_set_certificate_file(str(certificate))
    if ca_cert is not None:
        stream.Stream.ssl_set_ca_cert_file(str(ca_cert))
    # ovsdbapp keeps the connection in a class attribute: a class of its own per connection,
    # so two connections in one process (tests: two "hosts") do not share one.
    api_class = type("OvnNbApi", (impl_idl.OvnNbApiIdlImpl,), {})
    try:
        idl = _NbIdl.from_server(remotes, "OVN_Northbound", helper_tables=TABLES)
        # python-ovs doubles its wait after each failed attempt, up to 8 s: through a leader
        # election (members refuse clients until one wins, ~1 s) that made the first write
        # after a leader loss take 7-15 s. At most 1 s between attempts (its minimum).
        idl._session.reconnect.set_backoff(_RECONNECT_BACKOFF_MS, _RECONNECT_BACKOFF_MS)
        return api_class(connection.Connection(idl=idl, timeout=timeout))
    except Exception as e:
        raise BackendError(f"cannot reach the OVN northbound database at {remotes}: {e}") from e


# -- reading rows (in the replica) -------------------------------------------------------------


def _ours(row: Any) -> bool:
    return bool(row.external_ids.get(c.OWNER_KEY) == c.OWNER)


def _pool_of(row: Any) -> Pool | None:
    ids = dict(row.external_ids)
    if not _ours(row) or c.SUBNET_KEY not in ids:
        return None
    try:
        subnet = IPv4Network(ids[c.SUBNET_KEY])
        gateway = IPv4Address(ids[c.GATEWAY_KEY]) if ids.get(c.GATEWAY_KEY) else None
    except ValueError:
        LOG.warning("ignoring switch %s: unreadable subnet or gateway", row.name)
        return None
    return Pool(
        pool_id=str(row.name),
        subnet=subnet,
        gateway=gateway,
        creator=ids.get(c.CREATOR_KEY, ""),
        pool_hosts=frozenset(
            k.removeprefix(c.HOST_POOL_PREFIX) for k in ids if k.startswith(c.HOST_POOL_PREFIX)
        ),
        networks={
            k.removeprefix(c.HOST_NETWORK_PREFIX): v
            for k, v in ids.items()
            if k.startswith(c.HOST_NETWORK_PREFIX)
        },
    )


def _reservation_of(pool_id: str, row: Any) -> Reservation | None:
    ids = row.external_ids
    if not _ours(row) or c.ADDRESS_KEY not in ids:
        return None
    try:
        address = IPv4Address(ids[c.ADDRESS_KEY])
        reserved_at = float(ids.get(c.RESERVED_AT_KEY, "0"))
    except ValueError:
        return None
    return Reservation(
        pool_id=pool_id,
        address=address,
        name=str(row.name),
        host=ids.get(c.HOST_KEY, ""),
        reserved_at=reserved_at,
        gateway=ids.get(c.ROLE_KEY) == c.ROLE_GATEWAY,
        endpoint_id=ids.get(c.ENDPOINT_ID_KEY) or None,
    )


def _by_name(api: Any, table: str, name: str) -> Any | None:
    return idlutils.row_by_value(api.idl, table, "name", name, None)


def _switch(api: Any, pool_id: str) -> Any | None:
    """Our switch of that name (names are unique among ours: the token sees to it)."""
    for row in api.tables[LS].rows.values():
        if row.name == pool_id and _ours(row) and c.SUBNET_KEY in row.external_ids:
            return row
    return None


def _tags(driver: str, extra: dict[str, str]) -> dict[str, str]:
    return c.owned({c.DRIVER_KEY: driver, **extra})


# -- commands: each decides on the replica inside the transaction ------------------------------


class _Command(command.BaseCommand):  # type: ignore[misc]
    def __init__(self, api: Any) -> None:
        super().__init__(api)


class _AcquirePool(_Command):
    def __init__(self, api: Any, subnet: IPv4Network, host: str, driver: str) -> None:
        super().__init__(api)
        self.subnet, self.host, self.driver = subnet, host, driver

    def run_idl(self, txn: Any) -> None:
        subnet = str(self.subnet)
        name = c.switch_name(subnet)
        now = f"{time.time():.3f}"
        existing = _switch(self.api, name)
        token = _by_name(self.api, PG, c.token_name(subnet))
        if existing is not None and token is not None:
            _refuse_removed(existing, self.host)
            # Verified: a ReleasePool deleting it meanwhile makes this try again (and create).
            existing.verify("external_ids")
            token.verify("name")
            existing.setkey("external_ids", c.host_pool_key(self.host), now)
            self.result = name
            return
        if existing is not None or token is not None:
            raise BackendError(f"switch {name} and its token {c.token_name(subnet)} disagree")
        for row in self.api.tables[LS].rows.values():
            other = _pool_of(row)
            if other is not None and other.subnet.overlaps(self.subnet):
                raise Conflict(
                    f"subnet {subnet} overlaps overlay subnet {other.subnet} (made by host "
                    f"{other.creator or '?'}): an overlay subnet is one address space for all "
                    "hosts"
                )
        # Every creation bumps the registry, verified: two hosts creating overlapping subnets
        # at once cannot both pass the check above.
        registry = _by_name(self.api, PG, c.REGISTRY_NAME)
        if registry is None:
            registry = txn.insert(self.api.tables[PG])
            registry.name = c.REGISTRY_NAME
            registry.external_ids = _tags(self.driver, {c.REGISTRY_GENERATION_KEY: "1"})
        else:
            registry.verify("external_ids")
            generation = int(registry.external_ids.get(c.REGISTRY_GENERATION_KEY, "0")) + 1
            registry.setkey("external_ids", c.REGISTRY_GENERATION_KEY, str(generation))
        switch = txn.insert(self.api.tables[LS])
        switch.name = name
        switch.external_ids = _tags(
            self.driver,
            {
                c.SUBNET_KEY: subnet,
                c.CREATOR_KEY: self.host,
                c.TOKEN_KEY: c.token_name(subnet),
                c.host_pool_key(self.host): now,
            },
        )
        new_token = txn.insert(self.api.tables[PG])
        new_token.name = c.token_name(subnet)
        new_token.external_ids = _tags(self.driver, {c.POOL_SWITCH_KEY: name})
        self.result = name


class _DropUse(_Command):
    """Drop one of a host's uses of a switch (its IPAM's pool, or its Docker network): Docker
    sends ReleasePool before DeleteNetwork, so whichever comes last deletes an unused switch."""

    def __init__(self, api: Any, pool_id: str, key: str) -> None:
        super().__init__(api)
        self.pool_id, self.key = pool_id, key
        self.result = False

    def run_idl(self, txn: Any) -> None:
        self.result = False
        switch = _switch(self.api, self.pool_id)
        if switch is None:
            return
        ids = dict(switch.external_ids)
        key = self.key
        ids.pop(key, None)
        users = [k for k in ids if k.startswith((c.HOST_POOL_PREFIX, c.HOST_NETWORK_PREFIX))]
        reserved = [p for p in switch.ports if p.external_ids.get(c.ROLE_KEY) != c.ROLE_GATEWAY]
        # The compare of the compare-and-swap, in both branches: a host that starts using the
        # switch, or reserves an address in it, before this commits makes it try again; and
        # so does another host dropping its own last use meanwhile, or two hosts' last drops
        # (each seeing the other's use still there) would both keep the switch for good.
        switch.verify("external_ids")
        switch.verify("ports")
        if users or reserved:
            if key in switch.external_ids:
                switch.delkey("external_ids", key)
            return
        delete_switch(self.api, switch)  # the gateway reservation is left, ours by the check
        self.result = True


def delete_switch(api: Any, switch: Any, deleted: frozenset[Any] = frozenset()) -> None:
    """Delete an unused switch: its token, its name token (unless taken over), its router
    port (and the router with its last), its ports but those in `deleted` (gone already)."""
    token = _by_name(api, PG, switch.external_ids.get(c.TOKEN_KEY, ""))
    if token is not None and _ours(token):
        token.delete()
    _drop_name_token(api, switch)
    _leave_router(api, switch)
    for port in switch.ports:
        if port not in deleted:
            port.delete()
    switch.delete()


def _router(api: Any, name: str) -> Any | None:
    """Our Logical_Router of `-o ovs.router=NAME` (unique among ours: its token sees to it)."""
    for row in api.tables[LR].rows.values():
        if row.name == c.router_name(name) and _ours(row):
            return row
    return None


def _leave_router(api: Any, switch: Any) -> None:
    """The switch goes: delete its router port, and the router (with its token) when that was
    the router's last port and nothing but ours is on it."""
    name = switch.external_ids.get(c.ROUTER_NAME_KEY)
    lrp = _by_name(api, LRP, c.router_port_name(switch.name))
    router = _router(api, name) if name else None
    if router is not None:
        # The compare: a switch joining meanwhile makes this try again (and keep the router).
        router.verify("ports")
    if lrp is None or not _ours(lrp):
        return
    if router is not None:
        router.delvalue("ports", lrp)
    lrp.delete()
    if router is None or any(p.uuid != lrp.uuid for p in router.ports):
        return
    if router.static_routes or router.nat or router.policies:
        return  # an operator added to it: theirs to remove
    token = _by_name(api, PG, c.router_token(str(name)))
    if token is not None and _ours(token):
        token.delete()
    router.delete()


class _JoinRouter(_Command):
    """Join a switch to the router NAME (made if missing) through its gateway reservation."""

    def __init__(self, api: Any, pool_id: str, router: str, mac: str, driver: str) -> None:
        super().__init__(api)
        self.pool_id, self.router, self.mac, self.driver = pool_id, router, mac, driver

    def run_idl(self, txn: Any) -> None:
        switch = _switch(self.api, self.pool_id)
        pool = _pool_of(switch) if switch is not None else None
        if switch is None or pool is None:
            raise NotFound(f"overlay pool {self.pool_id} does not exist in OVN")
        joined = switch.external_ids.get(c.ROUTER_NAME_KEY)
        if joined not in (None, self.router):
            raise Conflict(
                f"overlay subnet {pool.subnet} is joined to router {joined}, not {self.router}"
            )
        if pool.gateway is None:
            raise BackendError(
                f"overlay subnet {pool.subnet} has no gateway address: a router needs one"
            )
        gateway = _by_name(self.api, LSP, c.reservation_name(self.pool_id, str(pool.gateway)))
        if gateway is None or not _ours(gateway):
            raise BackendError(f"the gateway reservation of {self.pool_id} is missing")
        lrp_name = c.router_port_name(str(switch.name))
        lrp = _by_name(self.api, LRP, lrp_name)
        if joined == self.router and lrp is not None and gateway.type == "router":
            return  # joined already (by this host or another)
        router = _router(self.api, self.router)
        if router is None:
            token_name = c.router_token(self.router)
            token = _by_name(self.api, PG, token_name)
            if token is not None and not _ours(token):
                raise BackendError(f"Port_Group {token_name} exists and is not ours")
            if token is None:
                # Unique name: a host making the same router at once fails and tries again.
                token = txn.insert(self.api.tables[PG])
                token.name = token_name
                token.external_ids = _tags(self.driver, {c.ROUTER_NAME_KEY: self.router})
            else:
                token.verify("name")  # its router's last switch leaving meanwhile deletes it
            router = txn.insert(self.api.tables[LR])
            router.name = c.router_name(self.router)
            router.external_ids = _tags(self.driver, {c.ROUTER_NAME_KEY: self.router})
        else:
            router.verify("ports")  # its last switch leaving meanwhile would delete it
        if lrp is None:
            lrp = txn.insert(self.api.tables[LRP])
            lrp.name = lrp_name
            lrp.mac = self.mac
            lrp.networks = [f"{pool.gateway}/{pool.subnet.prefixlen}"]
            lrp.external_ids = _tags(self.driver, {c.ROLE_KEY: c.ROLE_ROUTER_PORT})
            router.addvalue("ports", lrp)
        gateway.verify("external_ids")
        gateway.type = "router"
        gateway.addresses = ["router"]
        gateway.setkey("options", "router-port", lrp_name)
        switch.verify("external_ids")
        switch.setkey("external_ids", c.ROUTER_NAME_KEY, self.router)


class _SetHostNetwork(_Command):
    def __init__(self, api: Any, pool_id: str, host: str, record: str) -> None:
        super().__init__(api)
        self.pool_id, self.host, self.record = pool_id, host, record

    def run_idl(self, txn: Any) -> None:
        switch = _switch(self.api, self.pool_id)
        key = c.host_network_key(self.host)
        if switch is None:
            raise NotFound(f"overlay pool {self.pool_id} does not exist in OVN")
        switch.verify("name")  # fails (and retries) if the switch is deleted meanwhile
        switch.setkey("external_ids", key, self.record)


def _new_reservation(
    api: Any, txn: Any, switch: Any, address: IPv4Address, *, host: str, driver: str, **extra: str
) -> None:
    lsp = txn.insert(api.tables[LSP])
    lsp.name = c.reservation_name(switch.name, str(address))
    lsp.external_ids = _tags(
        driver,
        {
            c.ADDRESS_KEY: str(address),
            c.HOST_KEY: host,
            c.RESERVED_AT_KEY: f"{time.time():.3f}",
            **extra,
        },
    )
    switch.addvalue("ports", lsp)


def _usable(subnet: IPv4Network, address: IPv4Address) -> str | None:
    """Why `address` cannot be handed out in `subnet`, or None."""
    if address not in subnet:
        return f"{address} is not in subnet {subnet}"
    if subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
        return f"{address} is the network or broadcast address of {subnet}"
    return None


class _Gateway(_Command):
    def __init__(
        self, api: Any, pool_id: str, host: str, wanted: IPv4Address | None, driver: str
    ) -> None:
        super().__init__(api)
        self.pool_id, self.host, self.wanted, self.driver = pool_id, host, wanted, driver

    def run_idl(self, txn: Any) -> None:
        switch = _switch(self.api, self.pool_id)
        pool = _pool_of(switch) if switch is not None else None
        if switch is None or pool is None:
            raise NotFound(f"overlay pool {self.pool_id} does not exist in OVN")
        if pool.gateway is not None:
            if self.wanted is not None and self.wanted != pool.gateway:
                raise Conflict(
                    f"the gateway of overlay subnet {pool.subnet} is {pool.gateway} on every "
                    f"host; give --gateway {pool.gateway} or none"
                )
            self.result = pool.gateway
            return
        gateway = self.wanted or next(pool.subnet.hosts())
        if (why := _usable(pool.subnet, gateway)) is not None:
            raise Conflict(f"gateway {why}")
        switch.verify("external_ids")  # two first requests at once: one sets, one reads
        switch.setkey("external_ids", c.GATEWAY_KEY, str(gateway))
        _new_reservation(
            self.api,
            txn,
            switch,
            gateway,
            host=self.host,
            driver=self.driver,
            **{c.ROLE_KEY: c.ROLE_GATEWAY},
        )
        self.result = gateway


class _Reserve(_Command):
    def __init__(
        self,
        api: Any,
        pool_id: str,
        *,
        host: str,
        address: IPv4Address | None,
        driver: str,
        lost: set[IPv4Address],
    ) -> None:
        super().__init__(api)
        self.pool_id, self.host, self.address, self.driver = pool_id, host, address, driver
        self.lost = lost  # addresses other hosts won since the first attempt
        self.candidate: IPv4Address | None = None

    def run_idl(self, txn: Any) -> None:
        switch = _switch(self.api, self.pool_id)
        pool = _pool_of(switch) if switch is not None else None
        if switch is None or pool is None:
            raise NotFound(f"overlay pool {self.pool_id} does not exist in OVN")
        switch.verify("name")  # a deleted switch would drop the new port silently
        taken = {
            r.address for p in switch.ports if (r := _reservation_of(pool.pool_id, p)) is not None
        } | self.lost
        if self.address is not None:
            if (why := _usable(pool.subnet, self.address)) is not None:
                raise Conflict(f"address {why}")
            self.candidate = self.address
            if self.address in taken:
                raise _Taken(str(self.address))
        else:
            self.candidate = next((a for a in pool.subnet.hosts() if a not in taken), None)
            if self.candidate is None:
                raise Conflict(f"no free address left in overlay subnet {pool.subnet}")
        _new_reservation(self.api, txn, switch, self.candidate, host=self.host, driver=self.driver)


class _Release(_Command):
    def __init__(self, api: Any, pool_id: str, address: IPv4Address, host: str) -> None:
        super().__init__(api)
        self.pool_id, self.address, self.host = pool_id, address, host
        self.result = False

    def run_idl(self, txn: Any) -> None:
        self.result = False
        switch = _switch(self.api, self.pool_id)
        lsp = _by_name(self.api, LSP, c.reservation_name(self.pool_id, str(self.address)))
        if switch is None or lsp is None:
            return
        r = _reservation_of(self.pool_id, lsp)
        if r is None or r.gateway or r.host != self.host:
            if r is not None and not r.gateway:
                LOG.warning(
                    "not releasing %s: host %s reserved it, not %s", r.name, r.host, self.host
                )
            return
        lsp.verify("external_ids")
        switch.delvalue("ports", lsp)
        lsp.delete()
        self.result = True


class _Bind(_Command):
    def __init__(
        self,
        api: Any,
        pool_id: str,
        address: IPv4Address,
        *,
        host: str,
        endpoint_id: str,
        mac: str,
        port_security: bool,
    ) -> None:
        super().__init__(api)
        self.pool_id, self.address, self.host = pool_id, address, host
        self.endpoint_id, self.mac, self.port_security = endpoint_id, mac, port_security

    def run_idl(self, txn: Any) -> None:
        name = c.reservation_name(self.pool_id, str(self.address))
        lsp = _by_name(self.api, LSP, name)
        r = _reservation_of(self.pool_id, lsp) if lsp is not None else None
        if lsp is None or r is None:
            raise NotFound(f"address {self.address} is not reserved in overlay pool {self.pool_id}")
        if r.gateway or r.host != self.host:
            raise Conflict(
                f"address {self.address} is reserved by host {r.host}, not this host "
                f"({self.host}): it cannot be an endpoint here"
            )
        if r.endpoint_id not in (None, self.endpoint_id):
            raise Conflict(f"address {self.address} is already endpoint {r.endpoint_id[:12]}")
        lsp.verify("external_ids")
        address = [f"{self.mac} {self.address}"]
        lsp.addresses = address
        lsp.port_security = address if self.port_security else []
        lsp.setkey("options", c.REQUESTED_CHASSIS, self.host)
        lsp.setkey("external_ids", c.ENDPOINT_ID_KEY, self.endpoint_id)


class _Unbind(_Command):
    def __init__(
        self, api: Any, pool_id: str, address: IPv4Address, host: str, endpoint_id: str
    ) -> None:
        super().__init__(api)
        self.pool_id, self.address = pool_id, address
        self.host, self.endpoint_id = host, endpoint_id

    def run_idl(self, txn: Any) -> None:
        lsp = _by_name(self.api, LSP, c.reservation_name(self.pool_id, str(self.address)))
        r = _reservation_of(self.pool_id, lsp) if lsp is not None else None
        if lsp is None or r is None or r.host != self.host or r.endpoint_id != self.endpoint_id:
            return  # released already, or another endpoint's now: not ours to change
        lsp.verify("external_ids")
        lsp.addresses = []
        lsp.port_security = []
        lsp.delkey("options", c.REQUESTED_CHASSIS)
        lsp.delkey("external_ids", c.ENDPOINT_ID_KEY)


# -- the cluster's Docker networks ("create once") ------------------------------------------


def _json_map(text: str | None) -> dict[str, str]:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _tombstone(text: str | None) -> Tombstone | None:
    if text is None:
        return None
    r = c.TombstoneRecord
    try:
        data = json.loads(text)
        return Tombstone(
            host=str(data.get(r.HOST, "")),
            at=float(data.get(r.AT, 0)),
            networks=_json_map(json.dumps(data.get(r.NETWORKS, {}))),
        )
    except (ValueError, TypeError, AttributeError):
        # Unreadable, still a removal: no host can prove which network to remove.
        return Tombstone(host="", at=0.0, networks={})


def _cluster_network_of(api: Any, row: Any) -> ClusterNetwork | None:
    pool = _pool_of(row)
    if pool is None:
        return None
    ids = dict(row.external_ids)
    token = _by_name(api, PG, ids[c.NAME_TOKEN_KEY]) if ids.get(c.NAME_TOKEN_KEY) else None
    return ClusterNetwork(
        pool=pool,
        name=ids.get(c.NAME_KEY),
        driver_options=_json_map(ids.get(c.DRIVER_OPTIONS_KEY)),
        ipam_options=_json_map(ids.get(c.IPAM_OPTIONS_KEY)),
        publisher=ids.get(c.PUBLISHER_KEY, ""),
        holds_name=token is not None and token.external_ids.get(c.POOL_SWITCH_KEY) == row.name,
        deleted=_tombstone(ids.get(c.DELETED_KEY)),
        left={
            k.removeprefix(c.HOST_LEFT_PREFIX): v
            for k, v in ids.items()
            if k.startswith(c.HOST_LEFT_PREFIX)
        },
    )


def _refuse_removed(switch: Any, host: str) -> None:
    """A new use of a switch whose network is being removed everywhere would be removed too."""
    ids = switch.external_ids
    if c.DELETED_KEY not in ids or c.host_network_key(host) in ids:
        return
    holders = sorted(
        k.removeprefix(c.HOST_NETWORK_PREFIX) for k in ids if k.startswith(c.HOST_NETWORK_PREFIX)
    )
    raise Conflict(
        f"overlay network {ids.get(c.NAME_KEY, '?')} ({ids.get(c.SUBNET_KEY)}) is being removed "
        f"on every host; hosts still removing it: {', '.join(holders) or 'none'}; try again in "
        "a moment"
    )


def _drop_name_token(api: Any, switch: Any) -> None:
    """Delete the switch's name token, unless another switch has taken the name over."""
    token = _by_name(api, PG, switch.external_ids.get(c.NAME_TOKEN_KEY, ""))
    if token is not None and _ours(token):
        token.verify("external_ids")  # a takeover meanwhile: try again, and leave it
        if token.external_ids.get(c.POOL_SWITCH_KEY) == switch.name:
            token.delete()


class _Publish(_Command):
    def __init__(
        self,
        api: Any,
        pool_id: str,
        *,
        name: str,
        definition: dict[str, str],
        host: str,
        driver: str,
    ) -> None:
        super().__init__(api)
        self.pool_id, self.name, self.definition = pool_id, name, definition
        self.host, self.driver = host, driver
        self.result: str | None = None

    def run_idl(self, txn: Any) -> None:
        self.result = None
        switch = _switch(self.api, self.pool_id)
        if switch is None:
            return
        self.result = self.pool_id
        if c.NAME_KEY in switch.external_ids:
            return  # published already (by this host or another, maybe under another name)
        token_name = c.name_token(self.name)
        token = _by_name(self.api, PG, token_name)
        if token is None:
            # Unique name: a racing claim of the same name fails with "constraint violation".
            token = txn.insert(self.api.tables[PG])
            token.name = token_name
            token.external_ids = _tags(
                self.driver, {c.NAME_KEY: self.name, c.POOL_SWITCH_KEY: self.pool_id}
            )
        else:
            holder = str(token.external_ids.get(c.POOL_SWITCH_KEY, ""))
            held = _switch(self.api, holder)
            if not _ours(token):
                raise BackendError(f"Port_Group {token_name} exists and is not ours")
            if held is not None and c.DELETED_KEY not in held.external_ids:
                self.result = holder
                return
            # The name's network is removed (or its switch gone): take the name over.
            token.verify("external_ids")
            if held is not None:
                held.verify("external_ids")
            token.setkey("external_ids", c.POOL_SWITCH_KEY, self.pool_id)
        switch.verify("external_ids")  # published meanwhile by another host: try again
        for key, value in {
            c.NAME_KEY: self.name,
            c.NAME_TOKEN_KEY: token_name,
            c.PUBLISHER_KEY: self.host,
            **self.definition,
        }.items():
            switch.setkey("external_ids", key, value)


class _RemoveEverywhere(_Command):
    def __init__(self, api: Any, pool_id: str, host: str, network_id: str) -> None:
        super().__init__(api)
        self.pool_id, self.host, self.network_id = pool_id, host, network_id
        self.result: dict[str, int] = {}

    def run_idl(self, txn: Any) -> None:
        self.result = {}
        switch = _switch(self.api, self.pool_id)
        if switch is None or c.DELETED_KEY in switch.external_ids:
            return
        used: Counter[str] = Counter()
        for port in switch.ports:
            # The compare: a port bound (a container started) meanwhile makes this try again.
            port.verify("external_ids")
            r = _reservation_of(self.pool_id, port)
            if r is not None and r.endpoint_id is not None and r.host != self.host:
                used[r.host] += 1
        switch.verify("ports")
        switch.verify("external_ids")
        if used:
            switch.setkey("external_ids", c.host_left_key(self.host), self.network_id)
            self.result = dict(used)
            return
        networks = {
            k.removeprefix(c.HOST_NETWORK_PREFIX): nid
            for k, v in switch.external_ids.items()
            if k.startswith(c.HOST_NETWORK_PREFIX) and (nid := recorded_network_id(v))
        }
        t = c.TombstoneRecord
        record = {t.HOST: self.host, t.AT: round(time.time(), 3), t.NETWORKS: networks}
        switch.setkey("external_ids", c.DELETED_KEY, json.dumps(record, sort_keys=True))


class _Rejoin(_Command):
    def __init__(self, api: Any, pool_id: str, host: str) -> None:
        super().__init__(api)
        self.pool_id, self.host = pool_id, host

    def run_idl(self, txn: Any) -> None:
        switch = _switch(self.api, self.pool_id)
        if switch is not None and c.host_left_key(self.host) in switch.external_ids:
            switch.delkey("external_ids", c.host_left_key(self.host))


# -- the adapter -------------------------------------------------------------------------------


class OvnNorthbound:
    def __init__(self, api: Any, timeout: float, retry_window: float, driver: str) -> None:
        self._api = api
        self._timeout = timeout
        self._retry_window = retry_window
        self._driver = driver
        self._watchers: list[Callable[[], None]] = []
        self._watch_lock = threading.Lock()

    def close(self) -> None:
        self._api.ovsdb_connection.stop()
        handler = getattr(self._api.idl, "notify_handler", None)
        if handler is not None:
            handler.shutdown()

    @contextmanager
    def _replica(self) -> Iterator[Any]:
        # The IDL thread changes rows while it applies updates: read under its lock.
        with self._api.ovsdb_connection.lock:
            yield self._api

    def _write(self, what: str, make: Callable[[], _Command]) -> Any:
        """Commit one command (built afresh per attempt); retry through a leader election."""
        deadline = time.monotonic() + self._retry_window
        while True:
            cmd = make()
            try:
                # log_errors=False: a lost race is expected; what is not is logged below.
                txn = ovs_transaction.Transaction(
                    self._api,
                    self._api.ovsdb_connection,
                    self._timeout,
                    check_error=True,
                    log_errors=False,
                )
                txn.add(cmd)
                txn.commit()
                return cmd.result
            except (PluginError, _Taken):
                raise
            except Exception as e:
                text = str(e).lower()
                if "constraint violation" in text:
                    raise _Taken(what) from e
                transient = isinstance(
                    e, ovsdb_exc.TimeoutException | ovsdb_exc.OvsdbConnectionUnavailable
                ) or any(t in text for t in _TRANSIENT)
                if transient and time.monotonic() < deadline:
                    LOG.info("%s: OVN northbound not available (%s); retrying", what, e)
                    time.sleep(_RETRY_PAUSE)
                    continue
                if isinstance(e, ovsdb_exc.TimeoutException):
                    raise BackendError(
                        f"{what}: the OVN northbound database did not answer within "
                        f"{self._timeout:.0f}s (is the OVN cluster up and reachable?)"
                    ) from e
                raise BackendError(f"{what}: the OVN northbound database refused: {e}") from e

    # -- reads ---------------------------------------------------------------------------------

    def pools(self) -> list[Pool]:
        with self._replica() as api:
            return [p for row in api.tables[LS].rows.values() if (p := _pool_of(row))]

    def pool(self, pool_id: str) -> Pool | None:
        with self._replica() as api:
            row = _switch(api, pool_id)
            return _pool_of(row) if row is not None else None

    def reservation(self, pool_id: str, address: IPv4Address) -> Reservation | None:
        with self._replica() as api:
            row = _by_name(api, LSP, c.reservation_name(pool_id, str(address)))
            return _reservation_of(pool_id, row) if row is not None else None

    def stale_reservations(self, host: str, older_than: float) -> list[Reservation]:
        out = []
        with self._replica() as api:
            for switch in api.tables[LS].rows.values():
                if _pool_of(switch) is None:
                    continue
                for port in switch.ports:
                    r = _reservation_of(str(switch.name), port)
                    if (
                        r is not None
                        and r.host == host
                        and r.reserved_at < older_than
                        and not r.gateway
                        and r.endpoint_id is None
                    ):
                        out.append(r)
        return sorted(out, key=lambda r: (r.pool_id, r.address))

    # -- writes --------------------------------------------------------------------------------

    def acquire_pool(self, subnet: IPv4Network, host: str, driver: str) -> str:
        what = f"creating overlay subnet {subnet}"
        for _ in range(3):
            try:
                return str(self._write(what, lambda: _AcquirePool(self._api, subnet, host, driver)))
            except _Taken:
                # Another host created it (or the registry) at the same instant: use theirs.
                self._wait_for(lambda: self._token_seen(subnet))
        raise BackendError(f"{what}: kept colliding with other hosts; try again")

    def _token_seen(self, subnet: IPv4Network) -> bool:
        with self._replica() as api:
            return _by_name(api, PG, c.token_name(str(subnet))) is not None

    def release_pool(self, pool_id: str, host: str) -> bool:
        return bool(
            self._write(
                f"releasing overlay pool {pool_id}",
                lambda: _DropUse(self._api, pool_id, c.host_pool_key(host)),
            )
        )

    def set_host_network(self, pool_id: str, host: str, record: str | None) -> None:
        if record is None:
            self._write(
                f"dropping this host's network from {pool_id}",
                lambda: _DropUse(self._api, pool_id, c.host_network_key(host)),
            )
            return
        self._write(
            f"recording this host's network on {pool_id}",
            lambda: _SetHostNetwork(self._api, pool_id, host, record),
        )

    def gateway(self, pool_id: str, host: str, wanted: IPv4Address | None) -> IPv4Address:
        what = f"choosing the gateway of {pool_id}"
        try:
            gw = self._write(what, lambda: _Gateway(self._api, pool_id, host, wanted, self._driver))
        except _Taken:
            # The address is someone's reservation already.
            holder = self._holder(pool_id, wanted) if wanted is not None else None
            raise Conflict(f"gateway {wanted} is taken{holder or ''}") from None
        return IPv4Address(str(gw))

    def reserve(self, pool_id: str, host: str, address: IPv4Address | None) -> Reservation:
        lost: set[IPv4Address] = set()
        made: list[_Reserve] = []  # the last attempt's command: which address it tried

        def make() -> _Command:
            made[:] = [
                _Reserve(
                    self._api, pool_id, host=host, address=address, driver=self._driver, lost=lost
                )
            ]
            return made[0]

        for _ in range(_TAKEN_ATTEMPTS):
            try:
                self._write(f"reserving an address in {pool_id}", make)
            except _Taken:
                candidate = made[0].candidate
                if address is not None or candidate is None:
                    holder = self._holder(pool_id, address) if address is not None else ""
                    raise Conflict(f"address {address} is already reserved{holder}") from None
                lost.add(candidate)
                continue
            chosen = made[0].candidate
            if chosen is None:  # run_idl sets it before every commit
                raise BackendError(f"reserving an address in {pool_id}: no address chosen")
            return Reservation(
                pool_id=pool_id,
                address=chosen,
                name=c.reservation_name(pool_id, str(chosen)),
                host=host,
                reserved_at=time.time(),
            )
        raise BackendError(
            f"reserving an address in {pool_id}: lost {_TAKEN_ATTEMPTS} races in a row to "
            "other hosts; try again"
        )

    def _holder(self, pool_id: str, address: IPv4Address) -> str:
        """' by host H (since T)' once the replica shows the winner's row."""
        found: list[Reservation] = []

        def seen() -> bool:
            r = self.reservation(pool_id, address)
            found[:] = [r] if r is not None else []
            return r is not None

        if not self._wait_for(seen):
            return ""
        r = found[0]
        if r.gateway:
            return " (it is the network's gateway)"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.reserved_at))
        what = f", as endpoint {r.endpoint_id[:12]}" if r.endpoint_id else ""
        return f" by host {r.host} (since {since}{what})"

    def _wait_for(self, condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + _HOLDER_WAIT
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def release(self, pool_id: str, address: IPv4Address, host: str) -> bool:
        return bool(
            self._write(
                f"releasing {address} in {pool_id}",
                lambda: _Release(self._api, pool_id, address, host),
            )
        )

    def bind(
        self,
        pool_id: str,
        address: IPv4Address,
        *,
        host: str,
        endpoint_id: str,
        mac: str,
        port_security: bool,
    ) -> None:
        self._write(
            f"making {address} an endpoint's port in {pool_id}",
            lambda: _Bind(
                self._api,
                pool_id,
                address,
                host=host,
                endpoint_id=endpoint_id,
                mac=mac,
                port_security=port_security,
            ),
        )

    def unbind(self, pool_id: str, address: IPv4Address, host: str, endpoint_id: str) -> None:
        self._write(
            f"making {address} a plain reservation in {pool_id}",
            lambda: _Unbind(self._api, pool_id, address, host, endpoint_id),
        )

    def join_router(self, pool_id: str, router: str, mac: str) -> None:
        what = f"joining {pool_id} to router {router}"
        for _ in range(3):
            try:
                self._write(
                    what, lambda: _JoinRouter(self._api, pool_id, router, mac, self._driver)
                )
                return
            except _Taken:
                # Another host made the router at the same instant: join that one.
                self._wait_for(lambda: self._router_seen(router))
        raise BackendError(f"{what}: kept colliding with other hosts; try again")

    def _router_seen(self, router: str) -> bool:
        with self._replica() as api:
            return _router(api, router) is not None

    def routed_subnets(self, pool_id: str) -> list[IPv4Network]:
        with self._replica() as api:
            switch = _switch(api, pool_id)
            name = switch.external_ids.get(c.ROUTER_NAME_KEY) if switch is not None else None
            router = _router(api, name) if name else None
            if router is None:
                return []
            own = c.router_port_name(pool_id)
            return sorted(
                {
                    IPv4Interface(n).network
                    for p in router.ports
                    if p.name != own
                    for n in p.networks
                    if ":" not in n
                }
            )

    # -- the cluster's Docker networks ---------------------------------------------------------

    def cluster_networks(self) -> list[ClusterNetwork]:
        with self._replica() as api:
            return [
                n for row in api.tables[LS].rows.values() if (n := _cluster_network_of(api, row))
            ]

    def publish(
        self,
        pool_id: str,
        *,
        name: str,
        driver_options: Mapping[str, str],
        ipam_options: Mapping[str, str],
        host: str,
    ) -> str | None:
        definition = {
            c.DRIVER_OPTIONS_KEY: json.dumps(dict(driver_options), sort_keys=True),
            c.IPAM_OPTIONS_KEY: json.dumps(dict(ipam_options), sort_keys=True),
        }
        what = f"publishing network {name} ({pool_id})"
        for _ in range(3):
            try:
                result = self._write(
                    what,
                    lambda: _Publish(
                        self._api,
                        pool_id,
                        name=name,
                        definition=definition,
                        host=host,
                        driver=self._driver,
                    ),
                )
                return None if result is None else str(result)
            except _Taken:
                # Another host claimed the name at the same instant: the next attempt, on a
                # replica that shows its token, answers which pool holds it.
                self._wait_for(lambda: self._name_seen(name))
        raise BackendError(f"{what}: kept colliding with other hosts; try again")

    def _name_seen(self, name: str) -> bool:
        with self._replica() as api:
            return _by_name(api, PG, c.name_token(name)) is not None

    def remove_everywhere(self, pool_id: str, host: str, network_id: str) -> dict[str, int]:
        return dict(
            self._write(
                f"removing network {pool_id} from every host",
                lambda: _RemoveEverywhere(self._api, pool_id, host, network_id),
            )
        )

    def rejoin(self, pool_id: str, host: str) -> None:
        self._write(f"rejoining network {pool_id}", lambda: _Rejoin(self._api, pool_id, host))

    def watch(self, callback: Callable[[], None]) -> None:
        with self._watch_lock:
            self._watchers.append(callback)
            if len(self._watchers) == 1:
                self._api.idl.notify_handler.watch_event(_SwitchChanged(self._watchers))
