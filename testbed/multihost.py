"""A cluster of Docker hosts on one machine, for the multi-host suite (tests/multihost).

Everything lives in namespaces and one directory (:class:`Layout`, default prefix ``ovsmh``,
directory /run/docker-ovs-plugin-mh); the machine's own Open vSwitch, Docker, links and
iptables are never touched:

- the underlay: netns ``PREFIX-under`` holding a Linux bridge; each host a netns ``PREFIX-hN``
  whose eth0 is a veth into that bridge (made inside the namespaces), 192.0.2.1N/24;
- per host, in ``DIR/hN``: its own ovsdb-server and ovs-vswitchd (userspace datapath, every
  file in that directory), ``br-phy`` holding eth0 with the underlay address on its internal
  port (userspace tunnels route only through OVS ports), ovn-controller (system-id ``hN``,
  Geneve on the underlay address), its own dockerd and the plugin;
- OVN's NB and SB databases as 3-member Raft clusters on hosts 1-3, ovn-northd on hosts 1 and 2
  (active/standby).

dockerd and the plugin of a host share a persistent mount namespace, bound to the file
``DIR/mountns/hN`` as ``ip netns`` binds network namespaces: in it ``DIR/hN/run-docker`` is
mounted on /run/docker (so dockerd finds that host's plugin socket in /run/docker/plugins, and
the test finds it at :attr:`testbed.host.Host.plugin_dir`) and ``DIR/hN/run-containerd`` on
/run/containerd (the shims' sockets). Both enter it with ``nsenter --mount=FILE --net=NETNS``,
so a restarted dockerd or plugin finds the same mounts.

Fault levers: :meth:`ClusterHost.kill` / ``start`` / ``restart`` of each daemon,
:meth:`Cluster.kill_leader`, :meth:`ClusterHost.lose` / :meth:`ClusterHost.come_back`.

:func:`sweep` removes what a killed earlier run left (processes by pidfile whose command line
names the directory, with their descendants; processes in our namespaces and our cgroups;
mounts under the directory; our namespaces; the directory itself).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from testbed import procs
from testbed.commands import CommandError, run, wait_until
from testbed.host import Host
from testbed.image import build_busybox_image
from testbed.ovn import NB, SB, MemberStatus, RaftDb
from testbed.plugin import PluginProcess

#: Set to a directory: :meth:`Cluster.down` keeps the daemons' logs there.
KEEP_LOGS_ENV = "OVS_MH_KEEP_LOGS"
VSWITCH_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
#: The tools a cluster needs besides the plugin.
TOOLS = (
    "ip",
    "ethtool",
    "nsenter",
    "unshare",
    "findmnt",
    "mount",
    "umount",
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-appctl",
    "ovn-nbctl",
    "ovn-sbctl",
    "ovn-northd",
    "ovn-controller",
    "dockerd",
    "containerd",
)
#: Containers' MTU on a Geneve overlay over a 1500-byte underlay (1442 measured largest).
OVERLAY_MTU = 1400
#: Daemons of a host in start order. The plugin before dockerd, as the systemd unit orders
#: them: a dockerd with networks of the plugin waits ~15 s at start for the plugin to answer.
DAEMONS = (
    "ovsdb-server",
    "ovs-vswitchd",
    "nb",
    "sb",
    "ovn-northd",
    "ovn-controller",
    "plugin",
    "dockerd",
)


def missing_tool() -> str | None:
    """The first tool (or schema) the cluster needs that this machine lacks, or None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    absent = [t for t in TOOLS if shutil.which(t, path=path) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (scripts/setup.sh installs them)"
    for schema in (VSWITCH_SCHEMA, NB.schema, SB.schema):
        if not schema.is_file():
            return f"no schema {schema}"
    return None


@dataclass(frozen=True)
class Layout:
    """Names and paths of one cluster. Nothing outside ``base`` and ``PREFIX-*`` namespaces."""

    prefix: str = "ovsmh"
    base: Path = Path("/run/docker-ovs-plugin-mh")
    size: int = 3
    #: Hosts 1..raft_size carry the NB and SB Raft members.
    raft_size: int = 3
    #: Hosts running ovn-northd (the first is active at start, the other standby).
    northd_hosts: tuple[int, ...] = (1, 2)

    @property
    def under_ns(self) -> str:
        return f"{self.prefix}-under"

    def netns(self, n: int) -> str:
        return f"{self.prefix}-h{n}"

    def ip(self, n: int) -> str:
        return f"192.0.2.{10 + n}"

    def dir(self, n: int) -> Path:
        return self.base / f"h{n}"

    @property
    def mountns_dir(self) -> Path:
        return self.base / "mountns"

    def mountns(self, n: int) -> Path:
        return self.mountns_dir / f"h{n}"

    def under_link(self, n: int) -> str:
        """The underlay bridge's port towards host ``n`` (its peer is the host's eth0)."""
        return f"{self.prefix}-u{n}"

    def cgroup_parent(self, n: int) -> str:
        """Where host ``n``'s dockerd puts its containers' cgroups (to find them if lost)."""
        return f"/{self.prefix}-h{n}"

    @property
    def lock(self) -> Path:
        return self.base.with_name(self.base.name + ".lock")

    @property
    def underlay_cidr(self) -> str:
        return "192.0.2.0/24"

    def raft_ips(self) -> list[str]:
        return [self.ip(n) for n in range(1, self.raft_size + 1)]

    @property
    def nb_remote(self) -> str:
        """The NB cluster's remotes as clients name them (``tcp:IP:6641,...``): what a
        plugin's ``--ovn-nb`` takes."""
        return NB.remote(self.raft_ips())


def _ns_run(netns: str, argv: Sequence[str], *, check: bool = True) -> None:
    run(["ip", "netns", "exec", netns, *argv], check=check, timeout=30)


# --------------------------------------------------------------------------- daemons


class Lever(Protocol):
    """A daemon a test can kill and start again."""

    name: str

    def start(self) -> None: ...

    def kill(self, sig: int = signal.SIGKILL) -> None: ...

    def running(self) -> bool: ...


@dataclass
class Daemon:
    """A daemon of a host, found again by its pidfile (and its command line naming ``marker``).

    ``detached`` daemons fork themselves and return when ready (Open vSwitch's ``--detach``);
    the others (dockerd) are started here in a session of their own, ``ready`` says when they
    serve. ``after_start`` redoes what an init system does after a start (br-phy's address).
    """

    name: str
    argv: Callable[[], list[str]]
    pidfile: Path
    marker: str
    detached: bool = True
    log: Path | None = None
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 60.0
    after_start: Callable[[], None] | None = None
    #: Processes that live and die with it (dockerd's own containerd).
    companions: Callable[[], list[int]] | None = None
    #: Its pids (and the companions') must be gone, not just dead, before it starts again:
    #: dockerd takes a pid in its pidfile that still exists for a live dockerd or containerd,
    #: and init reaps an orphan only a moment after it died (about 2 s on the test machine).
    #: The Open vSwitch daemons lock their pidfiles instead.
    reaped_before_start: bool = False
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def pid(self) -> int | None:
        self._reap()
        return procs.pid_naming(self.pidfile, self.marker)

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start it; a detached daemon is ready when this returns, dockerd maybe not yet."""
        if self.running():
            raise RuntimeError(f"{self.name} already runs (pid {self.pid()})")
        self.starts += 1
        if self.detached:
            run(self.argv(), timeout=60)
            return
        assert self.log is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C to the suite must not kill it mid-teardown
            )

    def wait_ready(self) -> None:
        proc = self.proc

        def up() -> bool:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {proc.returncode}: {self.log_tail()}")
            return self.running() and (self.ready is None or self.ready())

        wait_until(up, timeout=self.ready_timeout, interval=0.05, what=f"{self.name} to serve")
        if self.after_start is not None:
            self.after_start()

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20.0) -> None:
        """Send ``sig`` to it and its companions, wait until all are gone (SIGKILL after
        ``timeout``); no-op if not running."""
        pid = self.pid()
        pids = ([] if pid is None else [pid]) + (self.companions() if self.companions else [])
        left = procs.kill_all(pids, sig, timeout)
        if left:
            procs.kill_all(left, signal.SIGKILL, 5)
        self.close()
        if self.reaped_before_start:
            procs.wait_reaped(pids)

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None

    def close(self) -> None:
        """Reap our child once it was killed: its pid must be gone before a restart (dockerd
        refuses to start while the pid in its pidfile exists, a zombie included). A killed
        thread group's leader turns zombie before its threads are gone, so wait, not poll."""
        if self.proc is not None:
            self.proc.wait(timeout=30)
            self.proc = None

    def log_tail(self, lines: int = 20) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        # Without dockerd's gRPC chatter, which buries the reason it exited.
        text = [
            ln for ln in self.log.read_text(errors="replace").splitlines() if "[core]" not in ln
        ]
        return "\n".join(text[-lines:])


@dataclass
class PluginLever:
    """The host's :class:`PluginProcess` as a :class:`Lever`."""

    plugin: PluginProcess
    name: str = "plugin"

    def start(self) -> None:
        self.plugin.start()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.plugin.stop(sig)

    def running(self) -> bool:
        return self.plugin.running


# --------------------------------------------------------------------------- hosts


class ClusterHost:
    """Host ``n`` of a cluster: its namespaces, directory, daemons and :attr:`host` value."""

    def __init__(
        self, layout: Layout, n: int, *, driver: str, plugin_args: Sequence[str] = ()
    ) -> None:
        self.layout = layout
        self.n = n
        self.name = f"h{n}"
        self.dir = layout.dir(n)
        self.ip = layout.ip(n)
        self.netns = layout.netns(n)
        self.lost = False
        self.host = Host(
            name=self.name,
            docker_host=f"unix://{self.dir / 'docker.sock'}",
            ovsdb=f"unix:{self.dir / 'db.sock'}",
            plugin_dir=self.dir / "run-docker" / "plugins",
            netns=self.netns,
            ovs_rundir=self.dir,
            mountns=layout.mountns(n),
        )
        self.plugin = PluginProcess(
            driver,
            log_dir=self.dir,
            run_dir=self.dir,
            host=self.host,
            single_log=True,
            extra_args=(
                "--ovsdb",
                self.host.ovsdb,
                "--docker-url",
                f"unix://{self.dir / 'docker.sock'}",
                "--datapath-type",
                "netdev",
                *plugin_args,
            ),
        )
        self.daemons = self._levers()

    # -- the daemons' command lines --------------------------------------------------

    def _ovs_daemon(self, name: str, file: str, argv: list[str]) -> Daemon:
        """An OVS/OVN daemon in the host's netns, every file of it in the host's directory."""
        d = self.dir

        def full() -> list[str]:
            return self.host.argv(
                [
                    *argv,
                    f"--pidfile={d / file}.pid",
                    f"--log-file={d / file}.log",
                    "--detach",
                    "--no-chdir",
                    "-vconsole:off",
                ]
            )

        return Daemon(name, full, d / f"{file}.pid", marker=str(d), log=d / f"{file}.log")

    def _levers(self) -> dict[str, Lever]:
        """The host's daemons, in start order."""
        d, layout, ips = self.dir, self.layout, self.layout.raft_ips()
        ovs: dict[str, tuple[str, list[str]]] = {
            "ovsdb-server": (
                "ovsdb-server",
                [
                    "ovsdb-server",
                    str(d / "conf.db"),
                    f"--remote=punix:{d / 'db.sock'}",
                ],
            ),
            "ovs-vswitchd": (
                "ovs-vswitchd",
                ["ovs-vswitchd", self.host.ovsdb],
            ),
        }
        if self.n <= layout.raft_size:
            for db in (NB, SB):
                ovs[db.key] = (
                    db.file,
                    [
                        "ovsdb-server",
                        str(d / f"{db.file}.db"),
                        f"--remote=punix:{d / db.file}.sock",
                        f"--remote=ptcp:{db.client_port}:{self.ip}",
                        f"--unixctl={self.db_ctl(db)}",
                    ],
                )
        if self.n in layout.northd_hosts:
            ovs["ovn-northd"] = (
                "ovn-northd",
                [
                    "ovn-northd",
                    f"--ovnnb-db={NB.remote(ips)}",
                    f"--ovnsb-db={SB.remote(ips)}",
                    f"--unixctl={d / 'ovn-northd.ctl'}",
                ],
            )
        # ovsdb-server, ovs-vswitchd and ovn-controller (OVN 23.03's has no --unixctl) keep
        # their default control sockets, DIR/NAME.PID.ctl (OVS_RUNDIR/OVN_RUNDIR being the
        # host's directory), so `ovs-appctl -t ovs-vswitchd` on the host finds its own.
        ovs["ovn-controller"] = ("ovn-controller", ["ovn-controller", self.host.ovsdb])
        levers: dict[str, Lever] = {
            name: self._ovs_daemon(name, file, argv) for name, (file, argv) in ovs.items()
        }
        vswitchd = levers["ovs-vswitchd"]
        assert isinstance(vswitchd, Daemon)
        vswitchd.after_start = self._configure_underlay
        dockerd = [
            "dockerd",
            "--data-root",
            str(d / "docker-data"),
            "--exec-root",
            str(d / "docker-exec"),
            "-H",
            f"unix://{d / 'docker.sock'}",
            "--pidfile",
            str(d / "dockerd.pid"),
            # Not the machine's /etc/docker/daemon.json.
            "--config-file",
            str(d / "daemon.json"),
            # Its containers' cgroups: how a lost host's containers are found.
            "--cgroup-parent",
            layout.cgroup_parent(self.n),
        ]
        levers["dockerd"] = Daemon(
            "dockerd",
            lambda: self.host.daemon_argv(dockerd),
            d / "dockerd.pid",
            marker=str(d),
            detached=False,
            log=d / "dockerd.log",
            ready=self.docker_answers,
            # A new dockerd times out on the lock its old containerd still holds; the
            # containers' shims stay, as when a real dockerd crashes.
            companions=self._containerd,
            reaped_before_start=True,
        )
        levers["plugin"] = PluginLever(self.plugin)
        return {name: levers[name] for name in DAEMONS if name in levers}

    def _containerd(self) -> list[int]:
        pidfile = self.dir / "docker-exec" / "containerd" / "containerd.pid"
        pid = procs.pid_naming(pidfile, str(self.dir))
        return [] if pid is None else [pid]

    def db_ctl(self, db: RaftDb) -> Path:
        return self.dir / f"{db.file}.ctl"

    def docker_answers(self) -> bool:
        return self.host.docker("info", "--format", "{{.ID}}", check=False).returncode == 0

    # -- levers -------------------------------------------------------------------------

    def lever(self, name: str) -> Lever:
        try:
            return self.daemons[name]
        except KeyError:
            raise KeyError(
                f"{self.name} runs no {name} (it has {', '.join(self.daemons)})"
            ) from None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one daemon (default SIGKILL: a crash) and wait until it is gone."""
        self.lever(name).kill(sig)

    def start(self, name: str) -> None:
        """Start a daemon again, as the host's init system would (same files, same flags)."""
        self.lever(name).start()

    def restart(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.kill(name, sig)
        self.start(name)

    def running(self) -> dict[str, bool]:
        return {name: lever.running() for name, lever in self.daemons.items()}

    def lose(self) -> None:
        """The host is gone: every daemon (and container) killed at once, its link down."""
        self._underlay_link("down")
        self.plugin.stop(signal.SIGKILL)
        pids = {p for p in (self.pid_of(name) for name in self.daemons) if p is not None}
        # dockerd's containerd, its shims and the containers (in the host's cgroups).
        pids |= set(self._docker_pids()) | procs.in_cgroup(self.cgroup)
        pids = procs.with_descendants(pids)
        procs.kill_all(pids, signal.SIGKILL)
        for lever in self.daemons.values():
            if isinstance(lever, Daemon):
                lever.close()
        # dockerd starts again only when these pids are gone (see Daemon.reaped_before_start).
        procs.wait_reaped(pids)
        self.lost = True

    def come_back(self) -> None:
        """The host boots again on the same data directories."""
        self._underlay_link("up")
        for name in DAEMONS:
            if name in self.daemons and not self.daemons[name].running():
                self.daemons[name].start()
        self.lost = False

    def _underlay_link(self, state: str) -> None:
        link = self.layout.under_link(self.n)
        run(["ip", "-n", self.layout.under_ns, "link", "set", link, state], timeout=20)

    @property
    def cgroup(self) -> str:
        return self.layout.cgroup_parent(self.n).lstrip("/")

    def pid_of(self, name: str) -> int | None:
        """The pid of a daemon of the host (None for the plugin: see :attr:`plugin`)."""
        lever = self.daemons[name]
        return lever.pid() if isinstance(lever, Daemon) else None

    def _docker_pids(self) -> list[int]:
        """dockerd's containerd and the shims: pidfiles under its exec root whose process
        names this host's directory (the containers are found by cgroup)."""
        pidfiles = (self.dir / "docker-exec").rglob("*.pid")
        return [p for p in (procs.pid_naming(f, str(self.dir)) for f in pidfiles) if p is not None]

    # -- first bring-up -------------------------------------------------------------------

    def create_ovs(self) -> None:
        """The host's own Open vSwitch, br-phy with eth0, the underlay address on br-phy."""
        run(["ovsdb-tool", "create", str(self.dir / "conf.db"), str(VSWITCH_SCHEMA)])
        self.start("ovsdb-server")
        self.host.ovs_vsctl("--no-wait", "init")
        self.start("ovs-vswitchd")
        self.host.ovs_vsctl(
            "add-br", "br-phy",
            "--", "set", "Bridge", "br-phy", "datapath_type=netdev", "fail_mode=standalone",
            # A fixed MAC: after a restart of ovs-vswitchd the peers' ARP entries still hold.
            f"other_config:hwaddr=02:00:c0:00:02:{10 + self.n:02x}",
            "--", "add-port", "br-phy", "eth0",
        )  # fmt: skip
        self._configure_underlay()

    def _configure_underlay(self) -> None:
        """br-phy's internal port is a tap ovs-vswitchd creates: it and its address are new
        after every start of ovs-vswitchd (ifupdown would configure it; we do)."""
        if not self.host.ovs_bridge_exists("br-phy"):
            return  # first start: create_ovs adds the bridge next
        wait_until(
            lambda: self.host.link_exists("br-phy"), timeout=20, interval=0.05, what="br-phy"
        )
        self.host.run(["ip", "addr", "replace", f"{self.ip}/24", "dev", "br-phy"])
        self.host.run(["ip", "link", "set", "br-phy", "up"])

    def create_raft_member(self, db: RaftDb, first: ClusterHost) -> None:
        path = str(self.dir / f"{db.file}.db")
        if self is first:
            raft = f"tcp:{self.ip}:{db.raft_port}"
            run(["ovsdb-tool", "create-cluster", path, str(db.schema), raft])
        else:
            run(
                [
                    "ovsdb-tool", "join-cluster", path, db.schema_name,
                    f"tcp:{self.ip}:{db.raft_port}", f"tcp:{first.ip}:{db.raft_port}",
                ]
            )  # fmt: skip

    def configure_ovn(self, sb_remote: str) -> None:
        self.host.ovs_vsctl(
            "set", "Open_vSwitch", ".",
            f"external_ids:system-id={self.name}",
            f"external_ids:hostname={self.netns}",
            f'external_ids:ovn-remote="{sb_remote}"',
            "external_ids:ovn-encap-type=geneve",
            f"external_ids:ovn-encap-ip={self.ip}",
            "external_ids:ovn-bridge-datapath-type=netdev",
        )  # fmt: skip

    # -- OVN on this host ------------------------------------------------------------

    def member_status(self, db: RaftDb) -> MemberStatus | None:
        """What this host's member of ``db`` says of itself; None when it does not answer."""
        proc = run(
            ["ovs-appctl", "-t", str(self.db_ctl(db)), "--timeout=3", "cluster/status",
             db.schema_name],
            check=False, timeout=10,
        )  # fmt: skip
        return MemberStatus.parse(proc.stdout) if proc.returncode == 0 else None

    def tunnels(self) -> list[str]:
        if not self.host.ovs_bridge_exists("br-int"):
            return []
        return [p for p in self.host.ovs_ports("br-int") if p.startswith("ovn-")]


# --------------------------------------------------------------------------- the cluster


class Cluster:
    """N Docker hosts with OVN, brought up by :meth:`up` and always removed by :meth:`down`."""

    def __init__(
        self,
        layout: Layout | None = None,
        *,
        driver: str = "ovsmh",
        plugin_args: Sequence[str] = (),
        image: bool = True,
    ) -> None:
        self.layout = layout or Layout()
        self.driver = driver
        self.image = image
        self.hosts = [
            ClusterHost(self.layout, n, driver=driver, plugin_args=plugin_args)
            for n in range(1, self.layout.size + 1)
        ]
        self.up_seconds = 0.0
        #: Seconds of each bring-up step.
        self.phases: dict[str, float] = {}
        self.down_seconds = 0.0
        #: Each plugin's exit status when :meth:`down` stopped it with SIGTERM.
        self.plugin_exits: dict[str, int | None] = {}
        #: What the sweep before bring-up found left by an earlier run.
        self.leftovers: list[str] = []
        self._lock: IO[bytes] | None = None
        self._up = False

    def __enter__(self) -> Cluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def host(self, n: int) -> ClusterHost:
        return self.hosts[n - 1]

    @property
    def is_up(self) -> bool:
        return self._up

    @property
    def raft_hosts(self) -> list[ClusterHost]:
        return self.hosts[: self.layout.raft_size]

    def remote(self, db: RaftDb) -> str:
        return db.remote(self.layout.raft_ips())

    # -- bring-up -------------------------------------------------------------------------

    def up(self) -> float:
        """Bring everything up; returns (and records in :attr:`up_seconds`) the seconds taken."""
        started = time.perf_counter()
        phase = started

        def done(name: str) -> None:
            nonlocal phase
            now = time.perf_counter()
            self.phases[name] = now - phase
            phase = now

        self._take_lock()
        self.leftovers = sweep(self.layout)
        self._up = True
        layout = self.layout
        layout.base.mkdir(parents=True)
        done("sweep")
        self._underlay()
        for h in self.hosts:
            h.dir.mkdir()
            create_mount_namespace(layout, h)
            (h.dir / "daemon.json").write_text("{}\n")
        # dockerd takes longest: its start overlaps the OVS and OVN bring-up.
        dockerds = [self._dockerd(h) for h in self.hosts]
        for dockerd in dockerds:
            dockerd.spawn()
        done("namespaces")
        for h in self.hosts:
            h.create_ovs()
        done("ovs")
        self._central()
        done("raft")
        for h in self.hosts:
            h.configure_ovn(self.remote(SB))
            h.start("ovn-controller")
        # Each host's dockerd, plugin and image at the same time (each waits on its own).
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            for future in [pool.submit(self._docker_host, h) for h in self.hosts]:
                future.result()
        done("docker")
        self.wait_for_chassis()
        done("chassis")
        self.up_seconds = time.perf_counter() - started
        return self.up_seconds

    def _docker_host(self, h: ClusterHost) -> None:
        self._dockerd(h).wait_ready()
        h.start("plugin")
        if self.image:
            build_busybox_image(h.host)

    @staticmethod
    def _dockerd(h: ClusterHost) -> Daemon:
        dockerd = h.lever("dockerd")
        assert isinstance(dockerd, Daemon)
        return dockerd

    def _take_lock(self) -> None:
        """One cluster per directory: a second run would sweep the first's hosts away."""
        if self._lock is not None:
            return
        self.layout.lock.parent.mkdir(parents=True, exist_ok=True)
        lock = self.layout.lock.open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(f"another run holds {self.layout.lock}") from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self.layout.lock.unlink(missing_ok=True)
            self._lock.close()
            self._lock = None

    def _underlay(self) -> None:
        """The underlay bridge and each host's eth0, every link made inside our namespaces."""
        under = self.layout.under_ns
        run(["ip", "netns", "add", under])
        run(["ip", "-n", under, "link", "set", "lo", "up"])
        run(["ip", "-n", under, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", under, "link", "set", "br0", "up"])
        for h in self.hosts:
            port = self.layout.under_link(h.n)
            run(["ip", "netns", "add", h.netns])
            run(["ip", "-n", h.netns, "link", "set", "lo", "up"])
            run(["ip", "-n", under, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", h.netns])  # fmt: skip
            run(["ip", "-n", under, "link", "set", port, "master", "br0", "up"])
            run(["ip", "-n", h.netns, "link", "set", "eth0", "up"])
            # The kernel hands packets to ovs-vswitchd through eth0: without this TCP
            # between the hosts (Raft, OVSDB) would carry bad checksums.
            _ns_run(h.netns, ["ethtool", "-K", "eth0", "tx", "off"])
            _ns_run(under, ["ethtool", "-K", port, "tx", "off"])

    def _central(self) -> None:
        """NB and SB as Raft clusters on the first hosts, then ovn-northd."""
        first = self.raft_hosts[0]
        for db in (NB, SB):
            for h in self.raft_hosts:
                h.create_raft_member(db, first)
        for h in self.raft_hosts:
            h.start("nb")
            h.start("sb")
        for db in (NB, SB):
            self.wait_for_members(db)
        for n in self.layout.northd_hosts:
            self.host(n).start("ovn-northd")

    # -- teardown -------------------------------------------------------------------------

    def down(self) -> float:
        """Stop and remove everything (also after a failed :meth:`up`); idempotent."""
        if not self._up:
            self._release_lock()
            return 0.0
        started = time.perf_counter()
        try:
            self._stop_gracefully()
        finally:
            self._keep_logs()
            sweep(self.layout)
            for h in self.hosts:
                for lever in h.daemons.values():
                    if isinstance(lever, Daemon):
                        lever.close()
            self._up = False
            self._release_lock()
        self.down_seconds = time.perf_counter() - started
        return self.down_seconds

    def _keep_logs(self) -> None:
        """With OVS_MH_KEEP_LOGS=DIR, every host's daemon logs are copied to DIR/<time>/hN
        before the directory goes: the only trace of an intermittent failure."""
        keep = os.environ.get(KEEP_LOGS_ENV)
        if not keep:
            return
        dest = Path(keep) / time.strftime("%Y%m%dT%H%M%S")
        for h in self.hosts:
            for log in h.dir.glob("*.log"):
                (dest / h.name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(log, dest / h.name / log.name)

    def _stop_gracefully(self) -> None:
        """Containers, plugins, dockerds, then the OVN and OVS daemons; SIGKILL after a while."""
        for h in self.hosts:
            if h.docker_answers():
                ids = h.host.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    h.host.docker("rm", "-f", *ids, check=False, timeout=60)
        for h in self.hosts:
            with contextlib.suppress(Exception):
                self.plugin_exits[h.name] = h.plugin.stop(signal.SIGTERM)
        for group in (("dockerd",), ("ovn-controller", "ovn-northd", "nb", "sb"),
                      ("ovs-vswitchd", "ovsdb-server")):  # fmt: skip
            pids = [
                pid
                for h in self.hosts
                for name in group
                if name in h.daemons and (pid := h.pid_of(name)) is not None
            ]
            procs.terminate(pids, timeout=15)

    # -- OVN ------------------------------------------------------------------------------

    def client(self, avoid: Sequence[ClusterHost] = ()) -> ClusterHost:
        """A host to run OVN clients from: not lost, not in ``avoid``."""
        for h in self.hosts:
            if not h.lost and h not in avoid:
                return h
        raise RuntimeError("no host left to run OVN clients from")

    def nbctl(
        self, *args: str, via: ClusterHost | None = None, check: bool = True, timeout: float = 10
    ) -> subprocess.CompletedProcess[str]:
        """ovn-nbctl against the NB cluster, run on ``via`` (default: the first live host)."""
        return self._ctl("ovn-nbctl", db=NB, args=args, via=via, check=check, timeout=timeout)

    def sbctl(
        self, *args: str, via: ClusterHost | None = None, check: bool = True, timeout: float = 10
    ) -> subprocess.CompletedProcess[str]:
        return self._ctl("ovn-sbctl", db=SB, args=args, via=via, check=check, timeout=timeout)

    def _ctl(
        self,
        tool: str,
        *,
        db: RaftDb,
        args: Sequence[str],
        via: ClusterHost | None,
        check: bool,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        host = via or self.client()
        argv = [tool, f"--db={self.remote(db)}", f"--timeout={max(1, int(timeout))}", *args]
        return host.host.run(argv, check=check, timeout=timeout + 10)

    def write_retry(
        self, db: RaftDb, *args: str, via: ClusterHost | None = None, timeout: float = 15.0
    ) -> tuple[int, float]:
        """A write to ``db`` tried again until it succeeds (while a leader is elected, writes
        fail with "not cluster leader" or "connection refused"); (attempts, seconds)."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            tool = "ovn-nbctl" if db is NB else "ovn-sbctl"
            proc = self._ctl(tool, db=db, args=args, via=via, check=False, timeout=3)
            if proc.returncode == 0:
                return attempts, time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise CommandError(proc.args, proc.returncode, proc.stdout, proc.stderr)
            time.sleep(0.1)

    def statuses(self, db: RaftDb) -> dict[str, MemberStatus | None]:
        return {h.name: h.member_status(db) for h in self.raft_hosts}

    def leader(self, db: RaftDb) -> ClusterHost | None:
        """The member that says it leads ``db`` (None during an election)."""
        for h in self.raft_hosts:
            status = h.member_status(db)
            if status is not None and status.leader:
                return h
        return None

    def nb_leader(self) -> ClusterHost | None:
        return self.leader(NB)

    def wait_for_members(self, db: RaftDb, timeout: float = 30.0) -> None:
        def all_members() -> bool:
            return all(s is not None and s.member for s in self.statuses(db).values())

        wait_until(all_members, timeout=timeout, interval=0.05, what=f"{db.key} members")
        wait_until(lambda: self.leader(db) is not None, timeout=timeout, what=f"{db.key} leader")

    def kill_leader(self, db: RaftDb, sig: int = signal.SIGKILL) -> ClusterHost:
        """Kill the member leading ``db``; returns its host (restart: ``host.start(db.key)``)."""
        leader = self.leader(db)
        if leader is None:
            raise RuntimeError(f"{db.key} has no leader")
        leader.kill(db.key, sig)
        return leader

    def diagnostics(self, log_lines: int = 12) -> str:
        """What a failed test reports of OVN's state: each northd's status, logical ports NB
        has and SB has no binding for (northd behind), each ovn-controller's connection and
        the last lines of the OVN daemons' logs. Never raises."""
        out: list[str] = []

        def add(title: str, produce: Callable[[], str]) -> None:
            try:
                text = produce().strip()
            except Exception as e:  # a diagnosis must not hide the failure it explains
                text = f"({type(e).__name__}: {e})"
            out.append(f"-- {title}\n{text}")

        for n in self.layout.northd_hosts:
            h = self.host(n)
            ctl = str(h.dir / "ovn-northd.ctl")
            add(f"{h.name} ovn-northd status",
                lambda ctl=ctl, h=h: h.host.run(["ovn-appctl", "-t", ctl, "status"],  # type: ignore[misc]
                                                check=False, timeout=5).stdout)  # fmt: skip

        def unbound() -> str:
            nb = set(self.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port",
                                check=False).stdout.split())  # fmt: skip
            sb = set(self.sbctl("--bare", "--columns=logical_port", "list", "Port_Binding",
                                check=False).stdout.split())  # fmt: skip
            missing = sorted(nb - sb)
            return f"{len(nb)} in NB, {len(missing)} without a Port_Binding: {missing[:10]}"

        add("logical switch ports without a southbound binding", unbound)
        for h in self.hosts:
            if h.lost:
                continue
            add(f"{h.name} ovn-controller connection",
                lambda h=h: h.host.run(["ovn-appctl", "-t", "ovn-controller", "connection-status"],  # type: ignore[misc]
                                       check=False, timeout=5).stdout)  # fmt: skip
            for name in ("ovn-controller", "ovn-northd"):
                lever = h.daemons.get(name)
                if isinstance(lever, Daemon):
                    add(f"{h.name} {name} log", lambda lever=lever: lever.log_tail(log_lines))  # type: ignore[misc]
        return "\n".join(out)

    def chassis(self) -> list[str]:
        out = self.sbctl("--bare", "--columns=name", "list", "Chassis").stdout
        return sorted(out.split())

    def wait_for_chassis(self, timeout: float = 60.0) -> None:
        """Every host registered in SB, with br-int and a tunnel to each other host."""
        names = sorted(h.name for h in self.hosts)
        wait_until(lambda: self.chassis() == names, timeout=timeout, what=f"chassis {names}")
        for h in self.hosts:
            wait_until(
                lambda h=h: len(h.tunnels()) >= len(self.hosts) - 1,  # type: ignore[misc]
                timeout=timeout,
                what=f"{h.name}'s tunnels",
            )

    # -- hand-made "containers" on a logical switch ------------------------------------

    @contextlib.contextmanager
    def wired_port(
        self, h: ClusterHost, switch: str, port: str, mac: str, ip_cidr: str
    ) -> Iterator[WiredPort]:
        """A netns wired by hand onto logical switch ``switch`` on host ``h`` (what the plugin's
        overlay mode must do by itself); removed on exit."""
        wp = WiredPort(self, h, switch, port, mac, ip_cidr)
        try:
            wp.create()
            yield wp
        finally:
            wp.remove()


@dataclass
class WiredPort:
    """Netns ``PREFIX-PORT`` with eth0 (MAC, address, MTU 1400, TX offload off) whose veth
    peer on the host is an OVS port of br-int bound to logical port ``port``."""

    cluster: Cluster
    on: ClusterHost
    switch: str
    port: str
    mac: str
    ip_cidr: str
    netns: str = field(init=False)
    veth: str = field(init=False)

    def __post_init__(self) -> None:
        prefix = self.cluster.layout.prefix
        self.netns = f"{prefix}-{self.port}"
        self.veth = f"{prefix}-v{self.port}"[:15]

    @property
    def ip(self) -> str:
        return self.ip_cidr.split("/")[0]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 20, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.netns, *argv], check=check, timeout=timeout,
                   input_text=input_text)  # fmt: skip

    def create(self) -> None:
        h = self.on
        run(["ip", "netns", "add", self.netns])
        run(["ip", "-n", h.netns, "link", "add", self.veth, "type", "veth",
             "peer", "name", "eth0", "netns", self.netns])  # fmt: skip
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "address", self.mac,
             "mtu", str(OVERLAY_MTU)])  # fmt: skip
        run(["ip", "-n", self.netns, "addr", "add", self.ip_cidr, "dev", "eth0"])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "up"])
        self.run("ethtool", "-K", "eth0", "tx", "off")
        run(["ip", "-n", h.netns, "link", "set", self.veth, "up"])
        addresses = f"{self.mac} {self.ip}"
        self.cluster.nbctl(
            "--may-exist", "lsp-add", self.switch, self.port,
            "--", "lsp-set-addresses", self.port, addresses,
            "--", "lsp-set-port-security", self.port, addresses,
            "--", "lsp-set-options", self.port, f"requested-chassis={h.name}",
        )  # fmt: skip
        h.host.ovs_vsctl(
            "add-port", "br-int", self.veth,
            "--", "set", "Interface", self.veth, f"external_ids:iface-id={self.port}",
            f"external_ids:attached-mac={self.mac}",
        )  # fmt: skip

    def installed(self) -> bool:
        """ovn-controller of the port's host has its flows in (local to that chassis)."""
        proc = self.on.host.ovs_vsctl(
            "--if-exists", "get", "Interface", self.veth, "external_ids:ovn-installed", check=False
        )
        return proc.stdout.strip() == '"true"'

    def ping(self, target: str) -> bool:
        return (
            self.run("busybox", "ping", "-c", "1", "-W", "1", target, check=False).returncode == 0
        )

    def first_reply(self, target: str, timeout: float = 20.0) -> float:
        """Seconds until ``target`` first answers a ping. Bounded: right after a binding the
        other chassis may not have its flows yet (ovn-installed is per chassis)."""
        started = time.monotonic()
        wait_until(lambda: self.ping(target), timeout=timeout, interval=0.05,
                   what=f"{self.port} -> {target} to answer")  # fmt: skip
        return time.monotonic() - started

    def tcp_send(self, server: WiredPort, tcp_port: int) -> str:
        """A unique line over TCP to a busybox nc listener in ``server``; returns what the
        listener received."""
        payload = f"ovsmh-{uuid.uuid4().hex[:12]}\n"
        listener = subprocess.Popen(
            ["ip", "netns", "exec", server.netns, "busybox", "nc", "-l", "-p", str(tcp_port)],
            # stdin stays open until the exchange is over: busybox nc half-closes the
            # connection when its stdin ends, and a client reading that FIN first quits.
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: f":{tcp_port} " in server.run("busybox", "netstat", "-ltn").stdout,
                timeout=10,
                what=f"nc to listen in {server.netns}",
            )
            self.run("busybox", "nc", "-w", "3", server.ip, str(tcp_port), input_text=payload)
            out, _ = listener.communicate(timeout=10)
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.communicate(timeout=5)
        received = out.decode(errors="replace")
        assert received == payload, f"sent {payload!r} from {self.port}, got {received!r}"
        return received

    def remove(self) -> None:
        if not self.on.lost:
            self.on.host.ovs_vsctl("--if-exists", "del-port", "br-int", self.veth, check=False)
        with contextlib.suppress(Exception):
            self.cluster.nbctl("--if-exists", "lsp-del", self.port, check=False)
        run(["ip", "netns", "del", self.netns], check=False)


# --------------------------------------------------------------------------- namespaces


def create_mount_namespace(layout: Layout, h: ClusterHost) -> None:
    """The mount namespace dockerd and the plugin of host ``h`` share, bound to a file.

    Slave propagation: what the machine unmounts (a deleted netns, a removed container's
    layer) goes away in ours too, so we never keep another user's namespace alive. The
    namespace files (nsfs mounts) copied in with the machine's mounts are unmounted for the
    same reason. Then the host's own /run/docker and /run/containerd are mounted over the
    machine's: its own plugin directory, its own shim sockets.
    """
    ns_dir = layout.mountns_dir
    if not ns_dir.is_dir():
        ns_dir.mkdir(parents=True)
        # unshare --mount=FILE needs FILE on a mount that is not shared.
        run(["mount", "--bind", str(ns_dir), str(ns_dir)])
        run(["mount", "--make-private", str(ns_dir)])
    nsfile = layout.mountns(h.n)
    nsfile.touch()
    run(["unshare", f"--mount={nsfile}", "--propagation", "slave", "true"])

    def inside(*argv: str) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", f"--mount={nsfile}", "--", *argv], timeout=30)

    copied = inside("findmnt", "--raw", "--noheadings", "--types", "nsfs", "--output", "TARGET")
    targets = [t.replace("\\x20", " ") for t in copied.stdout.split()]
    if targets:
        inside("umount", "--lazy", *targets)
    for own, system in (("run-docker", "/run/docker"), ("run-containerd", "/run/containerd")):
        (h.dir / own).mkdir()
        # Exists on a Docker host; if not, an empty directory is harmless there.
        Path(system).mkdir(parents=True, exist_ok=True)
        inside("mount", "--bind", str(h.dir / own), system)
    (h.dir / "run-docker" / "plugins").mkdir()


def our_namespaces(layout: Layout) -> list[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout
    names = [str(ns["name"]) for ns in json.loads(out or "[]")]
    return [n for n in names if n.startswith(f"{layout.prefix}-")]


def mounts_under(base: Path) -> list[str]:
    """Mount points at or below ``base`` in our mount namespace, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == str(base) or target.startswith(f"{base}/"):
            found.append(target)
    return sorted(found, key=lambda t: t.count("/"), reverse=True)


def our_processes(layout: Layout) -> set[int]:
    """Processes of ours: by pidfile under the directory (if the command line names it),
    inside our network namespaces, in our containers' cgroups; with their descendants."""
    pids: set[int] = set()
    marker = str(layout.base)
    if layout.base.is_dir():
        for pidfile in layout.base.rglob("*.pid"):
            pid = procs.pid_naming(pidfile, marker)
            if pid is not None:
                pids.add(pid)
    for ns in our_namespaces(layout):
        proc = run(["ip", "netns", "pids", ns], check=False)
        pids.update(int(p) for p in proc.stdout.split() if p.isdigit())
    pids |= procs.in_cgroup(f"{layout.prefix}-h")
    pids = procs.with_descendants(pids)
    pids.discard(os.getpid())
    return {p for p in pids if procs.alive(p)}


def our_cgroups(layout: Layout) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    found = [d for d in root.glob(f"*/{layout.prefix}-h*") if d.is_dir()]
    found += [d for d in root.glob(f"*/{layout.prefix}-h*/**") if d.is_dir()]
    return sorted(set(found), key=lambda d: len(d.parts), reverse=True)


def sweep(layout: Layout) -> list[str]:
    """Remove whatever of ``layout`` exists: processes, mounts, namespaces, cgroups, files.
    Returns what it found (empty after a clean teardown)."""
    found: list[str] = []
    pids = our_processes(layout)
    if pids:
        found.append(f"processes {sorted(pids)}")
        left = procs.kill_all(pids, signal.SIGKILL)
        if left:
            raise RuntimeError(f"processes of ours survived SIGKILL: {left}")
    for target in mounts_under(layout.base):
        found.append(f"mount {target}")
        if run(["umount", target], check=False).returncode != 0:
            run(["umount", "--lazy", target])
    for ns in our_namespaces(layout):
        found.append(f"netns {ns}")
        run(["ip", "netns", "del", ns])
    for cgroup in our_cgroups(layout):
        found.append(f"cgroup {cgroup}")
        with contextlib.suppress(OSError):
            cgroup.rmdir()
    if layout.base.exists():
        found.append(f"directory {layout.base}")
        shutil.rmtree(layout.base)
    return found


def leftovers(layout: Layout) -> list[str]:
    """What of ``layout`` is still there (nothing, after :meth:`Cluster.down`)."""
    left = [f"process {p}: {procs.cmdline(p)!r}" for p in sorted(our_processes(layout))]
    left += [f"mount {m}" for m in mounts_under(layout.base)]
    left += [f"netns {ns}" for ns in our_namespaces(layout)]
    left += [f"cgroup {c}" for c in our_cgroups(layout)]
    left += [f"path {p}" for p in (layout.base, layout.lock) if p.exists()]
    marker = str(layout.base).encode()
    left += [
        f"process {pid} naming {layout.base}"
        for pid, cmdline in procs.each_process("cmdline")
        if marker in cmdline and pid != os.getpid()
    ]
    return sorted(set(left))
