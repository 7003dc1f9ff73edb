"""Finding and repairing drift between Docker, OVS, the kernel and iptables.

Docker replays nothing to a plugin after a restart of either side and sends no DeleteEndpoint to a
plugin that was down, and ovs-vswitchd forgets flows and the addresses of internal ports when it
restarts. `Reconciler.findings()` lists every difference with words for an operator and a repair;
the background loop (and `docker-ovs-plugin doctor --fix`) apply them. Repairs that put something
back are applied at once; removals only when the same finding is still there after a grace
period, so an endpoint that is being created (in OVS but not yet in Docker) is never collected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from docker_ovs_plugin.contract import (
    COMMENT_ID_CHARS,
    CONTAINER_VETH_PREFIX,
    HOST_VETH_PREFIX,
    cookie_network,
    network_cookie,
)
from docker_ovs_plugin.service.driver import Driver
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.ports import DockerView, Firewall, Flows, Links, Switch

LOG = logging.getLogger(__name__)

RECOVERY_WINDOW = 3.0  # seconds of repeated checks after ovs-vswitchd came back


@dataclass(frozen=True)
class Finding:
    key: str  # stable across passes
    message: str  # for an operator
    repair: Callable[[], None]
    removal: bool  # removes something (waits for a second sighting) rather than restoring


class Reconciler:
    def __init__(
        self,
        driver: Driver,
        *,
        switch: Switch,
        links: Links,
        firewall: Firewall,
        flows: Flows,
        docker: DockerView | None,
        extra: Sequence[Callable[[], list[Finding]]] = (),
    ) -> None:
        self._driver = driver
        self._extra = list(extra)  # more sources of findings (overlay networks)
        self._switch = switch
        self._links = links
        self._firewall = firewall
        self._flows = flows
        self._docker = docker
        # removal finding key -> when it was first seen; dropped when it stops being seen
        self._suspects: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.actions = 0  # repairs applied, for operators and metrics
        self.passes = 0  # full passes done (each judged everything once)

    # -- what is wrong ---------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        return [
            *self._stale_against_docker(),
            *self._leftovers(),
            *self._missing_plumbing(),
            *(f for source in self._extra for f in source()),
        ]

    def add_source(self, source: Callable[[], list[Finding]]) -> None:
        self._extra.append(source)

    def _stale_against_docker(self) -> list[Finding]:
        if self._docker is None:
            return []
        driver = self._driver
        networks = driver.networks()  # judged: exactly the networks Docker was asked about
        try:
            # By each network's own id: whatever name Docker shows as their driver (an alias,
            # NAME:TAG), a network it still has is never taken for gone.
            docker = self._docker.endpoints_of([n.network_id for n in networks])
        except Exception as e:  # Docker down or restarting: judge nothing against it
            LOG.warning("cannot ask Docker for its networks (%s); skipping that check", e)
            return []
        out = []
        for net in networks:
            if net.network_id not in docker:
                out.append(
                    Finding(
                        f"network:{net.network_id}",
                        f"network {net.network_id[:12]} (bridge {net.bridge}) no longer exists in "
                        "Docker; removing its bridge, ports and rules",
                        partial(driver.delete_network, net.network_id),
                        removal=True,
                    )
                )
        for ep in driver.endpoints():
            known = docker.get(ep.network_id)
            if known is not None and ep.endpoint_id not in known:
                out.append(
                    Finding(
                        f"endpoint:{ep.endpoint_id}",
                        f"endpoint {ep.endpoint_id[:12]} (port {ep.host_if}) on network "
                        f"{ep.network_id[:12]} is gone from Docker (its container stopped while "
                        "the plugin was down); removing its port, veth, flows and rules",
                        partial(driver.delete_endpoint, ep.network_id, ep.endpoint_id),
                        removal=True,
                    )
                )
        return out

    def _leftovers(self) -> list[Finding]:
        driver = self._driver
        networks = driver.networks()
        endpoints = driver.endpoints()
        out = []
        ours = {n for ep in endpoints for n in (ep.host_if, ep.container_if)}
        # Endpoints of every plugin instance on this host (other driver names) are not ours to
        # judge, nor are their rules: only what no instance records is a leftover.
        recorded = self._switch.list_endpoints()
        anyones = {n for ep in recorded for n in (ep.host_if, ep.container_if)}
        for name in self._links.names((HOST_VETH_PREFIX, CONTAINER_VETH_PREFIX)):
            if name not in ours and name not in anyones:
                out.append(
                    Finding(
                        f"link:{name}",
                        f"veth {name} belongs to no endpoint; deleting it",
                        partial(self._links.delete_link, name),
                        removal=True,
                    )
                )
        known_ids = {ep.endpoint_id for ep in endpoints}
        for ep in recorded:
            if ep.driver == driver.name and ep.endpoint_id not in known_ids:
                out.append(
                    Finding(
                        f"recorded:{ep.endpoint_id}",
                        f"port {ep.host_if} of endpoint "
                        f"{ep.endpoint_id[:12]} is recorded in OVSDB but no longer served; "
                        "deleting it",
                        partial(driver.collect_recorded, ep),
                        removal=True,
                    )
                )
        used = {n.bridge for n in networks}
        for bridge in self._switch.empty_bridges():
            if bridge not in used:
                out.append(
                    Finding(
                        f"bridge:{bridge}",
                        f"bridge {bridge} is ours but carries no network; deleting it",
                        partial(self._switch.delete_bridge, bridge),
                        removal=True,
                    )
                )
        known = {
            n.network_id[:COMMENT_ID_CHARS] for n in (*networks, *self._switch.list_networks())
        }
        for short in self._firewall.tagged_networks() - known:
            out.append(
                Finding(
                    f"rules:{short}",
                    f"iptables rules of unknown network {short}; removing them",
                    partial(self._firewall.remove_tagged, short),
                    removal=True,
                )
            )
        return out

    def _missing_plumbing(self) -> list[Finding]:
        driver = self._driver
        out = []
        endpoints = driver.endpoints()
        for net in driver.networks():
            nid = net.network_id
            repair = partial(driver.repair_network, nid)
            if not driver.has_bridge_record(net):
                out.append(
                    Finding(
                        f"bridge-missing:{nid}",
                        f"bridge {net.bridge} of network {nid[:12]} is "
                        "missing from Open vSwitch; recreating it with its ports",
                        repair,
                        False,
                    )
                )
                continue
            if net.host_gateway:
                have = set(self._links.addresses(net.gateway_port))
                missing = [str(g) for g in net.gateways if g not in have]
                if missing:
                    out.append(
                        Finding(
                            f"address:{nid}",
                            f"gateway port {net.gateway_port} of network "
                            f"{nid[:12]} lacks {', '.join(missing)}; putting it back",
                            repair,
                            False,
                        )
                    )
                if not self._firewall.has_network(net):
                    out.append(
                        Finding(
                            f"firewall:{nid}",
                            f"iptables rules of network {nid[:12]} are "
                            "incomplete; putting them back",
                            repair,
                            False,
                        )
                    )
            if not net.port_security:
                continue
            installed = self._flows.cookies(net.bridge)
            wanted = {ep.cookie: ep for ep in endpoints if ep.network_id == nid}
            for cookie, ep in wanted.items():
                if cookie not in installed:
                    if not self._links.exists(ep.host_if):
                        # No veth (its container stopped, or the host rebooted): no port to
                        # guard and no OpenFlow port number; the endpoint is collected once
                        # Docker no longer has it, or gets its flows when it is plumbed again.
                        continue
                    out.append(
                        Finding(
                            f"flows:{ep.endpoint_id}",
                            f"port security flows of endpoint "
                            f"{ep.endpoint_id[:12]} (port {ep.host_if}) are missing; reinstalling",
                            partial(driver.repair_endpoint, nid, ep.endpoint_id),
                            False,
                        )
                    )
            prefix = network_cookie(nid)
            for cookie in installed:
                if cookie_network(cookie) == prefix and cookie not in wanted:
                    out.append(
                        Finding(
                            f"cookie:{net.bridge}:{cookie:x}",
                            f"flows with cookie {cookie:#x} on "
                            f"bridge {net.bridge} belong to no endpoint; removing them",
                            partial(self._flows.remove_cookie, net.bridge, cookie),
                            True,
                        )
                    )
        return out

    # -- acting on it ----------------------------------------------------------------------

    def run_once(self, *, confirmed: bool = False, grace: float = 0.0) -> list[Finding]:
        """Apply repairs at once; a removal only when it was already found on an earlier pass
        at least `grace` seconds ago (or when `confirmed`). Returns what was acted on."""
        now = time.monotonic()
        findings = self.findings()
        seen = {f.key: self._suspects.get(f.key, now) for f in findings if f.removal}
        due = [
            f
            for f in findings
            if not f.removal
            or confirmed
            or (f.key in self._suspects and now - seen[f.key] >= grace)
        ]
        self._suspects = {k: t for k, t in seen.items() if k not in {f.key for f in due}}
        applied = self._apply(due)
        self.passes += 1
        return applied

    def restore_plumbing(self) -> list[Finding]:
        """Only put back what is missing (addresses, rules, flows); remove nothing."""
        return self._apply(self._missing_plumbing(), removals=False)

    def _apply(self, findings: list[Finding], *, removals: bool = True) -> list[Finding]:
        applied = []
        for f in findings:
            if f.removal and not removals:
                continue
            try:
                f.repair()
            except (BackendError, OSError) as e:
                # OVS or the kernel said no (typically while ovs-vswitchd is still bringing a
                # bridge back): expected, and the next pass tries again, so no traceback.
                LOG.warning("reconcile: could not repair yet: %s: %s", f.message, e)
                continue
            except Exception:
                LOG.exception("reconcile: could not repair: %s", f.message)
                continue
            LOG.info("reconcile: %s", f.message)
            applied.append(f)
        self.actions += len(applied)
        return applied

    def start(
        self,
        *,
        interval: float,
        grace: float,
        restarted: Callable[[], bool] | None = None,
        poll: float = 0.25,
    ) -> None:
        """Reconcile now, again after `grace` (when removals found now may be confirmed), then
        every `interval`; and at once whenever `restarted()` says ovs-vswitchd came back."""

        def loop() -> None:
            next_full = time.monotonic()
            delay = grace
            recovering_until = 0.0
            while not self._stop.is_set():
                try:
                    if restarted is not None and restarted():
                        LOG.info("ovs-vswitchd restarted: putting back addresses and flows")
                        # It recreates internal ports and bridges over a moment; keep checking.
                        recovering_until = time.monotonic() + RECOVERY_WINDOW
                    if time.monotonic() < recovering_until:
                        self.restore_plumbing()
                    if time.monotonic() >= next_full:
                        self.run_once(grace=grace)
                        next_full = time.monotonic() + delay
                        delay = interval
                except (BackendError, OSError) as e:
                    LOG.warning("reconcile pass stopped, tried again shortly: %s", e)
                except Exception:
                    LOG.exception("reconcile pass failed")
                self._stop.wait(poll)

        self._thread = threading.Thread(target=loop, name="reconcile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
