"""scripts/setup.sh never harms the Docker or Open vSwitch a host already has.

Each case is a fresh Debian 12 (the packaging tests' base image, from Debian's packages,
without its Open vSwitch) in a container, with setup.sh of this checkout and an apt-get that
only records what it is asked to install (and then fails, which ends setup.sh there): Docker
CE installed, a dockerd that came from no package answering on /var/run/docker.sock (the
host's, bind-mounted), an Open vSwitch run elsewhere (the host's OVSDB socket), and, as the
control, a host with neither.
"""

from __future__ import annotations

import pytest

from . import packaging_support as pk
from .support import docker

pytestmark = pytest.mark.e2e

# Records `apt-get install` and fails it (setup.sh stops there); `update` succeeds offline.
APT_SHIM = """#!/bin/sh
echo "apt-get $*" >>/tmp/apt-calls
[ "$1" = update ] && exit 0
exit 100
"""

# The base image carries Open vSwitch (for the bundled one): a fresh host has none.
NO_OVS = """printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
dpkg --purge --force-depends openvswitch-switch openvswitch-common >/dev/null 2>&1
rm /usr/sbin/policy-rc.d
"""

# A package of that name installed, as Docker CE's repository would install it.
FAKE_PACKAGE = """set -e
mkdir -p /tmp/pkg/DEBIAN
printf 'Package: %s\\nVersion: 5:28.5.2-1~debian.12~bookworm\\nArchitecture: all\\n\
Maintainer: test <test@example.org>\\nDescription: stands in for Docker CE\\n' "$1" \
    >/tmp/pkg/DEBIAN/control
dpkg-deb --build /tmp/pkg /tmp/pkg.deb >/dev/null
dpkg -i /tmp/pkg.deb >/dev/null
"""


@pytest.fixture(scope="module")
def base_image(e2e_requirements: None) -> str:
    pk.script(pk.PACKAGING / "build-base-image.sh", env={"BASE_IMAGE": pk.BASE_IMAGE})
    return pk.BASE_IMAGE


def setup_sh(image: str, *, before: str = "", mounts: tuple[str, ...] = ()) -> tuple[str, str]:
    """Run setup.sh in a new container; (what apt-get was asked to install, setup's stderr)."""
    script = (
        f"{NO_OVS}{before}\n"
        "printf '%s' \"$APT_SHIM\" >/usr/local/sbin/apt-get && chmod 755 /usr/local/sbin/apt-get\n"
        "bash /src/scripts/setup.sh >/tmp/setup.out 2>&1\n"
        'echo "setup exited $?" >>/tmp/setup.out\n'
        "cat /tmp/apt-calls 2>/dev/null; echo ---; cat /tmp/setup.out\n"
    )
    volumes = [a for m in mounts for a in ("-v", m)]
    out = docker(
        "run", "--rm", "--label", pk.PKG_LABEL, "-e", f"APT_SHIM={APT_SHIM}",
        "-v", f"{pk.REPO / 'scripts'}:/src/scripts:ro", *volumes,
        image, "sh", "-c", script, timeout=180,
    ).stdout  # fmt: skip
    calls, _, setup_log = out.partition("---\n")
    installs = [line for line in calls.splitlines() if " install " in line]
    assert installs, f"setup.sh installed nothing:\n{out}"
    return installs[0], setup_log


def test_a_host_with_neither_gets_debians_docker_and_ovs(base_image: str) -> None:
    install, _ = setup_sh(base_image)
    assert " docker.io" in install and " openvswitch-switch" in install, install


def test_a_docker_ce_host_keeps_its_docker(base_image: str) -> None:
    # apt-get install docker.io on it would remove docker-ce and containerd.io.
    for package in ("docker-ce", "moby-engine"):
        before = f"cat >/tmp/fake-package.sh <<'EOF'\n{FAKE_PACKAGE}EOF\n"
        before += f"sh /tmp/fake-package.sh {package}"
        install, log = setup_sh(base_image, before=before)
        assert " docker.io" not in install, install
        assert f"package {package} is installed" in log, log
        assert " openvswitch-switch" in install, install


def test_a_host_whose_dockerd_came_from_no_package_keeps_it(base_image: str) -> None:
    install, log = setup_sh(base_image, mounts=("/var/run/docker.sock:/var/run/docker.sock",))
    assert " docker.io" not in install, install
    assert "a Docker socket is at /var/run/docker.sock" in log, log


def test_an_open_vswitch_run_elsewhere_is_kept(base_image: str) -> None:
    install, log = setup_sh(base_image, mounts=("/var/run/openvswitch:/var/run/openvswitch",))
    assert " openvswitch-switch" not in install and " ovn-host" not in install, install
    assert " openvswitch-common" in install, install  # its tools, no daemons
    assert "an OVSDB socket is at /var/run/openvswitch/db.sock" in log, log
    assert "nor OVN's packages" in log, log
