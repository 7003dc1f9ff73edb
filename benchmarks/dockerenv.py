"""Docker objects of the suite: the busybox image, networks, containers, leftover sweeps."""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import shutil
import struct
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import IMAGE, LABEL, PREFIX, CommandFailed, log, run


def docker_bin() -> str:
    return shutil.which("docker") or "docker"


def docker(*args: str, check: bool = True, timeout: float = 120.0) -> str:
    return run([docker_bin(), *args], check=check, timeout=timeout).stdout


def _is_static_elf(path: Path) -> bool:
    """An ELF executable without a PT_INTERP program header (no dynamic loader)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only: this is for amd64/arm64 hosts
        return False
    end = "<" if data[5] == 1 else ">"
    (phoff,) = struct.unpack_from(end + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
    pt_interp = 3
    return all(
        struct.unpack_from(end + "I", data, phoff + i * phentsize)[0] != pt_interp
        for i in range(phnum)
    )


def _busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file() and _is_static_elf(path):
            return path
    raise RuntimeError("a static busybox is needed (apt-get install busybox-static)")


def _rootfs_tar(busybox: Path) -> bytes:
    applets = set(run([str(busybox), "--list"]).stdout.split()) - {"busybox"}
    buf = io.BytesIO()
    now = int(time.time())

    def entry(name: str, kind: bytes, mode: int, link: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.linkname = kind, mode, now, link
        return info

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "sys", "usr", "var"):
            tar.addfile(entry(d, tarfile.DIRTYPE, 0o755))
        tar.addfile(entry("tmp", tarfile.DIRTYPE, 0o1777))
        tar.addfile(entry("sbin", tarfile.SYMTYPE, 0o777, "bin"))
        tar.addfile(entry("usr/bin", tarfile.SYMTYPE, 0o777, "../bin"))
        data = busybox.read_bytes()
        info = entry("bin/busybox", tarfile.REGTYPE, 0o755)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for applet in sorted(applets):
            tar.addfile(entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, "busybox"))
        for name, content in (
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", b"root:x:0:\n"),
        ):
            info = entry(name, tarfile.REGTYPE, 0o644)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def ensure_image(tag: str = IMAGE) -> None:
    """`docker import` a rootfs of the host's static busybox (no registry needed)."""
    if run([docker_bin(), "image", "inspect", tag], check=False).returncode == 0:
        return
    log(f"building image {tag} from the host's static busybox")
    argv = [docker_bin(), "import", "--change", "ENV PATH=/bin", "--change", 'CMD ["sh"]']
    proc = subprocess.run(
        [*argv, "-", tag],
        input=_rootfs_tar(_busybox()),
        capture_output=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"docker import failed: {proc.stderr.decode(errors='replace')}")


def unique(kind: str) -> str:
    return f"{PREFIX}-{kind}-{secrets.token_hex(3)}"


@dataclass
class DockerNetwork:
    name: str
    driver: str

    @property
    def id(self) -> str:
        return docker("network", "inspect", "-f", "{{.Id}}", self.name).strip()


def create_network(driver: str, kind: str, *options: str) -> DockerNetwork:
    name = unique(kind)
    opts = [f"--opt={o}" for o in options]
    docker("network", "create", "-d", driver, "--label", LABEL, *opts, name)
    return DockerNetwork(name, driver)


def remove_network(net: DockerNetwork) -> None:
    with contextlib.suppress(CommandFailed):
        docker("network", "rm", net.name, timeout=120)


@contextlib.contextmanager
def network(driver: str, kind: str, *options: str) -> Iterator[DockerNetwork]:
    net = create_network(driver, kind, *options)
    try:
        yield net
    finally:
        remove_network(net)


def run_detached(name: str, net: str, *cmd: str, image: str = IMAGE) -> None:
    docker("run", "-d", "--name", name, "--label", LABEL, "--net", net, image, *cmd)


def container_pid(name: str) -> int:
    return int(docker("inspect", "-f", "{{.State.Pid}}", name).strip())


def container_ip(name: str) -> str:
    out = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name)
    nets = json.loads(out)
    for settings in nets.values():
        if settings.get("IPAddress"):
            return str(settings["IPAddress"])
    raise RuntimeError(f"container {name} has no IPv4 address: {out}")


def remove_containers(names: list[str]) -> None:
    for i in range(0, len(names), 50):
        docker("rm", "-f", *names[i : i + 50], check=False, timeout=300)


def sweep() -> None:
    """Remove containers and networks an interrupted earlier run left (found by label)."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).split()
    if ids:
        log(f"removing {len(ids)} containers left by an earlier run")
        remove_containers(ids)
    nets = docker("network", "ls", "-q", "--filter", f"label={LABEL}", check=False).split()
    for net in nets:
        log(f"removing network {net} left by an earlier run")
        docker("network", "rm", net, check=False)
