"""Forwarding, isolation and masquerade rules in the plugin's own iptables chains.

Why the iptables command and not a library: Docker programs the same tables through the iptables
command (nft or legacy backend, whichever the host selected), and our ACCEPTs must sit in that same
FORWARD chain to get past the DROP policy Docker sets. python-iptables only speaks the legacy
backend. Arguments are lists built from validated values; no shell is involved.

Layout (filter table):  FORWARD -> OVS-PLUGIN-FORWARD -> OVS-PLUGIN-ISOLATION-1 -> ...-2
                        (nat table):  POSTROUTING -> OVS-PLUGIN-POSTROUTING
Every per-network rule carries the comment "docker-ovs-plugin:<network id>", which is how
remove_network finds exactly the rules a network added.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from docker_ovs_plugin.service.errors import BackendError
from docker_ovs_plugin.service.model import Network

LOG = logging.getLogger(__name__)

FORWARD = "OVS-PLUGIN-FORWARD"
ISOLATION_1 = "OVS-PLUGIN-ISOLATION-1"
ISOLATION_2 = "OVS-PLUGIN-ISOLATION-2"
POSTROUTING = "OVS-PLUGIN-POSTROUTING"
COMMENT_PREFIX = "docker-ovs-plugin"

_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")

Rule = tuple[str, ...]


def network_comment(network_id: str) -> str:
    return f"{COMMENT_PREFIX}:{network_id[:12]}"


def network_rules(network: Network) -> list[tuple[str, str, Rule]]:
    """(table, chain, rule) for one network; the rule ends with its comment match."""
    br = network.bridge
    tag = ("-m", "comment", "--comment", network_comment(network.network_id))
    rules: list[tuple[str, str, Rule]] = [
        # Isolation first: traffic leaving this bridge for another ovs bridge is dropped.
        ("filter", ISOLATION_1, ("-i", br, "!", "-o", br, "-j", ISOLATION_2, *tag)),
        ("filter", ISOLATION_2, ("-o", br, "-j", "DROP", *tag)),
        ("filter", FORWARD, ("-i", br, "-j", "ACCEPT", *tag)),
        (
            "filter",
            FORWARD,
            ("-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT", *tag),
        ),
    ]
    for subnet in network.ipv4:
        pool = str(subnet.pool)
        rules.append(("nat", POSTROUTING, ("-s", pool, "!", "-o", br, "-j", "MASQUERADE", *tag)))
    return rules


class IptablesFirewall:
    def __init__(self, binary: str = "iptables", timeout: float = 10.0) -> None:
        self._binary = binary
        self._timeout = timeout

    def _run(self, table: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self._binary, "-w", "5", "-t", table, *args]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self._timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendError(f"iptables did not run: {e}") from e
        if check and result.returncode != 0:
            raise BackendError(
                f"iptables {' '.join(args)} failed: {result.stderr.strip() or result.returncode}"
            )
        return result

    def _exists(self, table: str, chain: str, rule: Sequence[str]) -> bool:
        return self._run(table, "-C", chain, *rule, check=False).returncode == 0

    def _ensure_chain(self, table: str, chain: str) -> None:
        if self._run(table, "-S", chain, check=False).returncode != 0:
            self._run(table, "-N", chain)

    def _ensure_jump(self, table: str, chain: str, target: str) -> None:
        if not self._exists(table, chain, ("-j", target)):
            self._run(table, "-I", chain, "1", "-j", target)

    def setup(self) -> None:
        """The shared chains and the jumps into them; rules of networks are added later."""
        for chain in (FORWARD, ISOLATION_1, ISOLATION_2):
            self._ensure_chain("filter", chain)
        self._ensure_chain("nat", POSTROUTING)
        self._ensure_jump("filter", FORWARD, ISOLATION_1)
        self._ensure_jump("filter", "FORWARD", FORWARD)
        self._ensure_jump("nat", "POSTROUTING", POSTROUTING)

    def add_network(self, network: Network) -> None:
        self.setup()  # cheap checks; survives someone flushing the tables meanwhile
        for table, chain, rule in network_rules(network):
            if not self._exists(table, chain, rule):
                self._run(table, "-A", chain, *rule)
        if network.ipv4:
            _enable_ip_forward()

    def remove_network(self, network: Network) -> None:
        comment = network_comment(network.network_id)
        for table, chain in (
            ("filter", ISOLATION_1),
            ("filter", ISOLATION_2),
            ("filter", FORWARD),
            ("nat", POSTROUTING),
        ):
            listing = self._run(table, "-S", chain, check=False)
            if listing.returncode != 0:
                continue  # chain absent: nothing of ours there
            for line in listing.stdout.splitlines():
                words = shlex.split(line)  # parses iptables' own output; nothing is executed
                if words[:2] == ["-A", chain] and comment in words:
                    self._run(table, "-D", chain, *words[2:])


def _enable_ip_forward() -> None:
    try:
        if _IP_FORWARD.read_text().strip() != "1":
            _IP_FORWARD.write_text("1\n")
            LOG.info("enabled IPv4 forwarding")
    except OSError as e:
        raise BackendError(f"cannot enable IPv4 forwarding: {e}") from e
