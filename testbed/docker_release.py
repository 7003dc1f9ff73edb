"""A Docker release from Debian's archive, run in place of the host's dockerd for a while: the
support matrix (scripts/test.sh runs the end-to-end suite on it after the host's own Docker).

Nothing is installed: ``apt-get download`` (with its own source list, package lists and cache,
so the host's apt state is untouched) fetches docker.io, docker-cli and containerd of one suite
(``unstable`` carries the newest Docker Debian has) and ``dpkg-deb -x`` unpacks them into a
directory. runc stays the host's: unstable's needs a newer glibc than Debian 12's.

``python -m testbed.docker_release run [--suite SUITE] -- CMD...`` stops the host's dockerd,
starts the release's with its own data root, exec root and pid file (on the default socket, so
that the plugin, the tests and the packaging scripts reach it unchanged), runs CMD with that
release's client and containerd first on PATH, then stops it and its containerd and starts the
host's dockerd again, also when CMD fails or is interrupted. ``fetch`` only downloads and unpacks;
``version`` prints the Docker version a suite carries.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.commands import run, wait_until
from testbed.daemons import Dockerd, managed_containerd

CACHE = Path("/var/cache/docker-ovs-plugin-test/docker-release")
STATE = Path("/var/lib/docker-ovs-plugin-test")
RUNTIME = Path("/run/docker-ovs-plugin-test")
PACKAGES = ("docker.io", "docker-cli", "containerd")
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Release:
    suite: str

    @property
    def dir(self) -> Path:
        return CACHE / self.suite

    @property
    def root(self) -> Path:
        """Where the packages are unpacked (usr/bin/docker, usr/sbin/dockerd, ...)."""
        return self.dir / "root"

    @property
    def dockerd(self) -> Path:
        return self.root / "usr/sbin/dockerd"

    @property
    def client(self) -> Path:
        return self.root / "usr/bin/docker"

    def path_env(self) -> str:
        """PATH with this release's binaries first (dockerd finds containerd on PATH)."""
        return f"{self.root / 'usr/bin'}:{self.root / 'usr/sbin'}:{os.environ.get('PATH', '')}"

    # -- fetching -------------------------------------------------------------------------

    def _apt(self) -> list[str]:
        d = self.dir / "apt"
        return [
            f"-oDir::Etc::SourceList={d / 'sources.list'}",
            "-oDir::Etc::SourceParts=/nonexistent",
            f"-oDir::State::Lists={d / 'lists'}",
            f"-oDir::State::Status={d / 'status'}",
            f"-oDir::Cache={d / 'cache'}",
            "-oAPT::Sandbox::User=root",  # downloads into a directory _apt may not write
            "-qq",
        ]

    def fetch(self) -> str:
        """Download and unpack the packages unless already done; the Docker version."""
        marker = self.dir / "unpacked"
        if not marker.exists():
            d = self.dir / "apt"
            for sub in ("lists/partial", "cache/archives/partial", "debs"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            (d / "sources.list").write_text(
                f"deb [signed-by={KEYRING}] {MIRROR} {self.suite} main\n"
            )
            (d / "status").touch()
            run(["apt-get", *self._apt(), "update"], timeout=300)
            debs = d / "debs"
            for old in debs.glob("*.deb"):
                old.unlink()
            subprocess.run(
                ["apt-get", *self._apt(), "download", *PACKAGES],
                cwd=debs,
                check=True,
                timeout=600,
                stdout=subprocess.DEVNULL,
            )
            if self.root.exists():
                run(["rm", "-rf", "--one-file-system", str(self.root)])
            for deb in sorted(debs.glob("*.deb")):
                run(["dpkg-deb", "-x", str(deb), str(self.root)], timeout=300)
            marker.write_text(self.version() + "\n")
        return self.version()

    def version(self) -> str:
        out = run([str(self.dockerd), "--version"]).stdout  # "Docker version 28.5.2+dfsg4, ..."
        return out.split()[2].rstrip(",")

    # -- running --------------------------------------------------------------------------

    def daemon_dirs(self) -> tuple[Path, Path, Path]:
        """Data root, exec root and pid file of this release's dockerd."""
        name = f"docker-{self.suite}"
        return STATE / name, RUNTIME / name / "exec", RUNTIME / name / "docker.pid"

    def start(self) -> Dockerd:
        data_root, exec_root, pidfile = self.daemon_dirs()
        for d in (data_root, exec_root, pidfile.parent):
            d.mkdir(parents=True, exist_ok=True)
        log = RUNTIME / f"docker-{self.suite}" / "dockerd.log"
        argv = [
            str(self.dockerd),
            f"--data-root={data_root}",
            f"--exec-root={exec_root}",
            f"--pidfile={pidfile}",
        ]
        with log.open("ab") as out:
            subprocess.run(
                ["setsid", "-f", *argv],
                env={**os.environ, "PATH": self.path_env()},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                check=True,
                timeout=30,
            )
        client = [str(self.client), "version", "-f", "{{.Server.Version}}"]
        wait_until(
            lambda: run(client, check=False).returncode == 0,
            timeout=90,
            what=f"dockerd {self.suite} to answer (log: {log})",
        )
        return Dockerd(pidfile=pidfile, log=log)


def _stop(dockerd: Dockerd) -> None:
    if dockerd.running():
        dockerd.stop()
    # Its containerd, should it outlive dockerd (it must not stay behind).
    for pid in managed_containerd(dockerd.exec_root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    wait_until(
        lambda: not managed_containerd(dockerd.exec_root), timeout=60, what="containerd to stop"
    )


@contextlib.contextmanager
def in_place_of_the_hosts(release: Release) -> Iterator[Dockerd]:
    """The release's dockerd instead of the host's; the host's is back afterwards."""
    host = Dockerd()
    host.stop()
    try:
        ours = release.start()
        try:
            yield ours
        finally:
            _stop(ours)
    finally:
        host.start()


def _run(release: Release, command: Sequence[str]) -> int:
    print(f"[docker-release] Docker {release.fetch()} from Debian {release.suite}", flush=True)
    with in_place_of_the_hosts(release):
        _, _, pidfile = release.daemon_dirs()
        env = {
            **os.environ,
            "PATH": release.path_env(),
            "OVS_E2E_DOCKER": str(release.client),
            "OVS_E2E_DOCKERD_PIDFILE": str(pidfile),
        }
        try:
            return subprocess.run(list(command), env=env, check=False).returncode
        except KeyboardInterrupt:
            return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.docker_release")
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("fetch", "version", "run"):
        p = sub.add_parser(action)
        p.add_argument("--suite", default="unstable", help="Debian suite (default: unstable)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    release = Release(args.suite)
    if args.action == "fetch":
        print(release.fetch())
        return 0
    if args.action == "version":
        print(release.version())
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    return _run(release, command)


if __name__ == "__main__":
    sys.exit(main())
