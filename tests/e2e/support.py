"""Helpers for the end-to-end suite.

Everything here drives the real tools: the docker CLI against the running dockerd,
``ovs-vsctl`` against the running ovsdb-server, ``ip``/``iptables`` on the host, and the
plugin itself as a child process. Nothing is mocked.

Traffic rule: tests only ever send packets to addresses inside namespaces they create
themselves (Docker containers, the "outside host" namespace) or to loopback.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker_ovs_plugin.http.client import UnixHTTPConnection

# --------------------------------------------------------------------------- constants

#: Docker driver name used by the suite (the socket file name without ``.sock``). A
#: dedicated name keeps a user's own ``ovs`` plugin untouched.
DRIVER_NAME = os.environ.get("OVS_E2E_DRIVER", "ovse2e")
PLUGIN_DIR = Path("/run/docker/plugins")
OVSDB = "unix:/var/run/openvswitch/db.sock"
IMAGE_TAG = "docker-ovs-plugin-test/busybox:latest"
OWNER = "docker-ovs-plugin"
#: Label put on every container the suite starts, so a later run can find leftovers.
RESOURCE_LABEL = "docker-ovs-plugin-e2e"
#: Prefix of every docker/netns/link name the suite makes itself.
NAME_PREFIX = "ovse2e"
#: Where the suite remembers the pid of the plugin it started (to reap an orphan left
#: behind when a previous pytest run was killed).
PIDFILE_DIR = Path("/run/docker-ovs-plugin-e2e")

#: Kernel link name prefixes that the plugin (or the suite) creates.
LINK_PREFIXES = ("ovp", "ovc", "ovsbr-", NAME_PREFIX)

OUTSIDE_NETNS = f"{NAME_PREFIX}-out"
OUTSIDE_HOST_IF = f"{NAME_PREFIX}-h"
OUTSIDE_NS_IF = f"{NAME_PREFIX}-n"
OUTSIDE_HOST_IP = "198.51.100.1"
OUTSIDE_IP = "198.51.100.2"
OUTSIDE_PREFIXLEN = 24
OUTSIDE_TCP_PORT = 7070


def unique_name(kind: str) -> str:
    """A short, unique docker object name owned by the suite."""
    return f"{NAME_PREFIX}-{kind}-{uuid.uuid4().hex[:6]}"


# --------------------------------------------------------------------------- commands


class CommandError(AssertionError):
    """A command that had to succeed did not; the message carries its full output."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(
            f"command {status}: {' '.join(self.argv)}\n"
            f"--- stdout ---\n{stdout.rstrip()}\n--- stderr ---\n{stderr.rstrip()}"
        )


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (argument list, never a shell) with a timeout.

    A timeout is always an error (raised as :class:`CommandError`) even with
    ``check=False``: a hung docker or ovs-vsctl call must never hang the suite.
    """
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, None, _text(exc.stdout), _text(exc.stderr)) from exc
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def docker_bin() -> str:
    # Debian's client matches Debian's dockerd; a newer client first on PATH refuses some flags
    # (--mac-address per network needs API 1.44) against a 20.10 daemon.
    debian = "/usr/bin/docker"
    fallback = debian if os.access(debian, os.X_OK) else shutil.which("docker") or "docker"
    return os.environ.get("OVS_E2E_DOCKER") or fallback


def docker(
    *args: str, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return run([docker_bin(), *args], check=check, timeout=timeout)


def ovs_vsctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ovs-vsctl", f"--db={OVSDB}", "--timeout=10", *args], check=check, timeout=20)


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = ""
) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def ci_mode() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


# --------------------------------------------------------------------------- requirements


def missing_requirement() -> str | None:
    """Why the e2e suite cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "the e2e suite needs root (docker, ovs-vsctl, ip netns, iptables)"
    reason: str | None = None
    tools = {
        "docker": docker_bin(),
        **{t: t for t in ("ovs-vsctl", "ovs-appctl", "ip", "iptables")},
    }
    missing = [name for name, exe in tools.items() if not shutil.which(exe)]
    if missing:
        reason = f"not installed or not on PATH: {', '.join(missing)}"
    elif busybox_path() is None:
        reason = "a static busybox (Debian package busybox-static) is needed for the test image"
    elif importlib.util.find_spec("docker_ovs_plugin") is None:
        reason = (
            f"the docker_ovs_plugin package is not importable by {sys.executable} "
            "(run: pip install -e .)"
        )
    else:
        reason = _first_failing_probe()
    return reason


def _first_failing_probe() -> str | None:
    probes: list[tuple[list[str], str]] = [
        ([docker_bin(), "info", "--format", "{{.ServerVersion}}"], "dockerd is not answering"),
        (
            ["ovs-vsctl", f"--db={OVSDB}", "--timeout=5", "show"],
            f"ovsdb-server is not answering at {OVSDB}",
        ),
        (["ovs-appctl", "-t", "ovs-vswitchd", "version"], "ovs-vswitchd is not answering"),
        (["ip", "netns", "list"], "'ip netns' does not work"),
        (["iptables", "-w", "5", "-S"], "iptables does not work"),
    ]
    for argv, reason in probes:
        try:
            proc = run(argv, check=False, timeout=20)
        except (CommandError, OSError) as exc:
            return f"{reason}: {exc}"
        if proc.returncode != 0:
            return f"{reason}: {(proc.stderr or proc.stdout).strip()}"
    return None


# --------------------------------------------------------------------------- test image


def _elf_is_static(path: Path) -> bool:
    """True when ``path`` is an ELF executable without a PT_INTERP program header."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        return False
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        phoff, phentsize, phnum = (
            struct.unpack_from(endian + "Q", data, 0x20)[0],
            *struct.unpack_from(endian + "HH", data, 0x36),
        )
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from(endian + "I", data, 0x1C)[0],
            *struct.unpack_from(endian + "HH", data, 0x2A),
        )
    pt_interp = 3
    for i in range(phnum):
        (p_type,) = struct.unpack_from(endian + "I", data, phoff + i * phentsize)
        if p_type == pt_interp:
            return False
    return True


def busybox_path() -> Path | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if candidate and Path(candidate).is_file() and _elf_is_static(Path(candidate)):
            return Path(candidate)
    return None


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def _busybox_rootfs_tar(busybox: Path) -> bytes:
    applets = set(run([str(busybox), "--list"]).stdout.split()) - {"busybox"}
    buf = io.BytesIO()
    now = int(time.time())

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        info.mtime = now
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, content: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = mode
        info.mtime = now
        tar.addfile(info, io.BytesIO(content))

    def add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        info.mtime = now
        tar.addfile(info)

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "sys", "usr", "var"):
            add_dir(tar, d)
        add_dir(tar, "tmp", 0o1777)
        add_dir(tar, "var/tmp", 0o1777)
        add_symlink(tar, "sbin", "bin")
        add_symlink(tar, "usr/bin", "../bin")
        add_symlink(tar, "usr/sbin", "../bin")
        add_file(tar, "bin/busybox", busybox.read_bytes(), 0o755)
        for applet in sorted(applets):
            add_symlink(tar, f"bin/{applet}", "busybox")
        add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        add_file(tar, "etc/group", b"root:x:0:\n")
        add_file(tar, "etc/nsswitch.conf", b"hosts: files dns\n")
    return buf.getvalue()


def build_busybox_image(tag: str = IMAGE_TAG) -> None:
    """``docker import`` a rootfs made of the host's static busybox (no registry needed)."""
    if image_exists(tag):
        return
    busybox = busybox_path()
    if busybox is None:
        raise RuntimeError("no static busybox found (apt-get install busybox-static)")
    argv = [
        docker_bin(),
        "import",
        "--change",
        "ENV PATH=/bin",
        "--change",
        'CMD ["/bin/sh"]',
        "-",
        tag,
    ]
    proc = subprocess.run(
        argv, input=_busybox_rootfs_tar(busybox), capture_output=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise CommandError(
            argv,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )


# --------------------------------------------------------------------------- OVS / links


def ovs_external_ids(table: str, record: str) -> dict[str, str]:
    """external_ids of one OVS row, as a plain dict."""
    out = ovs_vsctl("--format=json", "--columns=external_ids", "list", table, record).stdout
    data = json.loads(out)["data"]
    if not data:
        raise AssertionError(f"no {table} row {record!r} in OVS")
    kind, pairs = data[0][0]
    assert kind == "map", data
    return {str(k): str(v) for k, v in pairs}


def ovs_bridge_exists(bridge: str) -> bool:
    return ovs_vsctl("br-exists", bridge, check=False).returncode == 0


def ovs_ports(bridge: str) -> list[str]:
    return ovs_vsctl("list-ports", bridge).stdout.split()


def ovs_port_to_bridge(port: str) -> str | None:
    proc = ovs_vsctl("port-to-br", port, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def link_names() -> list[str]:
    return [str(link["ifname"]) for link in json.loads(run(["ip", "-j", "link", "show"]).stdout)]


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def link_info(name: str) -> dict[str, Any]:
    links: list[dict[str, Any]] = json.loads(run(["ip", "-j", "addr", "show", "dev", name]).stdout)
    assert len(links) == 1, links
    return links[0]


def link_ipv4_cidrs(name: str) -> list[str]:
    info = link_info(name)
    return [
        f"{a['local']}/{a['prefixlen']}"
        for a in info.get("addr_info", [])
        if a.get("family") == "inet"
    ]


# --------------------------------------------------------------------------- snapshots

#: Identifiers of everything the suite created this session (network ids, endpoint ids,
#: bridge names, subnets). Used only in shared-host mode, see :func:`shared_host`.
OWNED: set[str] = set()

_IDENTIFIERS = re.compile(
    r"(?P<ovsbr>\bovsbr-[0-9a-f]{8}\b)"
    r"|(?P<veth>\bov[pc][0-9a-f]{12}\b)"
    r"|(?P<comment>docker-ovs-plugin:[0-9a-f]{12}\b)"
    r"|(?P<dockerbr>\bbr-[0-9a-f]{12}\b)"
    r"|(?P<cidr>\b\d+\.\d+\.\d+\.\d+/\d+\b)"
)


def shared_host() -> bool:
    """OVS_E2E_SHARED_HOST=1: tolerate other Docker/OVS users of this host.

    By default a test fails on *any* difference between the host state before and after
    it. On a machine where something else (another plugin instance, benchmarks) creates
    and removes networks at the same time, that is noise; in shared-host mode
    differences that name only objects the suite did not create are ignored.
    """
    return os.environ.get("OVS_E2E_SHARED_HOST", "").strip().lower() in {"1", "true", "yes"}


def _is_ours(kind: str, token: str) -> bool:
    if kind == "ovsbr":
        return any(i.startswith(token.removeprefix("ovsbr-")) for i in OWNED)
    if kind == "veth":
        return any(i.startswith(token[3:]) for i in OWNED)
    if kind == "comment":
        return any(i.startswith(token.split(":", 1)[1]) for i in OWNED)
    if kind == "cidr":
        return token in OWNED
    return False  # br-<id>: docker's own bridge driver, never ours


def foreign_only(item: str) -> bool:
    """True when ``item`` names specific objects and none of them is the suite's."""
    if NAME_PREFIX in item:
        return False
    found = [(m.lastgroup or "", m.group()) for m in _IDENTIFIERS.finditer(item)]
    return bool(found) and not any(_is_ours(kind, token) for kind, token in found)


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

    def differences(self, after: HostSnapshot) -> list[str]:
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
        if shared_host():
            diffs = [d for d in diffs if not foreign_only(d)]
        return diffs

    def ovs_items(self) -> list[str]:
        items = [f"bridge {br}" for br, _ in self.ovs]
        items += [f"port {br}/{port}" for br, ports in self.ovs for port in ports]
        return items


def take_snapshot() -> HostSnapshot:
    ovs: list[tuple[str, tuple[str, ...]]] = []
    for br in sorted(ovs_vsctl("list-br").stdout.split()):
        ports = ovs_vsctl("list-ports", br, check=False)
        if ports.returncode == 0:  # else the bridge went away meanwhile
            ovs.append((br, tuple(sorted(ports.stdout.split()))))
    links = tuple(sorted(n for n in link_names() if n.startswith(LINK_PREFIXES)))
    filt = tuple(run(["iptables", "-w", "10", "-S"]).stdout.splitlines())
    nat = tuple(run(["iptables", "-w", "10", "-t", "nat", "-S"]).stdout.splitlines())
    raw = tuple(run(["iptables", "-w", "10", "-t", "raw", "-S"]).stdout.splitlines())
    return HostSnapshot(
        ovs=tuple(ovs), links=links, iptables_filter=filt, iptables_nat=nat, iptables_raw=raw
    )


def assert_snapshot_restored(before: HostSnapshot, *, timeout: float = 5.0) -> None:
    """Assert the host is back to ``before`` (waiting briefly for async teardown)."""
    diffs: list[str] = []

    def same() -> bool:
        nonlocal diffs
        diffs = before.differences(take_snapshot())
        return not diffs

    try:
        wait_until(same, timeout=timeout, interval=0.5, what="host state to be restored")
    except AssertionError:
        raise AssertionError(
            "host state differs from the snapshot taken before the test:\n  " + "\n  ".join(diffs)
        ) from None


#: TCP exchanges whose first attempt lost the payload (shown after the run, passed or not).
RETRIED_EXCHANGES: list[str] = []
#: Faults of Docker itself a test worked around, and how (shown after the run).
DOCKER_WORKAROUNDS: list[str] = []

# --------------------------------------------------------------------------- the plugin


def plugin_call(
    socket_path: Path,
    method: str,
    body: dict[str, Any] | bytes | None = None,
    *,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """POST one Docker v1 plugin protocol call to a unix socket; returns (status, json)."""
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        if body is None:
            payload = b""
        else:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request(
            "POST",
            f"/{method}",
            body=payload,
            headers={"Accept": "application/vnd.docker.plugins.v1.2+json"},
        )
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        decoded: Any = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode(errors="replace")
    return resp.status, decoded


#: Loggers whose debug lines are left out of the log tails shown on failures.
_NOISY_LOGGERS = ("pyroute2", "asyncio", "urllib3", "docker.utils")


class PluginError(RuntimeError):
    pass


@dataclass
class Plugin:
    """The real plugin as a child process: start, wait for readiness, signal, restart."""

    name: str
    log_dir: Path
    start_timeout: float = 15.0
    #: Quick background reconciliation, so the suite exercises it alongside every test.
    extra_args: tuple[str, ...] = ("--reconcile-interval", "2", "--reconcile-grace", "4")
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    logs: list[Path] = field(default_factory=list)
    last_returncode: int | None = None
    #: (exit status, log file) of every exit that no stop() asked for.
    crashes: list[tuple[int | None, Path]] = field(default_factory=list)

    @property
    def socket_path(self) -> Path:
        return PLUGIN_DIR / f"{self.name}.sock"

    @property
    def pidfile(self) -> Path:
        return PIDFILE_DIR / f"{self.name}.pid"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "docker_ovs_plugin",
            "serve",
            "--name",
            self.name,
            "--log-level",
            "debug",
            *self.extra_args,
        ]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def answers_activate(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            status, body = plugin_call(self.socket_path, "Plugin.Activate", timeout=2.0)
        except (OSError, http.client.HTTPException):
            return False
        return (
            status == 200
            and isinstance(body, dict)
            and "NetworkDriver" in body.get("Implements", [])
        )

    def reap_orphan(self) -> None:
        """Stop a plugin that an earlier, killed run of this suite left running.

        Only a process recorded in our pidfile, still running the plugin under our
        driver name, and whose recorded parent (the pytest that started it) is gone.
        """
        try:
            pid, parent = (int(v) for v in self.pidfile.read_text().split())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            cmdline = []
        ours = b"docker_ovs_plugin" in cmdline and self.name.encode() in cmdline
        if ours and Path(f"/proc/{parent}").exists():
            return  # a live test session owns it; start() will report the busy socket
        if ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def start(self) -> None:
        if self.running:
            raise PluginError("plugin already running")
        PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
        # A socket file left by a killed plugin is fine (the plugin must replace it);
        # one that still answers belongs to somebody else and would fool readiness.
        if self.answers_activate():
            raise PluginError(f"another process already serves {self.socket_path}; stop it first")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"plugin-{len(self.logs) + 1}.log"
        self.logs.append(self.log_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Own session: a ^C to pytest must not kill the plugin before teardown
                # has used it to remove containers and networks.
                start_new_session=True,
            )
        PIDFILE_DIR.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(f"{self.proc.pid} {os.getpid()}\n")
        deadline = time.monotonic() + self.start_timeout
        while not self.answers_activate():
            returncode = self.proc.poll()
            if returncode is not None:
                self._closed(returncode)
                raise PluginError(
                    f"plugin exited with {returncode} before it was ready\n" + self.log_tail()
                )
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise PluginError(
                    f"plugin not ready within {self.start_timeout:.0f}s "
                    f"(socket {self.socket_path})\n" + self.log_tail()
                )
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send ``sig`` and wait for the exit; escalate to SIGKILL after ``timeout``.

        Returns the exit status, or None if the plugin was not running.
        """
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                self._closed(proc.returncode)
                raise PluginError(
                    f"plugin did not exit within {timeout:.0f}s of signal {sig}; killed it"
                ) from None
        self._closed(proc.returncode)
        return proc.returncode

    def _closed(self, returncode: int | None) -> None:
        self.last_returncode = returncode
        self.proc = None
        self.pidfile.unlink(missing_ok=True)

    def check_alive(self) -> None:
        """Record (in :attr:`crashes`) a plugin that exited without :meth:`stop`."""
        if self.proc is not None and self.proc.poll() is not None:
            assert self.log_path is not None
            self.crashes.append((self.proc.returncode, self.log_path))
            self._closed(self.proc.returncode)

    def ensure_running(self) -> None:
        self.check_alive()
        if self.proc is None:
            self.start()

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of the current plugin log, without third-party debug chatter
        (the full log stays in the file)."""
        if self.log_path is None or not self.log_path.exists():
            return "(no plugin log)"
        text = [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if not any(f" DEBUG {noisy}" in line for noisy in _NOISY_LOGGERS)
        ]
        return f"--- last {lines} lines of {self.log_path} (full log there) ---\n" + "\n".join(
            text[-lines:]
        )


# --------------------------------------------------------------------------- docker objects


@dataclass(frozen=True)
class Network:
    name: str
    id: str
    bridge: str
    subnet: str
    gateway: str

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/")[1])


@dataclass(frozen=True)
class Container:
    name: str
    id: str
    network: Network
    ip: str
    endpoint_id: str
    mac: str

    @property
    def host_veth(self) -> str:
        return "ovp" + self.endpoint_id[:12]

    @property
    def container_veth(self) -> str:
        return "ovc" + self.endpoint_id[:12]


def network_ipam(name: str) -> tuple[str, str]:
    """(subnet, gateway) of a docker network's first IPv4 pool."""
    configs = json.loads(docker("network", "inspect", "-f", "{{json .IPAM.Config}}", name).stdout)
    for cfg in configs or []:
        subnet = cfg.get("Subnet", "")
        if subnet and ":" not in subnet:
            return subnet, cfg.get("Gateway", "")
    raise AssertionError(f"network {name} has no IPv4 IPAM config: {configs}")


class DockerEnv:
    """Creates docker networks/containers and always removes them (see :meth:`cleanup`)."""

    #: Label and name prefix of the containers it runs (a suite that must stay out of the
    #: others' leftover cleanup sets its own).
    label = RESOURCE_LABEL
    container_prefix = f"{NAME_PREFIX}-c"

    def __init__(self, plugin: Plugin, image: str = IMAGE_TAG, driver: str = DRIVER_NAME):
        self.plugin = plugin
        self.image = image
        self.driver = driver
        self._containers: list[str] = []
        self._networks: list[str] = []

    # -- networks ---------------------------------------------------------------------

    def try_create_network(
        self,
        name: str | None = None,
        *,
        subnet: str | None = None,
        gateway: str | None = None,
        options: dict[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> tuple[str, subprocess.CompletedProcess[str]]:
        """``docker network create`` that may fail; the name is tracked for cleanup.

        ``extra`` holds further CLI arguments (e.g. ``--internal``).
        """
        name = name or unique_name("net")
        if subnet:
            OWNED.add(subnet)
        argv = ["network", "create", "-d", self.driver, *extra]
        if subnet:
            argv += ["--subnet", subnet]
        if gateway:
            argv += ["--gateway", gateway]
        for key, value in (options or {}).items():
            argv += ["-o", f"{key}={value}"]
        self._networks.append(name)
        return name, docker(*argv, name, check=False, timeout=60)

    def create_network(
        self,
        name: str | None = None,
        *,
        subnet: str | None = None,
        gateway: str | None = None,
        options: dict[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> Network:
        name, proc = self.try_create_network(
            name, subnet=subnet, gateway=gateway, options=options, extra=extra
        )
        if proc.returncode != 0:
            raise CommandError(
                ["docker", "network", "create", name], proc.returncode, proc.stdout, proc.stderr
            )
        net_id = proc.stdout.strip().splitlines()[-1]
        OWNED.add(net_id)
        bridge = (options or {}).get("ovs.bridge.name") or "ovsbr-" + net_id[:8]
        got_subnet, got_gateway = network_ipam(name)
        OWNED.update({bridge, got_subnet})
        return Network(name=name, id=net_id, bridge=bridge, subnet=got_subnet, gateway=got_gateway)

    def remove_network(self, net: Network | str) -> None:
        name = net.name if isinstance(net, Network) else net
        proc = _remove_network(name)
        if proc.returncode != 0:
            raise CommandError(
                [docker_bin(), "network", "rm", name], proc.returncode, proc.stdout, proc.stderr
            )
        if name in self._networks:
            self._networks.remove(name)

    def network_exists(self, name: str) -> bool:
        return docker("network", "inspect", name, check=False).returncode == 0

    # -- containers -------------------------------------------------------------------

    def run_container(
        self,
        net: Network,
        name: str | None = None,
        command: Sequence[str] = ("sleep", "3600"),
        extra: Sequence[str] = (),
    ) -> Container:
        """``docker run -d`` on ``net``; ``extra`` holds further ``docker run`` arguments."""
        name = name or f"{self.container_prefix}-{uuid.uuid4().hex[:6]}"
        self._containers.append(name)
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            "--net",
            net.name,
            "--label",
            f"{self.label}=1",
            *extra,
            self.image,
            *command,
            timeout=90,
        )
        return self.inspect_container(name, net)

    def inspect_container(self, name: str, net: Network) -> Container:
        out = docker("inspect", "-f", "{{.Id}} {{json .NetworkSettings.Networks}}", name).stdout
        cid, _, nets_json = out.strip().partition(" ")
        nets = json.loads(nets_json)
        assert net.name in nets, f"{name} is not attached to {net.name}: {nets}"
        info = nets[net.name]
        OWNED.add(info["EndpointID"])
        return Container(
            name=name,
            id=cid,
            network=net,
            ip=info["IPAddress"],
            endpoint_id=info["EndpointID"],
            mac=str(info.get("MacAddress", "")).lower(),
        )

    def remove_container(self, c: Container | str) -> None:
        name = c.name if isinstance(c, Container) else c
        docker("rm", "-f", name, timeout=60)
        if name in self._containers:
            self._containers.remove(name)

    def exec(
        self, c: Container, *argv: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return docker("exec", c.name, *argv, check=check, timeout=timeout)

    def exec_detached(self, c: Container, *argv: str) -> None:
        docker("exec", "-d", c.name, *argv, timeout=30)

    # -- traffic ----------------------------------------------------------------------

    def ping(self, c: Container, target: str, *, count: int = 1, wait: int = 2) -> bool:
        proc = self.exec(
            c,
            "ping",
            "-c",
            str(count),
            "-W",
            str(wait),
            target,
            check=False,
            timeout=count * wait + 15,
        )
        return proc.returncode == 0

    def assert_ping(self, c: Container, target: str, *, attempts: int = 3) -> None:
        """ICMP must get through (a few tries: the first packet may wait for ARP/DNS)."""
        last = None
        for _ in range(attempts):
            last = self.exec(c, "ping", "-c", "1", "-W", "2", target, check=False, timeout=20)
            if last.returncode == 0:
                return
        assert last is not None
        raise AssertionError(
            f"{c.name} ({c.ip}) cannot ping {target} after {attempts} tries:\n"
            f"{last.stdout}{last.stderr}\n{self.diagnostics(c)}"
        )

    def diagnostics(self, c: Container) -> str:
        """Container and bridge state worth seeing when traffic does not flow."""
        parts: list[str] = []
        for argv in (("ip", "addr"), ("ip", "route"), ("ip", "neigh")):
            proc = self.exec(c, *argv, check=False)
            parts.append(f"[{c.name}] {' '.join(argv)}:\n{proc.stdout}{proc.stderr}")
        bridge = c.network.bridge
        for host_argv in (
            ["ip", "addr", "show", "dev", bridge],
            ["ip", "neigh", "show", "dev", bridge],
            ["ovs-vsctl", f"--db={OVSDB}", "show"],
            ["ovs-appctl", "fdb/show", bridge],
            ["ovs-ofctl", "dump-flows", bridge],
        ):
            proc = run(host_argv, check=False, timeout=20)
            parts.append(f"[host] {' '.join(host_argv)}:\n{proc.stdout}{proc.stderr}")
        return "\n".join(parts)

    def assert_no_ping(self, c: Container, target: str) -> None:
        proc = self.exec(
            c, "ping", "-c", "2", "-W", "2", "-w", "3", target, check=False, timeout=20
        )
        assert proc.returncode != 0, (
            f"{c.name} ({c.ip}) unexpectedly reached {target}:\n{proc.stdout}"
        )

    def tcp_send(self, server: Container, client: Container, target: str, port: int) -> str:
        """Send a unique payload over TCP from ``client`` to a busybox nc listener in
        ``server`` (reached as ``target``: IP or name) and check it arrives.

        The listener's stdin stays open (`sleep |`): busybox nc shuts down its sending half
        as soon as its stdin ends, and a client whose `echo` had not yet filled its stdin read
        that FIN first and quit without sending, exit status 0 (seen twice under CI load).
        If a payload is still lost, one more attempt with a fresh listener; the failed
        attempt's diagnostics go to stderr and to the run's summary, so a real data-path
        fault still fails (twice) with the evidence."""
        failures: list[str] = []
        for _ in range(2):
            try:
                return self._tcp_send_once(server, client, target, port)
            except AssertionError as exc:
                failures.append(f"{exc}\n{self._tcp_diagnostics(server, client, port)}")
                print(f"tcp_send attempt failed:\n{failures[-1]}", file=sys.stderr)
                RETRIED_EXCHANGES.append(f"{client.name} -> {target}:{port}: {failures[-1]}")
        raise AssertionError("\n---\n".join(failures))

    def _tcp_send_once(self, server: Container, client: Container, target: str, port: int) -> str:
        payload = f"ovs-e2e-{uuid.uuid4().hex[:12]}"
        recv = f"/tmp/tcp-{port}.recv"
        self.exec(server, "rm", "-f", recv)
        self.exec_detached(server, "sh", "-c", f"sleep 60 | nc -l -p {port} > {recv}")
        try:
            wait_until(
                lambda: f":{port} " in self.exec(server, "netstat", "-ltn").stdout,
                timeout=10,
                what=f"nc to listen on {server.name}:{port}",
            )
            sent = None
            for _ in range(3):
                sent = self.exec(
                    client,
                    "sh",
                    "-c",
                    f"echo {payload} | nc -w 3 {target} {port}",
                    check=False,
                    timeout=20,
                )
                if sent.returncode == 0:
                    break
                time.sleep(0.5)
            assert sent is not None and sent.returncode == 0, (
                f"TCP connect {client.name} -> {target}:{port} failed:\n"
                f"{sent.stdout if sent else ''}{sent.stderr if sent else ''}"
            )
            wait_until(
                lambda: payload in self.exec(server, "cat", recv).stdout,
                timeout=10,
                what=f"payload sent by {client.name} to arrive in {server.name}",
            )
        finally:
            self.exec(server, "killall", "nc", check=False)
        return payload

    def _tcp_diagnostics(self, server: Container, client: Container, port: int) -> str:
        """What both ends and the bridges saw, for a failed TCP exchange."""
        parts = []
        for c, argv in (
            (server, ("cat", f"/tmp/tcp-{port}.recv")),
            (server, ("netstat", "-tn")),
            (client, ("netstat", "-tn")),
            (server, ("ip", "neigh")),
            (client, ("ip", "-6", "neigh")),
        ):
            proc = self.exec(c, *argv, check=False)
            parts.append(f"{c.name}$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
        for bridge in run(["ovs-vsctl", "list-br"], check=False).stdout.split():
            proc = run(["ovs-ofctl", "dump-flows", bridge], check=False)
            parts.append(f"ovs-ofctl dump-flows {bridge}\n{proc.stdout}{proc.stderr}")
        return "\n".join(parts)

    # -- teardown ---------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove every container and network this object created. Returns errors."""
        errors: list[str] = []
        if self._containers or self._networks:
            try:
                self.plugin.ensure_running()
            except PluginError as exc:
                errors.append(f"could not restart the plugin for cleanup: {exc}")
        for name in reversed(self._containers):
            proc = docker("rm", "-f", name, check=False, timeout=90)
            if proc.returncode != 0 and not _already_gone(proc.stderr):
                errors.append(f"docker rm -f {name}: {proc.stderr.strip()}")
        self._containers.clear()
        for name in reversed(self._networks):
            proc = _remove_network(name)
            if proc.returncode != 0 and not _already_gone(proc.stderr):
                errors.append(f"docker network rm {name}: {proc.stderr.strip()}")
        self._networks.clear()
        return errors

    def remove_all(self) -> None:
        errors = self.cleanup()
        assert not errors, "cleanup failed:\n" + "\n".join(errors)


def _remove_network(name: str, patience: float = 20.0) -> subprocess.CompletedProcess[str]:
    """`docker network rm`, tried again for a while on "has active endpoints" (dockerd lowers
    its count of the network's endpoints only after the driver's DeleteEndpoint answered, and
    can even lose a decrement: see the load test). If the count never goes down, the error
    says what Docker and OVS still hold."""
    started = time.monotonic()
    while True:
        proc = docker("network", "rm", name, check=False, timeout=90)
        if "has active endpoints" not in proc.stderr:
            return proc
        if time.monotonic() - started > patience:
            break
        time.sleep(0.5)
    held = docker("network", "inspect", "-f", "{{json .Containers}}", name, check=False)
    proc.stderr += (
        f"\n  (still refused after {time.monotonic() - started:.0f} s; containers Docker lists "
        f"on it: {held.stdout.strip() or held.stderr.strip()}; ovs-vsctl show:\n"
        f"{ovs_vsctl('show', check=False).stdout})"
    )
    return proc


def network_rm_refused_for_good(net: Network) -> bool:
    """True when `docker network rm` still says "has active endpoints" after a while although
    Docker lists no container on the network; False once the network is gone."""
    proc = _remove_network(net.name)
    if proc.returncode == 0 or _already_gone(proc.stderr):
        return False
    listed = docker("network", "inspect", "-f", "{{len .Containers}}", net.name).stdout.strip()
    assert "has active endpoints" in proc.stderr and listed == "0", proc.stderr
    return True


def _already_gone(stderr: str) -> bool:
    # Docker clients word it differently: "not found" (20.10), "No such network/container".
    return "not found" in stderr or "No such" in stderr


def remove_leftovers(driver: str = DRIVER_NAME) -> None:
    """Remove containers/networks an earlier interrupted run of the suite left behind."""
    ids = docker("ps", "-aq", "--filter", f"label={RESOURCE_LABEL}").stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False, timeout=120)
    nets = docker("network", "ls", "-q", "--filter", f"driver={driver}").stdout.split()
    for net in nets:
        docker("network", "rm", net, check=False, timeout=60)


# --------------------------------------------------------------------------- outside host

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
    """A network namespace standing in for a host outside the container networks.

    It only has its connected 198.51.100.0/24: it has no route back to any container
    subnet, so a container can only reach it through the plugin's masquerading.
    """

    workdir: Path
    netns: str = OUTSIDE_NETNS
    host_if: str = OUTSIDE_HOST_IF
    ns_if: str = OUTSIDE_NS_IF
    host_ip: str = OUTSIDE_HOST_IP
    ip: str = OUTSIDE_IP
    tcp_port: int = OUTSIDE_TCP_PORT
    server: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "outside-tcp.log"

    def ns(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.netns, *argv], check=check, timeout=20)

    def remove(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(timeout=5)
            self.server = None
        if self.netns in run(["ip", "netns", "list"]).stdout.split():
            run(["ip", "netns", "del", self.netns], check=False)
        if link_exists(self.host_if):
            run(["ip", "link", "del", self.host_if], check=False)

    def create(self) -> None:
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
        with (self.workdir / "outside-server.out").open("wb") as out:
            self.server = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.netns,
                    sys.executable,
                    str(script),
                    self.ip,
                    str(self.tcp_port),
                    str(self.log_path),
                    str(ready),
                ],
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
