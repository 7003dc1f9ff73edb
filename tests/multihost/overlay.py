"""Overlay networks of the session cluster for the tests: create one on a host, run containers
on any host, traffic between them, what the northbound database holds of it, and the removal
of everything (containers on every host, the network everywhere) even when a test fails."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from docker_ovs_plugin import contract
from testbed.commands import CommandError, run, wait_until
from testbed.docker import Container, DockerEnv, Network, container_pid, network_ipam
from testbed.multihost import Cluster, ClusterHost

from .support import DRIVER, OURS, SUITE

#: Geneve over the 1500-byte underlay.
OVERLAY_MTU = 1442
#: How long a network created on one host may take to appear in (or leave) the others.
PROPAGATION = 2.0
#: `docker network rm` succeeded on one host: gone from every host and NB within this.
REMOVAL = 10.0


def switch_of(subnet: str) -> str:
    return contract.switch_name(subnet)


@dataclass
class Member:
    """A container of an overlay network on host ``n``."""

    n: int
    env: DockerEnv
    c: Container

    @property
    def name(self) -> str:
        return self.c.name

    @property
    def ip(self) -> str:
        return self.c.ip

    def exec(
        self, *argv: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return self.env.exec(self.c, *argv, check=check, timeout=timeout)

    def ping(self, target: str, wait: int = 1) -> bool:
        return self.env.ping(self.c, target, wait=wait)

    def first_reply(self, target: str, timeout: float = 20.0) -> float:
        """Seconds until ``target`` first answers (bounded: the first packets may be lost
        while the other chassis installs the new port's flows)."""
        started = time.monotonic()
        try:
            wait_until(lambda: self.ping(target), timeout=timeout, interval=0.05,
                       what=f"{self.name} on h{self.n} -> {target} to answer")  # fmt: skip
        except Exception as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None
        return time.monotonic() - started

    def pid(self) -> int:
        return container_pid(self.env.host, self.name)

    def in_netns(self, *argv: str) -> list[str]:
        """``argv`` run by this machine in the container's network namespace (for tools the
        busybox image lacks)."""
        return ["nsenter", "-t", str(self.pid()), "-n", "--", *argv]

    def diagnostics(self) -> str:
        parts = []
        for argv in (("ip", "addr"), ("ip", "route"), ("ip", "neigh")):
            proc = self.exec(*argv, check=False)
            parts.append(f"[h{self.n} {self.name}] {' '.join(argv)}:\n{proc.stdout}{proc.stderr}")
        proc = self.env.host.ovs_vsctl("show", check=False)
        parts.append(f"[h{self.n}] ovs-vsctl show:\n{proc.stdout}")
        return "\n".join(parts)


def tcp_send(server: Member, client: Member, port: int) -> None:
    """A unique line over TCP from ``client`` to a busybox nc listener in ``server`` (whose
    stdin stays open: busybox nc half-closes when its stdin ends)."""
    payload = f"ovsmh-{uuid.uuid4().hex[:12]}"
    recv = f"/tmp/tcp-{port}.recv"
    server.exec("rm", "-f", recv)
    server.env.exec_detached(server.c, "sh", "-c", f"sleep 60 | nc -l -p {port} > {recv}")
    try:
        wait_until(lambda: f":{port} " in server.exec("netstat", "-ltn").stdout, timeout=10,
                   what=f"nc to listen on {server.name}:{port}")  # fmt: skip
        sent = client.exec(
            "sh", "-c", f"echo {payload} | nc -w 3 {server.ip} {port}", check=False, timeout=20
        )
        assert sent.returncode == 0, f"TCP {client.name} -> {server.ip}:{port}: {sent.stderr}"
        wait_until(lambda: payload in server.exec("cat", recv).stdout, timeout=10,
                   what=f"{client.name}'s payload in {server.name}")  # fmt: skip
    finally:
        server.exec("killall", "nc", check=False)


UDP_RECV = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])))\n"
    "s.settimeout(float(sys.argv[2]))\n"
    "print('ready',flush=True)\n"
    "d,a=s.recvfrom(2048)\n"
    "print(d.decode(),a[0],flush=True)\n"
)
UDP_SEND = (
    "import socket,sys,time\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "for _ in range(int(sys.argv[4])):\n"
    "    s.sendto(sys.argv[3].encode(),(sys.argv[1],int(sys.argv[2])))\n"
    "    time.sleep(0.1)\n"
)


def udp_send(server: Member, client: Member, port: int) -> str:
    """UDP datagrams from ``client``'s network namespace to ``server``'s address, received by a
    socket in ``server``'s namespace (python3 through nsenter: busybox nc has no -u here).
    Returns what the receiver printed: the payload and the source address."""
    payload = f"ovsmh-udp-{uuid.uuid4().hex[:8]}"
    py = "python3"
    recv = subprocess.Popen(
        server.in_netns(py, "-c", UDP_RECV, str(port), "10"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert recv.stdout is not None
        assert recv.stdout.readline().strip() == "ready"
        run(client.in_netns(py, "-c", UDP_SEND, server.ip, str(port), payload, "5"), timeout=20)
        out, err = recv.communicate(timeout=15)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.communicate(timeout=5)
    assert out.split() == [payload, client.ip], f"UDP to {server.name}: {out!r} {err!r}"
    return out


@dataclass
class Overlay:
    """An overlay network created on host ``creator`` and the containers the test ran on it."""

    cluster: Cluster
    net: Network
    creator: int
    envs: dict[int, DockerEnv]
    members: list[Member] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.net.name

    @property
    def switch(self) -> str:
        return switch_of(self.net.subnet)

    def run(
        self,
        n: int,
        extra: Sequence[str] = (),
        command: Sequence[str] = ("sleep", "3600"),
        name: str | None = None,
    ) -> Member:
        """A container on host ``n`` (waits for the network to have reached that host)."""
        env = self.envs[n]
        wait_for_network(self.cluster.host(n), self.name, timeout=PROPAGATION * 5)
        try:
            c = env.run_container(self.net, name=name, command=command, extra=extra)
        except CommandError as exc:
            raise CommandError(
                exc.argv, exc.returncode, exc.stdout, f"{exc.stderr}\n{plugin_errors(env)}"
            ) from None
        m = Member(n, env, c)
        self.members.append(m)
        return m

    def run_many(self, per_host: int, hosts: Sequence[int] = (1, 2, 3)) -> list[Member]:
        """``per_host`` containers on each host, all started at once (a thread per `docker
        run`, each host's own docker CLI)."""
        with ThreadPoolExecutor(max_workers=min(24, per_host * len(hosts))) as pool:
            futures = [pool.submit(self.run, n) for n in hosts for _ in range(per_host)]
            return [f.result() for f in futures]

    def remove(self, m: Member) -> None:
        m.env.remove_container(m.c)
        self.members.remove(m)

    def lsps(self) -> list[dict[str, str]]:
        """The northbound Logical_Switch_Ports of this network: name and external_ids."""
        return switch_ports(self.cluster, self.switch)


def plugin_errors(env: DockerEnv, lines: int = 60) -> str:
    """The end of a host's plugin log from its last ERROR or traceback on (when a request
    failed)."""
    plugin = env.plugin
    log = getattr(plugin, "log_path", None)
    if log is None or not log.exists():
        return "(no plugin log)"
    text = log.read_text(errors="replace").splitlines()
    marks = [i for i, ln in enumerate(text) if " ERROR " in ln or ln.startswith("Traceback")]
    start = marks[-1] if marks else max(0, len(text) - 10)
    return "[plugin log]\n" + "\n".join(text[max(0, start - 5) : start + lines])


def switch_ports(cluster: Cluster, switch: str) -> list[dict[str, str]]:
    proc = cluster.nbctl("--format=json", "--columns=name,external_ids", "list",
                         "Logical_Switch_Port")  # fmt: skip
    rows = json.loads(proc.stdout)["data"]
    found = []
    for name, ids in rows:
        entry = dict(ids[1])
        entry["name"] = name
        if name.startswith(f"{switch}-"):
            found.append(entry)
    return found


def switch_exists(cluster: Cluster, switch: str) -> bool:
    out = cluster.nbctl("--bare", "--columns=name", "find", "Logical_Switch", f"name={switch}")
    return bool(out.stdout.split())


def network_on(h: ClusterHost, name: str) -> bool:
    proc = h.host.docker("network", "ls", "-q", "--filter", f"name=^{name}$", check=False)
    return bool(proc.stdout.split())


def wait_for_network(h: ClusterHost, name: str, timeout: float = PROPAGATION) -> None:
    wait_until(lambda: network_on(h, name), timeout=timeout, interval=0.05,
               what=f"network {name} on {h.name}")  # fmt: skip


def overlay_envs(cluster: Cluster) -> dict[int, DockerEnv]:
    return {
        h.n: DockerEnv(h.plugin, SUITE, host=h.host, owned=OURS, driver=DRIVER)
        for h in cluster.hosts
    }


def create_overlay(
    cluster: Cluster, envs: dict[int, DockerEnv], creator: int, subnet: str,
    options: dict[str, str] | None = None,
) -> tuple[Network, subprocess.CompletedProcess[str]]:  # fmt: skip
    """`docker network create -d DRIVER --ipam-driver DRIVER -o ovs.mode=overlay --subnet S`
    on host ``creator``; the result (and the error, if any)."""
    opts = {"ovs.mode": "overlay", **(options or {})}
    env = envs[creator]
    name, proc = env.try_create_network(
        SUITE.unique_name("ov"), subnet=subnet, options=opts, extra=("--ipam-driver", DRIVER)
    )
    if proc.returncode != 0:
        raise CommandError(["docker", "network", "create", name], proc.returncode,
                           proc.stdout, proc.stderr)  # fmt: skip
    got_subnet, gateway = network_ipam(env.host, name)
    net_id = proc.stdout.strip().splitlines()[-1]
    OURS.add(net_id, got_subnet)
    return Network(name=name, id=net_id, bridge="", subnet=got_subnet, gateway=gateway), proc


def gone_everywhere(cluster: Cluster, name: str, switch: str) -> bool:
    """No host lists the network, NB has neither its switch nor a port of it."""
    if any(network_on(h, name) for h in cluster.hosts):
        return False
    return not switch_exists(cluster, switch) and not switch_ports(cluster, switch)


@contextlib.contextmanager
def overlay_network(
    cluster: Cluster, subnet: str, *, creator: int = 1, options: dict[str, str] | None = None
) -> Iterator[Overlay]:
    """An overlay network for one test; afterwards its containers on every host, and the
    network (on every host and in NB), are gone: the test fails otherwise."""
    envs = overlay_envs(cluster)
    ov: Overlay | None = None
    errors: list[str] = []
    try:
        net, _ = create_overlay(cluster, envs, creator, subnet, options)
        ov = Overlay(cluster, net, creator, envs)
        yield ov
    finally:
        # Containers on every host first: the network is removed once none uses it anywhere.
        others = [env for n, env in envs.items() if n != creator]
        with ThreadPoolExecutor(max_workers=len(others)) as pool:
            for found in pool.map(lambda env: env.cleanup(), others):
                errors += found
        errors += envs[creator].cleanup()
        if ov is not None:
            name, switch = ov.name, ov.switch
            try:
                wait_until(lambda: gone_everywhere(cluster, name, switch), timeout=REMOVAL,
                           interval=0.1, what=f"{name} gone from every host and NB")  # fmt: skip
            except Exception as exc:
                errors.append(f"{exc}\n{removal_diagnostics(cluster, name, switch)}")
    assert not errors, "cleanup failed:\n" + "\n".join(errors)


@dataclass
class PingCounts:
    transmitted: int
    received: int
    output: str

    @property
    def lost(self) -> int:
        return self.transmitted - self.received


class BackgroundPing:
    """``count`` pings every ``interval`` s from ``m`` to ``target`` while a test breaks
    something; :meth:`result` waits for the end and parses busybox ping's summary."""

    def __init__(self, m: Member, target: str, count: int, interval: float = 0.1) -> None:
        argv = m.env.host.docker_argv(
            "exec", m.name, "ping", "-c", str(count), "-i", str(interval), "-W", "2", target
        )
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.timeout = count * interval + 30

    def result(self) -> PingCounts:
        try:
            out, _ = self.proc.communicate(timeout=self.timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate(timeout=5)
        for line in out.splitlines():
            if "packets transmitted" in line:
                words = line.split()
                return PingCounts(int(words[0]), int(words[3]), out)
        raise AssertionError(f"no ping summary:\n{out}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=5)


def removal_diagnostics(cluster: Cluster, name: str, switch: str) -> str:
    """Where a network that should be gone still is, and what the plugins logged of it."""
    parts = [f"hosts listing {name}: {[h.name for h in cluster.hosts if network_on(h, name)]}"]
    proc = cluster.nbctl("--if-exists", "get", "Logical_Switch", switch, "external_ids",
                         check=False)  # fmt: skip
    parts.append(f"NB {switch} external_ids: {proc.stdout.strip()} {proc.stderr.strip()}")
    parts.append(f"NB ports: {[p['name'] for p in switch_ports(cluster, switch)]}")
    for h in cluster.hosts:
        log = h.plugin.log_path
        if log is not None and log.exists():
            lines = log.read_text(errors="replace").splitlines()
            hits = [ln for ln in lines if name in ln or switch in ln][-15:]
            parts.append(f"[{h.name} plugin log]\n" + "\n".join(hits))
    return "\n".join(parts)
