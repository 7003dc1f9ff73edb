"""A network namespace standing in for a host outside the container networks, with a TCP
server that logs who connected (to see masquerading at work)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from testbed.commands import wait_until
from testbed.host import Host
from testbed.suite import Suite

OUTSIDE_HOST_IP = "198.51.100.1"
OUTSIDE_IP = "198.51.100.2"
OUTSIDE_PREFIXLEN = 24
OUTSIDE_TCP_PORT = 7070

_OUTSIDE_SERVER = textwrap.dedent(
    """
    import socket, sys, threading, time

    addr, port, log_path, ready_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    lock = threading.Lock()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(16)
    srv.settimeout(1.0)
    open(ready_path, "w").close()

    def handle(conn, peer):
        with conn:
            conn.settimeout(5.0)
            data = b""
            try:
                while b"\\n" not in data and len(data) < 4096:
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            line = data.decode(errors="replace").strip()
            with lock, open(log_path, "a") as log:
                log.write(f"{peer[0]} {line}\\n")
            try:
                conn.sendall(f"OUTSIDE {line}\\n".encode())
            except OSError:
                pass

    deadline = time.monotonic() + 3 * 3600  # never outlive a test session by much
    while time.monotonic() < deadline:
        try:
            conn, peer = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=handle, args=(conn, peer), daemon=True).start()
    """
)


@dataclass
class OutsideHost:
    """The "outside host" namespace, linked by a veth pair to ``host``.

    It only has its connected 198.51.100.0/24: it has no route back to any container
    subnet, so a container can only reach it through the plugin's masquerading.
    """

    workdir: Path
    host: Host
    netns: str
    host_if: str
    ns_if: str
    host_ip: str = OUTSIDE_HOST_IP
    ip: str = OUTSIDE_IP
    tcp_port: int = OUTSIDE_TCP_PORT
    server: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_suite(cls, suite: Suite, host: Host, workdir: Path) -> OutsideHost:
        """Namespace ``PREFIX-out``, linked by ``PREFIX-h`` (host side) to ``PREFIX-n``."""
        p = suite.prefix
        return cls(workdir, host, netns=f"{p}-out", host_if=f"{p}-h", ns_if=f"{p}-n")

    @property
    def log_path(self) -> Path:
        return self.workdir / "outside-tcp.log"

    def ns(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.host.run(["ip", "netns", "exec", self.netns, *argv], check=check, timeout=20)

    def remove(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(timeout=5)
            self.server = None
        if self.netns in self.host.run(["ip", "netns", "list"]).stdout.split():
            self.host.run(["ip", "netns", "del", self.netns], check=False)
        if self.host.link_exists(self.host_if):
            self.host.run(["ip", "link", "del", self.host_if], check=False)

    def create(self) -> None:
        run = self.host.run
        self.remove()  # leftovers of an interrupted run
        self.workdir.mkdir(parents=True, exist_ok=True)
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if])
        run(["ip", "link", "set", self.ns_if, "netns", self.netns])
        run(["ip", "addr", "add", f"{self.host_ip}/{OUTSIDE_PREFIXLEN}", "dev", self.host_if])
        run(["ip", "link", "set", self.host_if, "up"])
        self.ns("ip", "link", "set", "lo", "up")
        self.ns("ip", "addr", "add", f"{self.ip}/{OUTSIDE_PREFIXLEN}", "dev", self.ns_if)
        self.ns("ip", "link", "set", self.ns_if, "up")
        script = self.workdir / "outside_server.py"
        script.write_text(_OUTSIDE_SERVER)
        ready = self.workdir / "outside-tcp.ready"
        ready.unlink(missing_ok=True)
        self.log_path.write_text("")
        argv = [sys.executable, str(script), self.ip, str(self.tcp_port), str(self.log_path)]
        with (self.workdir / "outside-server.out").open("wb") as out:
            self.server = subprocess.Popen(
                self.host.argv(["ip", "netns", "exec", self.netns, *argv, str(ready)]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = self.server
        wait_until(
            lambda: ready.exists() or server.poll() is not None,
            timeout=10,
            what="the outside TCP server",
        )
        if server.poll() is not None:
            raise RuntimeError(
                "outside TCP server died: "
                + (self.workdir / "outside-server.out").read_text(errors="replace")
            )

    def routes(self) -> list[str]:
        return self.ns("ip", "-4", "route", "show").stdout.splitlines()

    def connections(self) -> list[tuple[str, str]]:
        """(peer address, first line) of every TCP connection the server got."""
        rows = []
        for line in self.log_path.read_text().splitlines():
            peer, _, payload = line.partition(" ")
            rows.append((peer, payload))
        return rows
