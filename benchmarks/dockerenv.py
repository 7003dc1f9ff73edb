"""Docker objects of the suite: networks (labelled, removed at the end), containers, the leftover
sweep. The image, the removal and the sweep themselves are the test bed's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from benchmarks.common import HOST, IMAGE, LABEL, SUITE, log
from testbed import docker as tb_docker
from testbed.commands import CommandError
from testbed.image import build_busybox_image


def ensure_image() -> None:
    if build_busybox_image(HOST, IMAGE):
        log(f"built image {IMAGE} from the host's static busybox")


@dataclass
class DockerNetwork:
    name: str
    driver: str

    @property
    def id(self) -> str:
        return HOST.docker("network", "inspect", "-f", "{{.Id}}", self.name).stdout.strip()


@contextlib.contextmanager
def network(driver: str, kind: str, *options: str) -> Iterator[DockerNetwork]:
    """A labelled network of ``driver`` for the duration of the block."""
    name = SUITE.unique_name(kind)
    opts = [f"--opt={o}" for o in options]
    HOST.docker("network", "create", "-d", driver, "--label", LABEL, *opts, name, timeout=120)
    try:
        yield DockerNetwork(name, driver)
    finally:
        with contextlib.suppress(CommandError):  # a hung removal: the next run's sweep
            tb_docker.remove_network(HOST, name)


def run_detached(name: str, net: str, *cmd: str) -> None:
    HOST.docker(
        "run", "-d", "--name", name, "--label", LABEL, "--net", net, IMAGE, *cmd, timeout=120
    )


def container_pid(name: str) -> int:
    return tb_docker.container_pid(HOST, name)


def container_ip(name: str) -> str:
    return tb_docker.container_ip(HOST, name)


def remove_containers(names: list[str]) -> None:
    tb_docker.remove_containers(HOST, names, timeout=300)


def sweep() -> None:
    """Remove containers and networks an interrupted earlier run left (found by label)."""
    containers, networks = tb_docker.sweep(HOST, SUITE)
    if containers or networks:
        log(
            f"removed {len(containers)} containers and {len(networks)} networks left by an "
            "earlier run"
        )
