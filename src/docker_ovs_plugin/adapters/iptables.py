"""Forwarding, isolation, masquerade and published ports in the plugin's own iptables chains.

Why the iptables command and not a library: Docker programs the same tables through the iptables
command (nft or legacy backend, whichever the host selected), and our ACCEPTs must sit in that same
FORWARD chain to get past the DROP policy Docker sets. python-iptables only speaks the legacy
backend. Arguments are lists built from validated values; no shell is involved.

Layout (filter):  FORWARD -> OVS-PLUGIN-FORWARD -> OVS-PLUGIN-ISOLATION-1 -> ...-2
         (nat):   POSTROUTING -> OVS-PLUGIN-POSTROUTING;  PREROUTING, OUTPUT -> OVS-PLUGIN-DNAT
         (raw):   PREROUTING -> OVS-PLUGIN-PREROUTING
Published ports answer on the host's loopback too (`curl localhost:PORT`), as Docker's do: the
OUTPUT jump includes 127.0.0.0/8, the gateway port has route_localnet so that DNATed packets
from 127.0.0.1 may leave through it, and they are masqueraded to the gateway's address. With
route_localnet, the kernel would also accept packets for 127.0.0.0/8 arriving from containers,
reaching the host's loopback services: the raw rule of each network drops those first.
IPv6 networks get the same filter chains through ip6tables, and in nat mode the masquerade of
their subnets as Docker's bridge does since 27 (published ports stay IPv4).
Every per-network rule carries the comment "docker-ovs-plugin:<network id>", every per-endpoint
rule "docker-ovs-plugin:<network id>:<endpoint id>", which is how rules are found for removal.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from docker_ovs_plugin.contract import (
    CHAIN_DNAT,
    CHAIN_FORWARD,
    CHAIN_ISOLATION_1,
    CHAIN_ISOLATION_2,
    CHAIN_POSTROUTING,
    CHAIN_RAW_PREROUTING,
    COMMENT_PREFIX,
    comment_network,
    endpoint_comment,
    network_comment,
)
from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import Endpoint, Mode, Network

LOG = logging.getLogger(__name__)

LOOPBACK = "127.0.0.0/8"
DOCKER_USER_JUMP = "-A FORWARD -j DOCKER-USER"  # as iptables -S prints Docker's jump
_OUR_JUMP = f"-A FORWARD -j {CHAIN_FORWARD}"

_FILTER_CHAINS = (CHAIN_ISOLATION_1, CHAIN_ISOLATION_2, CHAIN_FORWARD)
_FORWARDING = {
    4: Path("/proc/sys/net/ipv4/ip_forward"),
    6: Path("/proc/sys/net/ipv6/conf/all/forwarding"),
}

Rule = tuple[str, ...]
TableRule = tuple[str, str, Rule]  # (table, chain, rule)


def _tag(comment: str) -> Rule:
    return ("-m", "comment", "--comment", comment)


def network_rules(network: Network, family: int) -> list[TableRule]:
    """The rules of one network for one IP family; each ends with its comment match."""
    gw = network.gateway_port
    tag = _tag(network_comment(network.network_id))
    rules: list[TableRule] = [
        # Isolation first: traffic leaving this network for another ovs network is dropped.
        ("filter", CHAIN_ISOLATION_1, ("-i", gw, "!", "-o", gw, "-j", CHAIN_ISOLATION_2, *tag)),
        ("filter", CHAIN_ISOLATION_2, ("-o", gw, "-j", "DROP", *tag)),
        ("filter", CHAIN_FORWARD, ("-i", gw, "-j", "ACCEPT", *tag)),
    ]
    if network.mode is Mode.ROUTED:
        rules.append(("filter", CHAIN_FORWARD, ("-o", gw, "-j", "ACCEPT", *tag)))
    else:
        rules.append(
            (
                "filter",
                CHAIN_FORWARD,
                (
                    "-o",
                    gw,
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "RELATED,ESTABLISHED",
                    "-j",
                    "ACCEPT",
                    *tag,
                ),
            )
        )
    if family == 4 and network.ipv4:
        rules += [
            # Published ports reached from the host's loopback (see the module's docstring).
            ("nat", CHAIN_POSTROUTING, ("-s", LOOPBACK, "-o", gw, "-j", "MASQUERADE", *tag)),
            ("raw", CHAIN_RAW_PREROUTING, ("-i", gw, "-d", LOOPBACK, "-j", "DROP", *tag)),
        ]
    if network.masquerade:
        # IPv6 too, as Docker's bridge does since 27 (routed mode: neither).
        for subnet in network.ipv4 if family == 4 else network.ipv6:
            pool = str(subnet.pool)
            rules.append(
                ("nat", CHAIN_POSTROUTING, ("-s", pool, "!", "-o", gw, "-j", "MASQUERADE", *tag))
            )
    return rules


def port_mapping_rules(network: Network, endpoint: Endpoint) -> list[TableRule]:
    """DNAT and forward rules of an endpoint's published ports (IPv4)."""
    if endpoint.ipv4 is None:
        return []
    tag = _tag(endpoint_comment(network.network_id, endpoint.endpoint_id))
    cip = str(endpoint.ipv4.ip)
    rules: list[TableRule] = []
    for m in endpoint.port_mappings:
        dest = ("-d", str(m.host_ip)) if m.host_ip else ()
        rules.append(
            (
                "nat",
                CHAIN_DNAT,
                (
                    "-p",
                    m.proto,
                    *dest,
                    "--dport",
                    str(m.host_port),
                    "-j",
                    "DNAT",
                    "--to-destination",
                    f"{cip}:{m.container_port}",
                    *tag,
                ),
            )
        )
        rules.append(
            (
                "filter",
                CHAIN_FORWARD,
                (
                    "-d",
                    f"{cip}/32",
                    "-o",
                    network.gateway_port,
                    "-p",
                    m.proto,
                    "--dport",
                    str(m.container_port),
                    "-j",
                    "ACCEPT",
                    *tag,
                ),
            )
        )
    return rules


class IptablesFirewall:
    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout

    def _run(
        self, family: int, table: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        binary = "iptables" if family == 4 else "ip6tables"
        argv = [binary, "-w", "5", "-t", table, *args]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self._timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendError(f"{binary} did not run: {e}") from e
        if check and result.returncode != 0:
            raise BackendError(
                f"{binary} -t {table} {' '.join(args)} failed: "
                f"{result.stderr.strip() or result.returncode}"
            )
        return result

    def _exists(self, family: int, table: str, chain: str, rule: Sequence[str]) -> bool:
        return self._run(family, table, "-C", chain, *rule, check=False).returncode == 0

    def _ensure_chain(self, family: int, table: str, chain: str) -> None:
        if self._run(family, table, "-S", chain, check=False).returncode != 0:
            self._run(family, table, "-N", chain)

    def _ensure_jump(
        self, family: int, table: str, chain: str, *rule: str, replaces: Sequence[str] = ()
    ) -> None:
        if not self._exists(family, table, chain, rule):
            # An earlier version's form of this jump goes when this one comes.
            while replaces and self._exists(family, table, chain, replaces):
                self._run(family, table, "-D", chain, *replaces)
            self._run(family, table, "-I", chain, "1", *rule)

    def _forward_rules(self, family: int) -> list[str]:
        listing = self._run(family, "filter", "-S", "FORWARD").stdout.splitlines()
        return [line.strip() for line in listing if line.startswith("-A FORWARD ")]

    def _forward_jump_in_place(self, family: int) -> bool:
        current = self._forward_rules(family)
        user = current.index(DOCKER_USER_JUMP) if DOCKER_USER_JUMP in current else -1
        return _OUR_JUMP in current and current.index(_OUR_JUMP) > user

    def _ensure_forward_jump(self, family: int) -> None:
        """FORWARD -j OVS-PLUGIN-FORWARD right below Docker's jump to DOCKER-USER, so that an
        administrator's rules there apply to ovs networks as to Docker's own (Docker moves its
        jump back to the top whenever it arranges FORWARD; here we only never go above it)."""
        if self._forward_jump_in_place(family):
            return
        if _OUR_JUMP in self._forward_rules(family):
            # Above DOCKER-USER (an earlier version inserted at the top): move it below.
            self._run(family, "filter", "-D", "FORWARD", "-j", CHAIN_FORWARD)
        current = self._forward_rules(family)
        user = current.index(DOCKER_USER_JUMP) if DOCKER_USER_JUMP in current else -1
        # Rule numbers start at 1: insert after DOCKER-USER's rule, or first when it is absent.
        self._run(family, "filter", "-I", "FORWARD", str(user + 2), "-j", CHAIN_FORWARD)

    def setup(self, family: int = 4) -> None:
        """The shared chains and the jumps into them; rules of networks are added later."""
        for chain in _FILTER_CHAINS:
            self._ensure_chain(family, "filter", chain)
        self._ensure_jump(family, "filter", CHAIN_FORWARD, "-j", CHAIN_ISOLATION_1)
        # Published ports are reachable from other ovs networks too: DNATed traffic skips
        # isolation, and only the forward rule of that very port accepts it.
        dnated = ("-m", "conntrack", "--ctstate", "DNAT")
        self._ensure_jump(family, "filter", CHAIN_ISOLATION_1, *dnated, "-j", "RETURN")
        self._ensure_forward_jump(family)
        self._ensure_chain(family, "nat", CHAIN_POSTROUTING)
        self._ensure_jump(family, "nat", "POSTROUTING", "-j", CHAIN_POSTROUTING)
        if family == 4:
            self._ensure_chain(family, "nat", CHAIN_DNAT)
            local = ("-m", "addrtype", "--dst-type", "LOCAL")
            self._ensure_jump(family, "nat", "PREROUTING", *local, "-j", CHAIN_DNAT)
            # Earlier versions left loopback out of the OUTPUT jump.
            self._ensure_jump(
                family,
                "nat",
                "OUTPUT",
                *local,
                "-j",
                CHAIN_DNAT,
                replaces=("!", "-d", LOOPBACK, *local, "-j", CHAIN_DNAT),
            )
            self._ensure_chain(family, "raw", CHAIN_RAW_PREROUTING)
            self._ensure_jump(family, "raw", "PREROUTING", "-j", CHAIN_RAW_PREROUTING)

    def _ensure_rules(self, family: int, rules: Sequence[TableRule]) -> None:
        for table, chain, rule in rules:
            if not self._exists(family, table, chain, rule):
                self._run(family, table, "-A", chain, *rule)

    def _families(self, network: Network) -> list[int]:
        return [4] + ([6] if network.ipv6 else [])

    def add_network(self, network: Network) -> None:
        for family in self._families(network):
            self.setup(family)  # cheap checks; survives someone flushing the tables meanwhile
            self._ensure_rules(family, network_rules(network, family))
            if (network.ipv4 if family == 4 else network.ipv6) and _enable_forwarding(family):
                # As Docker does when it turns forwarding on: the host must not become a
                # router for every other interface (whose FORWARD policy was ACCEPT).
                self._run(family, "filter", "-P", "FORWARD", "DROP")
                LOG.warning(
                    "enabled IPv%d forwarding and set the FORWARD policy to DROP (as Docker "
                    "does): traffic the host forwarded between other interfaces needs rules",
                    family,
                )

    def remove_network(self, network: Network) -> None:
        for family in (4, 6):
            self._remove_tagged(family, network_comment(network.network_id), prefix=True)

    def set_port_mappings(self, network: Network, endpoint: Endpoint) -> None:
        comment = endpoint_comment(network.network_id, endpoint.endpoint_id)
        wanted = port_mapping_rules(network, endpoint)
        self._remove_tagged(4, comment, prefix=False)
        if wanted:
            self.setup(4)
            self._ensure_rules(4, wanted)

    def has_network(self, network: Network) -> bool:
        # The jump into our chains too: a firewall reload or `iptables -F FORWARD` takes it
        # away while the network's rules stay.
        return all(
            self._forward_jump_in_place(family)
            and all(
                self._exists(family, table, chain, rule)
                for table, chain, rule in network_rules(network, family)
            )
            for family in self._families(network)
        )

    def tagged_networks(self) -> set[str]:
        found: set[str] = set()
        for family in (4, 6):
            for _, _, comment in self._tagged_rules(family):
                short_id = comment_network(comment)
                if short_id is not None:
                    found.add(short_id)
        return found

    def remove_tagged(self, short_id: str) -> None:
        for family in (4, 6):
            self._remove_tagged(family, f"{COMMENT_PREFIX}:{short_id}", prefix=True)

    def _tagged_rules(self, family: int) -> list[tuple[str, list[str], str]]:
        """(table, rule words, comment) of every commented rule in our chains."""
        chains = [("filter", c) for c in _FILTER_CHAINS] + [("nat", CHAIN_POSTROUTING)]
        if family == 4:
            chains += [("nat", CHAIN_DNAT), ("raw", CHAIN_RAW_PREROUTING)]
        found = []
        for table, chain in chains:
            listing = self._run(family, table, "-S", chain, check=False)
            if listing.returncode != 0:
                continue  # chain absent: nothing of ours there
            for line in listing.stdout.splitlines():
                words = shlex.split(line)  # parses iptables' own output; nothing is executed
                if words[:2] == ["-A", chain] and "--comment" in words:
                    found.append((table, words, words[words.index("--comment") + 1]))
        return found

    def _remove_tagged(self, family: int, comment: str, *, prefix: bool) -> None:
        """Delete the rules tagged `comment` (and, with prefix, those tagged `comment:*`)."""
        for table, words, found in self._tagged_rules(family):
            if found == comment or (prefix and found.startswith(comment + ":")):
                self._run(family, table, "-D", *words[1:])


def _enable_forwarding(family: int) -> bool:
    """Turn forwarding on; whether it was off."""
    path = _FORWARDING[family]
    try:
        if path.read_text().strip() == "1":
            return False
        path.write_text("1\n")
        return True
    except OSError as e:
        raise BackendError(f"cannot enable IPv{family} forwarding: {e}") from e
