"""What the use cases need from the outside world, and what it answers. Adapters
implement these; tests use fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from docker_ovs_plugin.service.model import Endpoint, IPInterface, Network


@dataclass(frozen=True)
class BridgeState:
    """What OVSDB says about a bridge the driver is about to use."""

    owned: bool
    networks: list[Network] = field(default_factory=list)
    uplink: str | None = None


@dataclass(frozen=True)
class PortInfo:
    """What Open vSwitch says about one port (for status)."""

    bridge: str | None
    ofport: int | None
    vlan: int | None
    link_state: str | None = None
    statistics: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    container_id: str
    container: str  # Docker's container name


@dataclass(frozen=True)
class DockerNetwork:
    """What Docker says about one of our networks (for status)."""

    name: str
    driver: str
    attachments: Mapping[str, Attachment]  # by endpoint id


class Switch(Protocol):
    """Open vSwitch configuration (OVSDB): bridges, ports and their external_ids."""

    def list_networks(self) -> list[Network]:
        """Every network recorded on a bridge that carries our owner tag (any driver name)."""

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint recorded on an interface that carries our owner tag (any driver)."""

    def bridge_state(self, bridge: str) -> BridgeState | None:
        """None when there is no such bridge."""

    def port_bridge(self, port: str) -> str | None:
        """The bridge that holds a port of that name, if any."""

    def add_network(self, network: Network, datapath_type: str, peers: Sequence[Network]) -> None:
        """In one transaction: the bridge (unless it exists), the network's record, its VLAN
        gateway port, the uplink port and the uplink's trunks over `peers` and `network`."""

    def remove_network(self, network: Network, peers: Sequence[Network]) -> None:
        """Delete the bridge when `peers` is empty, else only what the network added."""

    def add_port(self, network: Network, endpoint: Endpoint) -> None:
        """Attach the endpoint's host veth with its external_ids; fail if OVS cannot open it."""

    def update_endpoint(self, endpoint: Endpoint) -> None:
        """Rewrite the endpoint's external_ids (e.g. its published ports)."""

    def delete_port(self, bridge: str, port: str) -> None:
        """Delete the port if it exists and is ours."""

    def ofport(self, name: str) -> int | None:
        """The OpenFlow port number of an interface (None: no such interface, or not open)."""

    def empty_bridges(self) -> list[str]:
        """Bridges tagged as ours that record no network (left by an interrupted delete)."""

    def delete_bridge(self, bridge: str) -> None:
        """Delete the bridge if it is ours."""


class Links(Protocol):
    """Kernel network devices (netlink)."""

    def exists(self, name: str) -> bool: ...

    def names(self, prefixes: tuple[str, ...]) -> list[str]:
        """Devices in the host namespace whose names start with one of the prefixes."""

    def addresses(self, name: str) -> list[IPInterface]:
        """The addresses of a device (empty when it does not exist)."""

    def default_route_interfaces(self) -> set[str]:
        """Names of the devices that carry a default route (IPv4 or IPv6)."""

    def set_up(self, name: str) -> None: ...

    def create_veth(
        self, host: str, peer: str, *, mtu: int, peer_mac: str, peer_tx_checksum: bool
    ) -> None:
        """Create a veth pair (replacing a stale one of the same name), host end up."""

    def delete_link(self, name: str) -> None:
        """Delete the device if present (deleting one veth end removes both)."""

    def configure_bridge_port(self, name: str, addresses: Sequence[IPInterface]) -> None:
        """Wait (bounded) for an internal port's device, give it the addresses, bring it up."""

    def mtu_of_address(self, address: str) -> int | None:
        """The MTU of the device that holds `address` (None: no device holds it)."""


class Flows(Protocol):
    """OpenFlow rules (they live in ovs-vswitchd only, not in OVSDB)."""

    def install_endpoint(self, network: Network, endpoint: Endpoint, ofport: int) -> None:
        """Port security: the endpoint may send only from its own MAC and addresses."""

    def remove_endpoint(self, network: Network, endpoint: Endpoint) -> None: ...

    def cookies(self, bridge: str) -> set[int]:
        """Cookies of the flows on the bridge (0, the NORMAL default, excluded)."""

    def remove_cookie(self, bridge: str, cookie: int) -> None: ...


class Firewall(Protocol):
    """Packet filter rules of the plugin's own chains."""

    def add_network(self, network: Network) -> None:
        """Forwarding, isolation and masquerade for the network (idempotent)."""

    def remove_network(self, network: Network) -> None:
        """Remove every rule the network or its endpoints added (idempotent)."""

    def set_port_mappings(self, network: Network, endpoint: Endpoint) -> None:
        """Make the endpoint's published ports exactly its `port_mappings`."""

    def has_network(self, network: Network) -> bool:
        """Whether every rule of the network is in place."""

    def tagged_networks(self) -> set[str]:
        """Short (12 hex) ids of the networks that have rules in our chains."""

    def remove_tagged(self, short_id: str) -> None:
        """Remove every rule tagged with that short network id."""


class DockerView(Protocol):
    """What Docker itself knows; asked only from the background, never inside a request."""

    def endpoints_of(self, network_ids: Iterable[str]) -> dict[str, set[str]]:
        """Endpoint ids of each of these networks, asked by its own id; a network Docker says
        it has no such network of is left out (and only then). Raises on any other failure."""


# -- multi-host overlay networks (OVN) ------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """An overlay subnet as the OVN northbound database records it (one Logical_Switch)."""

    pool_id: str  # the switch's name; Docker's PoolID
    subnet: IPv4Network
    gateway: IPv4Address | None
    creator: str  # system-id
    pool_hosts: frozenset[str]  # hosts whose IPAM handed it out
    networks: Mapping[str, str]  # system-id -> that host's network record (JSON)


@dataclass(frozen=True)
class Reservation:
    """One reserved address (a Logical_Switch_Port)."""

    pool_id: str
    address: IPv4Address
    name: str  # the logical port's name
    host: str  # system-id of the host that reserved it
    reserved_at: float  # unix time
    gateway: bool = False  # the switch's gateway, shared by every host
    endpoint_id: str | None = None  # set while it is an endpoint's port


class Northbound(Protocol):
    """The cluster's shared intent: overlay subnets and their addresses (OVN northbound).

    Every write is atomic and safe against other hosts writing at the same time; reads come
    from a local replica, which may lag other hosts' writes by a moment."""

    def pools(self) -> list[Pool]:
        """Every overlay pool of this plugin (all driver names)."""

    def pool(self, pool_id: str) -> Pool | None: ...

    def acquire_pool(self, subnet: IPv4Network, host: str, driver: str) -> str:
        """The pool id of the subnet's switch, created unless some host made it already, and
        `host` recorded as one of its users. Conflict if it overlaps another pool."""

    def release_pool(self, pool_id: str, host: str) -> bool:
        """Drop `host`'s use; delete the switch when no host uses it and no address of it is
        reserved (True when deleted)."""

    def set_host_network(self, pool_id: str, host: str, record: str | None) -> None:
        """Record (or, with None, drop) `host`'s Docker network on the pool. Dropping the last
        use deletes an unused switch as release_pool does (Docker sends ReleasePool before
        DeleteNetwork)."""

    def gateway(self, pool_id: str, host: str, wanted: IPv4Address | None) -> IPv4Address:
        """The pool's one gateway address: recorded and reserved by the first request (the
        first host address unless `wanted`), the same for every host after."""

    def reserve(self, pool_id: str, host: str, address: IPv4Address | None) -> Reservation:
        """Reserve `address`, or the lowest free one; Conflict when it is taken / none is."""

    def release(self, pool_id: str, address: IPv4Address, host: str) -> bool:
        """Delete the reservation if `host` made it (the gateway stays); True when deleted."""

    def reservation(self, pool_id: str, address: IPv4Address) -> Reservation | None: ...

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
        """Make `host`'s reservation the endpoint's logical port (addresses, port security,
        requested-chassis)."""

    def unbind(self, pool_id: str, address: IPv4Address, host: str, endpoint_id: str) -> None:
        """Make the endpoint's logical port a plain reservation again (if it still is its)."""

    def stale_reservations(self, host: str, older_than: float) -> list[Reservation]:
        """`host`'s reservations made before unix time `older_than` that are no endpoint's
        port, nor the gateway: candidates for a collector of addresses Docker never released."""

    def join_router(self, pool_id: str, router: str, mac: str) -> None:
        """Join the pool to the logical router `router` (made by the first pool to join it),
        its gateway address becoming the router's address there (with `mac`); a no-op when
        joined already. Conflict when the pool is joined to another router. The router goes
        with the last pool on it."""

    def routed_subnets(self, pool_id: str) -> list[IPv4Network]:
        """The subnets of the other pools on the pool's router (none without one)."""


@dataclass(frozen=True)
class Tombstone:
    """`docker network rm` of a cluster network while no container used it anywhere."""

    host: str  # whose rm it was
    at: float  # unix time
    networks: Mapping[str, str]  # system-id -> the Docker network id that host removes


@dataclass(frozen=True)
class ClusterNetwork:
    """An overlay pool seen as the cluster's one Docker network ("create once")."""

    pool: Pool
    name: str | None  # None: not published (yet), or it lost its name to another pool
    driver_options: Mapping[str, str]
    ipam_options: Mapping[str, str]
    publisher: str  # system-id
    holds_name: bool  # its name token names this pool (the cluster's network of that name)
    deleted: Tombstone | None
    # hosts that left it while containers elsewhere used it -> the Docker network id removed
    left: Mapping[str, str]


class Catalog(Protocol):
    """The cluster's Docker networks, one per name, in the OVN northbound database."""

    def cluster_networks(self) -> list[ClusterNetwork]:
        """Every overlay pool of ours, published or not."""

    def publish(
        self,
        pool_id: str,
        *,
        name: str,
        driver_options: Mapping[str, str],
        ipam_options: Mapping[str, str],
        host: str,
    ) -> str | None:
        """Claim `name` for the pool and record its definition, atomically: the pool id that
        holds the name afterwards (`pool_id` when this claim won or held already; a removed
        network's claim is taken over), None when the pool is gone."""

    def remove_everywhere(self, pool_id: str, host: str, network_id: str) -> dict[str, int]:
        """`host` removes its Docker network `network_id`: mark the pool deleted unless
        containers of other hosts use it; then record that `host` left it (and which network
        it removed) instead and return those hosts' container (bound port) counts. One
        compare-and-swap."""

    def rejoin(self, pool_id: str, host: str) -> None:
        """`host` has a Docker network on the pool again: drop its "left" mark."""

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on another thread) whenever one of our switches changes."""


@dataclass(frozen=True)
class LocalNetwork:
    """One network as this host's Docker reports it."""

    network_id: str
    name: str
    driver: str
    options: Mapping[str, str]  # the -o options
    ipam_driver: str
    ipam_options: Mapping[str, str]
    subnets: tuple[tuple[str, str], ...]  # (subnet, gateway) of its IPAM config
    containers: int


class DockerNetworks(Protocol):
    """This host's Docker, asked and changed only from the background (never in a request:
    dockerd holds its locks while it waits for the plugin). Raises on any Docker failure."""

    def network(self, network_id: str) -> LocalNetwork | None:
        """By exact id; None when Docker has no such network."""

    def network_named(self, name: str) -> LocalNetwork | None:
        """By exact name; None when there is none."""

    def create_network(
        self,
        name: str,
        *,
        driver: str,
        options: Mapping[str, str],
        ipam_driver: str,
        subnet: str,
        gateway: str | None,
        ipam_options: Mapping[str, str],
    ) -> str:
        """`docker network create`; the new network's id."""

    def remove_network(self, network_id: str) -> None:
        """`docker network rm` by id."""


@dataclass(frozen=True)
class Chassis:
    """This host as OVN knows it, from the local Open_vSwitch row."""

    system_id: str
    bridge: str  # the integration bridge
    encap_ip: str | None
    encap_types: tuple[str, ...]
    datapath_type: str | None  # of the integration bridge; None when it is not there yet


class Integration(Protocol):
    """The local integration bridge, which ovn-controller programs (the plugin writes no
    flows on it)."""

    def chassis(self) -> Chassis:
        """BackendError when this host has no system-id (ovn-controller not set up)."""

    def add_port(self, bridge: str, name: str, external_ids: Mapping[str, str]) -> None:
        """Add the port with these Interface external_ids; fail if OVS cannot open it."""

    def delete_port(self, bridge: str, name: str) -> None:
        """Delete the port if it exists and is ours."""

    def installed(self, name: str) -> bool:
        """Whether ovn-controller has put the port's flows in (external_ids:ovn-installed)."""

    def wait_installed(self, name: str, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until installed(name); return it."""

    def list_endpoints(self) -> list[dict[str, str]]:
        """The external_ids of every overlay endpoint's Interface of ours."""
