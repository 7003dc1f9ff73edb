"""The test image: a rootfs of the host's static busybox, ``docker import``-ed (no registry)."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import tarfile
import time
from pathlib import Path

from testbed.commands import CommandError, run
from testbed.host import Host

#: The one image both suites run their containers from.
IMAGE_TAG = "docker-ovs-plugin-test/busybox:latest"


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


def image_exists(host: Host, tag: str) -> bool:
    return host.docker("image", "inspect", tag, check=False).returncode == 0


def _busybox_rootfs_tar(busybox: Path) -> bytes:
    applets = set(run([str(busybox), "--list"]).stdout.split()) - {"busybox"}
    buf = io.BytesIO()
    now = int(time.time())

    def add(tar: tarfile.TarFile, name: str, kind: bytes, mode: int, link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.linkname = kind, mode, now, link
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, content: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(content), mode, now
        tar.addfile(info, io.BytesIO(content))

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "sys", "usr", "var"):
            add(tar, d, tarfile.DIRTYPE, 0o755)
        add(tar, "tmp", tarfile.DIRTYPE, 0o1777)
        add(tar, "var/tmp", tarfile.DIRTYPE, 0o1777)
        add(tar, "sbin", tarfile.SYMTYPE, 0o777, "bin")
        add(tar, "usr/bin", tarfile.SYMTYPE, 0o777, "../bin")
        add(tar, "usr/sbin", tarfile.SYMTYPE, 0o777, "../bin")
        add_file(tar, "bin/busybox", busybox.read_bytes(), 0o755)
        for applet in sorted(applets):
            add(tar, f"bin/{applet}", tarfile.SYMTYPE, 0o777, "busybox")
        add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        add_file(tar, "etc/group", b"root:x:0:\n")
        add_file(tar, "etc/nsswitch.conf", b"hosts: files dns\n")
    return buf.getvalue()


def build_busybox_image(host: Host, tag: str = IMAGE_TAG) -> bool:
    """Build the image on ``host`` unless it is tagged there already; True if it built it."""
    if image_exists(host, tag):
        return False
    busybox = busybox_path()
    if busybox is None:
        raise RuntimeError("no static busybox found (apt-get install busybox-static)")
    argv = host.docker_argv(
        "import", "--change", "ENV PATH=/bin", "--change", 'CMD ["/bin/sh"]', "-", tag
    )
    # Bytes on stdin, so not through run() (text mode).
    proc = subprocess.run(
        argv, input=_busybox_rootfs_tar(busybox), capture_output=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise CommandError(
            argv,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
    return True
