"""Host snapshots (OVS, links, iptables) compared before and after a test, and the bookkeeping
that tells a suite's own objects from those of other users of a shared host."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from testbed.commands import WaitTimeout, wait_until
from testbed.host import Host

_IDENTIFIERS = re.compile(
    r"(?P<ovsbr>\bovsbr-[0-9a-f]{8}\b)"
    r"|(?P<veth>\bov[pc][0-9a-f]{12}\b)"
    r"|(?P<comment>docker-ovs-plugin:[0-9a-f]{12}\b)"
    r"|(?P<dockerbr>\bbr-[0-9a-f]{12}\b)"
    r"|(?P<cidr>\b\d+\.\d+\.\d+\.\d+/\d+\b)"
)


@dataclass
class Ownership:
    """Identifiers of everything a suite created this session (network ids, endpoint ids,
    bridge names, subnets), and the prefix of the names it makes."""

    prefix: str
    ids: set[str] = field(default_factory=set)

    def add(self, *ids: str) -> None:
        self.ids.update(ids)

    def _is_ours(self, kind: str, token: str) -> bool:
        if kind == "ovsbr":
            return any(i.startswith(token.removeprefix("ovsbr-")) for i in self.ids)
        if kind == "veth":
            return any(i.startswith(token[3:]) for i in self.ids)
        if kind == "comment":
            return any(i.startswith(token.split(":", 1)[1]) for i in self.ids)
        if kind == "cidr":
            return token in self.ids
        return False  # br-<id>: docker's own bridge driver, never ours

    def foreign_only(self, item: str) -> bool:
        """True when ``item`` names specific objects and none of them is the suite's."""
        if self.prefix in item:
            return False
        return bool(self._identifiers(item)) and not self.mentions_ours(item)

    def mentions_ours(self, item: str) -> bool:
        """True when ``item`` names the suite's prefix or one of its objects."""
        if self.prefix in item:
            return True
        return any(self._is_ours(kind, token) for kind, token in self._identifiers(item))

    @staticmethod
    def _identifiers(item: str) -> list[tuple[str, str]]:
        return [(m.lastgroup or "", m.group()) for m in _IDENTIFIERS.finditer(item)]


@dataclass(frozen=True)
class HostSnapshot:
    """The host state the plugin may touch, for "leaves nothing behind" comparisons.

    iptables lines are compared as multisets: dockerd itself re-orders some jump rules
    (it keeps ``-j DOCKER-USER`` first in FORWARD whenever a network is created), which
    is not something left behind.
    """

    ovs: tuple[tuple[str, tuple[str, ...]], ...]
    links: tuple[str, ...]
    iptables_filter: tuple[str, ...]
    iptables_nat: tuple[str, ...]
    iptables_raw: tuple[str, ...] = ()

    def differences(
        self, after: HostSnapshot, ignore: Callable[[str], bool] | None = None
    ) -> list[str]:
        """What differs in ``after``, less the lines ``ignore`` says are not ours to judge."""
        diffs: list[str] = []

        def compare(label: str, before: Iterable[str], now: Iterable[str]) -> None:
            b, a = Counter(before), Counter(now)
            diffs.extend(f"{label}: left behind: {item}" for item in sorted((a - b).elements()))
            diffs.extend(f"{label}: went missing: {item}" for item in sorted((b - a).elements()))

        compare("ovs", self.ovs_items(), after.ovs_items())
        compare("link", self.links, after.links)
        compare("iptables filter", self.iptables_filter, after.iptables_filter)
        compare("iptables nat", self.iptables_nat, after.iptables_nat)
        compare("iptables raw", self.iptables_raw, after.iptables_raw)
        if ignore is not None:
            diffs = [d for d in diffs if not ignore(d)]
        return diffs

    def ovs_items(self) -> list[str]:
        items = [f"bridge {br}" for br, _ in self.ovs]
        items += [f"port {br}/{port}" for br, ports in self.ovs for port in ports]
        return items


@dataclass(frozen=True)
class Snapshots:
    """Takes and compares snapshots of one host."""

    host: Host
    #: Kernel link name prefixes that the plugin (or the suite) creates.
    link_prefixes: tuple[str, ...]
    #: Differences that are not the suite's to judge (see :meth:`HostSnapshot.differences`).
    ignore: Callable[[str], bool] | None = None

    def take(self) -> HostSnapshot:
        host = self.host
        ovs: list[tuple[str, tuple[str, ...]]] = []
        for br in sorted(host.ovs_vsctl("list-br").stdout.split()):
            ports = host.ovs_vsctl("list-ports", br, check=False)
            if ports.returncode == 0:  # else the bridge went away meanwhile
                ovs.append((br, tuple(sorted(ports.stdout.split()))))
        links = tuple(sorted(n for n in host.link_names() if n.startswith(self.link_prefixes)))

        def rules(*table: str) -> tuple[str, ...]:
            return tuple(host.run(["iptables", "-w", "10", *table, "-S"]).stdout.splitlines())

        return HostSnapshot(
            ovs=tuple(ovs),
            links=links,
            iptables_filter=rules(),
            iptables_nat=rules("-t", "nat"),
            iptables_raw=rules("-t", "raw"),
        )

    def assert_restored(self, before: HostSnapshot, *, timeout: float = 5.0) -> None:
        """Assert the host is back to ``before`` (waiting briefly for async teardown)."""
        diffs: list[str] = []

        def same() -> bool:
            nonlocal diffs
            diffs = before.differences(self.take(), self.ignore)
            return not diffs

        try:
            wait_until(same, timeout=timeout, interval=0.5, what="host state to be restored")
        except WaitTimeout:
            raise AssertionError(
                "host state differs from the snapshot taken before the test:\n  "
                + "\n  ".join(diffs)
            ) from None
