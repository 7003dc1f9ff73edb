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
import threading
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
_USER_JUMP = ["-j", "DOCKER-USER"]  # Docker's jump in FORWARD
_OUR_JUMP = ["-j", CHAIN_FORWARD]

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


class _Tables:
    """One family's tables as `iptables-save` printed them: chains and rule lines by table."""

    def __init__(self, dump: str) -> None:
        self.chains: dict[str, set[str]] = {}
        self.rules: dict[str, list[list[str]]] = {}
        table = ""
        for line in dump.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
                self.chains.setdefault(table, set())
                self.rules.setdefault(table, [])
            elif line.startswith(":") and table:
                self.chains[table].add(line[1:].split()[0])
            elif line.startswith("-A ") and table:
                # Parses iptables' own output; nothing is executed.
                self.rules[table].append(shlex.split(line))

    def has_chain(self, table: str, chain: str) -> bool:
        return chain in self.chains.get(table, set())

    def chain_rules(self, table: str, chain: str) -> list[list[str]]:
        """Each rule of the chain as words, without the leading `-A CHAIN`."""
        return [w[2:] for w in self.rules.get(table, []) if w[1] == chain]

    def tagged(self) -> list[tuple[str, list[str], str]]:
        """(table, rule words, comment) of every commented rule in our chains."""
        ours = {
            ("filter", CHAIN_ISOLATION_1),
            ("filter", CHAIN_ISOLATION_2),
            ("filter", CHAIN_FORWARD),
            ("nat", CHAIN_POSTROUTING),
            ("nat", CHAIN_DNAT),
            ("raw", CHAIN_RAW_PREROUTING),
        }
        return [
            (table, words, words[words.index("--comment") + 1])
            for table, lines in self.rules.items()
            for words in lines
            if (table, words[1]) in ours and "--comment" in words
        ]


class _Batch:
    """The rule changes of one request for one family, applied by one `iptables-restore
    --noflush` (one process, one transaction per table) instead of one process per rule."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}

    def add(self, table: str, *words: str) -> None:
        self.lines.setdefault(table, []).append(" ".join(_restore_word(w) for w in words))

    def text(self) -> str:
        return "".join(
            f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
            for table, lines in self.lines.items()
            if lines
        )


def _restore_word(word: str) -> str:
    """A word as iptables-restore reads it: double quotes around one with blanks or quotes."""
    if word and not any(c in word for c in " \t\"'\\"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _same(rule: Sequence[str], words: Sequence[str]) -> bool:
    return list(rule) == list(words)


class IptablesFirewall:
    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        # Requests of different networks run at once; each reads the tables, then writes what
        # is missing. One at a time, or two could both add a missing jump.
        self._lock = threading.Lock()

    def _exec(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendError(f"{argv[0]} did not run: {e}") from e
        return result

    def _run(
        self, family: int, table: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        binary = "iptables" if family == 4 else "ip6tables"
        result = self._exec([binary, "-w", "5", "-t", table, *args])
        if check and result.returncode != 0:
            raise BackendError(
                f"{binary} -t {table} {' '.join(args)} failed: "
                f"{result.stderr.strip() or result.returncode}"
            )
        return result

    def _dump(self, family: int) -> _Tables:
        binary = "iptables-save" if family == 4 else "ip6tables-save"
        result = self._exec([binary])
        if result.returncode != 0:
            raise BackendError(f"{binary} failed: {result.stderr.strip() or result.returncode}")
        return _Tables(result.stdout)

    def _apply(self, family: int, batch: _Batch) -> None:
        text = batch.text()
        if not text:
            return
        binary = "iptables-restore" if family == 4 else "ip6tables-restore"
        result = self._exec([binary, "-w", "5", "--noflush"], stdin=text)
        if result.returncode != 0:
            raise BackendError(
                f"{binary} --noflush failed: {result.stderr.strip() or result.returncode}\n{text}"
            )

    def _exists(self, family: int, table: str, chain: str, rule: Sequence[str]) -> bool:
        return self._run(family, table, "-C", chain, *rule, check=False).returncode == 0

    # -- what a request changes, read from one dump and written in one batch ----------------

    def _setup(self, family: int, tables: _Tables, batch: _Batch) -> None:
        """The shared chains and the jumps into them, where missing."""

        def chain(table: str, name: str) -> None:
            # `iptables -N`, not a `:CHAIN` line in the batch: with --noflush, iptables-restore
            # flushes a declared chain that exists, and another plugin instance on this host
            # may have created it a moment ago. -N refuses instead, which is fine.
            if not tables.has_chain(table, name):
                made = self._run(family, table, "-N", name, check=False)
                if made.returncode != 0 and "exists" not in made.stderr:
                    raise BackendError(f"cannot create chain {name} in {table}: {made.stderr}")

        def jump(table: str, into: str, *rule: str, replaces: Sequence[str] = ()) -> None:
            present = tables.chain_rules(table, into)
            if any(_same(rule, r) for r in present):
                return
            # An earlier version's form of this jump goes when this one comes.
            for r in present:
                if replaces and _same(replaces, r):
                    batch.add(table, "-D", into, *r)
            batch.add(table, "-I", into, "1", *rule)

        for name in _FILTER_CHAINS:
            chain("filter", name)
        jump("filter", CHAIN_FORWARD, "-j", CHAIN_ISOLATION_1)
        # Published ports are reachable from other ovs networks too: DNATed traffic skips
        # isolation, and only the forward rule of that very port accepts it.
        jump("filter", CHAIN_ISOLATION_1, "-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN")
        self._forward_jump(tables, batch)
        chain("nat", CHAIN_POSTROUTING)
        jump("nat", "POSTROUTING", "-j", CHAIN_POSTROUTING)
        if family == 4:
            chain("nat", CHAIN_DNAT)
            local = ("-m", "addrtype", "--dst-type", "LOCAL")
            jump("nat", "PREROUTING", *local, "-j", CHAIN_DNAT)
            # Earlier versions left loopback out of the OUTPUT jump.
            old = ("!", "-d", LOOPBACK, *local, "-j", CHAIN_DNAT)
            jump("nat", "OUTPUT", *local, "-j", CHAIN_DNAT, replaces=old)
            chain("raw", CHAIN_RAW_PREROUTING)
            jump("raw", "PREROUTING", "-j", CHAIN_RAW_PREROUTING)

    @staticmethod
    def _forward_jump_in_place(tables: _Tables) -> bool:
        current = tables.chain_rules("filter", "FORWARD")
        user = current.index(_USER_JUMP) if _USER_JUMP in current else -1
        return _OUR_JUMP in current and current.index(_OUR_JUMP) > user

    def _forward_jump(self, tables: _Tables, batch: _Batch) -> None:
        """FORWARD -j OVS-PLUGIN-FORWARD right below Docker's jump to DOCKER-USER, so that an
        administrator's rules there apply to ovs networks as to Docker's own (Docker moves its
        jump back to the top whenever it arranges FORWARD; here we only never go above it)."""
        if self._forward_jump_in_place(tables):
            return
        current = tables.chain_rules("filter", "FORWARD")
        if _OUR_JUMP in current:
            # Above DOCKER-USER (an earlier version inserted at the top): move it below.
            batch.add("filter", "-D", "FORWARD", *_OUR_JUMP)
            current = [r for r in current if r != _OUR_JUMP]
        user = current.index(_USER_JUMP) if _USER_JUMP in current else -1
        # Rule numbers start at 1: insert after DOCKER-USER's rule, or first when it is absent.
        batch.add("filter", "-I", "FORWARD", str(user + 2), *_OUR_JUMP)

    @staticmethod
    def _untag(tables: _Tables, batch: _Batch, comment: str, *, prefix: bool) -> None:
        """Delete the rules tagged `comment` (and, with prefix, those tagged `comment:*`)."""
        for table, words, found in tables.tagged():
            if found == comment or (prefix and found.startswith(comment + ":")):
                batch.add(table, "-D", *words[1:])

    @staticmethod
    def _append(batch: _Batch, rules: Sequence[TableRule]) -> None:
        for table, chain, rule in rules:
            batch.add(table, "-A", chain, *rule)

    def _families(self, network: Network) -> list[int]:
        return [4] + ([6] if network.ipv6 else [])

    # -- the port -------------------------------------------------------------------------

    def setup(self, family: int = 4) -> None:
        """The shared chains and the jumps into them; rules of networks are added later."""
        with self._lock:
            batch = _Batch()
            self._setup(family, self._dump(family), batch)
            self._apply(family, batch)

    def add_network(self, network: Network) -> None:
        with self._lock:
            self._add_network(network)

    def _add_network(self, network: Network) -> None:
        for family in self._families(network):
            tables = self._dump(family)
            batch = _Batch()
            self._setup(family, tables, batch)  # survives someone flushing the tables
            wanted = network_rules(network, family)
            comment = network_comment(network.network_id)
            have = [(t, w[1]) for t, w, c in tables.tagged() if c == comment]
            if sorted(have) != sorted((t, c) for t, c, _ in wanted):
                # Some are missing (or were changed): put exactly the wanted ones in place.
                self._untag(tables, batch, comment, prefix=False)
                self._append(batch, wanted)
            self._apply(family, batch)
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
        with self._lock:
            tables = self._dump(4)
            batch = _Batch()
            self._untag(tables, batch, comment, prefix=False)
            if wanted:
                self._setup(4, tables, batch)
                self._append(batch, wanted)
            self._apply(4, batch)

    def has_network(self, network: Network) -> bool:
        # Exact checks (the background reconciler's): each rule as it must be, and the jump
        # into our chains, which a firewall reload or `iptables -F FORWARD` takes away while
        # the network's rules stay.
        return all(
            self._forward_jump_in_place(self._dump(family))
            and all(
                self._exists(family, table, chain, rule)
                for table, chain, rule in network_rules(network, family)
            )
            for family in self._families(network)
        )

    def tagged_networks(self) -> set[str]:
        found: set[str] = set()
        for family in (4, 6):
            for _, _, comment in self._dump(family).tagged():
                short_id = comment_network(comment)
                if short_id is not None:
                    found.add(short_id)
        return found

    def remove_tagged(self, short_id: str) -> None:
        for family in (4, 6):
            self._remove_tagged(family, f"{COMMENT_PREFIX}:{short_id}", prefix=True)

    def _remove_tagged(self, family: int, comment: str, *, prefix: bool) -> None:
        with self._lock:
            batch = _Batch()
            self._untag(self._dump(family), batch, comment, prefix=prefix)
            self._apply(family, batch)


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
