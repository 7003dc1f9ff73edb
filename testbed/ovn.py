"""OVN's two databases as Raft clusters: their names, ports and files, and what
``cluster/status`` says about a member."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OVN_SCHEMAS = Path("/usr/share/ovn")


@dataclass(frozen=True)
class RaftDb:
    """One OVN database (NB or SB) as a Raft cluster across the first hosts."""

    #: Short name, also the daemon's name on a host: "nb" or "sb".
    key: str
    schema_name: str
    #: Files in a host's directory: FILE.db, FILE.sock, FILE.pid, FILE.ctl, FILE.log.
    file: str
    client_port: int
    raft_port: int

    @property
    def schema(self) -> Path:
        return OVN_SCHEMAS / f"ovn-{self.key}.ovsschema"

    def remote(self, ips: list[str]) -> str:
        """The clients' connection string: every member."""
        return ",".join(f"tcp:{ip}:{self.client_port}" for ip in ips)


NB = RaftDb("nb", "OVN_Northbound", "ovnnb_db", 6641, 6643)
SB = RaftDb("sb", "OVN_Southbound", "ovnsb_db", 6642, 6644)


@dataclass(frozen=True)
class MemberStatus:
    """The parts of ``ovs-appctl cluster/status DB`` a test looks at."""

    role: str
    status: str
    #: Lines of the "Servers:" section, one per member this one knows of.
    servers: tuple[str, ...]
    term: int

    @property
    def leader(self) -> bool:
        return self.role == "leader"

    @property
    def member(self) -> bool:
        return self.status == "cluster member"

    @classmethod
    def parse(cls, text: str) -> MemberStatus:
        fields: dict[str, str] = {}
        servers: list[str] = []
        in_servers = False
        for line in text.splitlines():
            if in_servers:
                if line.startswith((" ", "\t")) and line.strip():
                    servers.append(line.strip())
                    continue
                in_servers = False
            key, sep, value = line.partition(":")
            if not sep:
                continue
            if key == "Servers":
                in_servers = True
            fields[key.strip()] = value.strip()
        term = fields.get("Term", "0")
        return cls(
            role=fields.get("Role", ""),
            status=fields.get("Status", ""),
            servers=tuple(servers),
            term=int(term) if term.isdigit() else 0,
        )
