"""One handler per remote-driver and remote-IPAM call: decode, call the use case, encode."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from docker_ovs_plugin.http import models
from docker_ovs_plugin.http.errors import BadRequest
from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.service.ipam import Ipam
from docker_ovs_plugin.service.networks import Networks
from docker_ovs_plugin.service.overlay import Overlay

Handler = Callable[[bytes], dict[str, Any]]
M = TypeVar("M", bound=BaseModel)


def decode(body: bytes, model: type[M]) -> M:
    # Docker sends no Content-Type; the body is JSON whatever the headers say.
    if not body.strip():
        raise BadRequest("empty body; a JSON object was expected")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"body is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return model.model_validate(data)


def activate(_: bytes) -> dict[str, Any]:
    # IpamDriver even without --ovn-nb: dockerd activates a v1 plugin once and keeps the answer
    # across plugin restarts; its IPAM requests are refused with a message naming the flag.
    return {"Implements": ["NetworkDriver", "IpamDriver"]}


def capabilities(_: bytes) -> dict[str, Any]:
    return {"Scope": "local", "ConnectivityScope": "local"}


def network_ok(body: bytes) -> dict[str, Any]:
    decode(body, models.NetworkRequest)
    return {}


def allocate_network(body: bytes) -> dict[str, Any]:
    # Swarm-only (global scope drivers); we are local scope, so there is nothing to add.
    decode(body, models.NetworkRequest)
    return {"Options": {}}


def discovery(_: bytes) -> dict[str, Any]:
    # Node discovery is for multi-host drivers; a local-scope driver acknowledges it.
    return {}


def build_routes(
    driver: Driver, overlay: Overlay | None = None, ipam: Ipam | None = None
) -> dict[str, Handler]:
    networks = Networks(driver, overlay)

    def create_network(body: bytes) -> dict[str, Any]:
        req = decode(body, models.CreateNetworkRequest)
        try:
            generic = req.generic_options
            ipv4 = req.subnets(req.IPv4Data, 4)
            ipv6 = req.subnets(req.IPv6Data, 6)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        networks.create_network(
            req.NetworkID,
            generic,
            ipv4,
            ipv6,
            internal=req.internal,
            address_space=req.address_space,
        )
        return {}

    def delete_network(body: bytes) -> dict[str, Any]:
        network_id = decode(body, models.NetworkRequest).NetworkID
        networks.backend(network_id).delete_network(network_id)
        return {}

    def create_endpoint(body: bytes) -> dict[str, Any]:
        req = decode(body, models.CreateEndpointRequest)
        iface = req.Interface
        mac = networks.backend(req.NetworkID).create_endpoint(
            req.NetworkID,
            req.EndpointID,
            ipv4=iface.ipv4,
            ipv6=iface.ipv6,
            mac=iface.MacAddress or None,
        )
        # Only fields Docker left empty may be filled: echoing one back fails the container.
        return {"Interface": {"MacAddress": mac}} if mac else {"Interface": {}}

    def delete_endpoint(body: bytes) -> dict[str, Any]:
        req = decode(body, models.EndpointRequest)
        networks.backend(req.NetworkID).delete_endpoint(req.NetworkID, req.EndpointID)
        return {}

    def join(body: bytes) -> dict[str, Any]:
        req = decode(body, models.JoinRequest)
        info = networks.backend(req.NetworkID).join(req.NetworkID, req.EndpointID)
        out: dict[str, Any] = {
            "InterfaceName": {"SrcName": info.src_name, "DstPrefix": info.dst_prefix},
            "DisableGatewayService": info.disable_gateway_service,
        }
        if info.gateway:
            out["Gateway"] = info.gateway
        if info.gateway_ipv6:
            out["GatewayIPv6"] = info.gateway_ipv6
        if info.static_routes:
            # RouteType 0: a route via NextHop (1 would be on-link, without one).
            out["StaticRoutes"] = [
                {"Destination": r.destination, "RouteType": 0, "NextHop": r.next_hop}
                for r in info.static_routes
            ]
        return out

    def leave(body: bytes) -> dict[str, Any]:
        req = decode(body, models.EndpointRequest)
        networks.backend(req.NetworkID).leave(req.NetworkID, req.EndpointID)
        return {}

    def endpoint_info(body: bytes) -> dict[str, Any]:
        req = decode(body, models.EndpointRequest)
        info = networks.backend(req.NetworkID).endpoint_info(req.NetworkID, req.EndpointID)
        return {"Value": info}

    def program_external(body: bytes) -> dict[str, Any]:
        req = decode(body, models.ExternalConnectivityRequest)
        try:
            mappings = req.port_mappings
        except ValueError as e:
            raise BadRequest(str(e)) from None
        networks.backend(req.NetworkID).program_external(req.NetworkID, req.EndpointID, mappings)
        return {}

    def revoke_external(body: bytes) -> dict[str, Any]:
        req = decode(body, models.EndpointRequest)
        networks.backend(req.NetworkID).revoke_external(req.NetworkID, req.EndpointID)
        return {}

    return {
        "/Plugin.Activate": activate,
        "/NetworkDriver.GetCapabilities": capabilities,
        "/NetworkDriver.CreateNetwork": create_network,
        "/NetworkDriver.DeleteNetwork": delete_network,
        "/NetworkDriver.CreateEndpoint": create_endpoint,
        "/NetworkDriver.DeleteEndpoint": delete_endpoint,
        "/NetworkDriver.Join": join,
        "/NetworkDriver.Leave": leave,
        "/NetworkDriver.EndpointOperInfo": endpoint_info,
        "/NetworkDriver.ProgramExternalConnectivity": program_external,
        "/NetworkDriver.RevokeExternalConnectivity": revoke_external,
        "/NetworkDriver.AllocateNetwork": allocate_network,
        "/NetworkDriver.FreeNetwork": network_ok,
        "/NetworkDriver.DiscoverNew": discovery,
        "/NetworkDriver.DiscoverDelete": discovery,
        **_ipam_routes(ipam or Ipam(None, None, name=driver.name)),
    }


def _ipam_routes(ipam: Ipam) -> dict[str, Handler]:
    """/IpamDriver.*: failures are non-200 with {"Err"} (the form both of Docker's decoders
    read; the IPAM reply's own error field would be "Error")."""

    def ipam_capabilities(_: bytes) -> dict[str, Any]:
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    def address_spaces(_: bytes) -> dict[str, Any]:
        return {
            "LocalDefaultAddressSpace": ipam.address_space,
            "GlobalDefaultAddressSpace": ipam.address_space,
        }

    def request_pool(body: bytes) -> dict[str, Any]:
        req = decode(body, models.RequestPoolRequest)
        pool_id, pool = ipam.request_pool(pool=req.Pool, sub_pool=req.SubPool, v6=req.V6)
        return {"PoolID": pool_id, "Pool": pool, "Data": {}}

    def release_pool(body: bytes) -> dict[str, Any]:
        ipam.release_pool(decode(body, models.PoolRequest).PoolID)
        return {}

    def request_address(body: bytes) -> dict[str, Any]:
        req = decode(body, models.RequestAddressRequest)
        address = ipam.request_address(req.PoolID, req.Address, req.Options or {})
        return {"Address": address, "Data": {}}

    def release_address(body: bytes) -> dict[str, Any]:
        req = decode(body, models.ReleaseAddressRequest)
        ipam.release_address(req.PoolID, req.Address)
        return {}

    return {
        "/IpamDriver.GetCapabilities": ipam_capabilities,
        "/IpamDriver.GetDefaultAddressSpaces": address_spaces,
        "/IpamDriver.RequestPool": request_pool,
        "/IpamDriver.ReleasePool": release_pool,
        "/IpamDriver.RequestAddress": request_address,
        "/IpamDriver.ReleaseAddress": release_address,
    }
