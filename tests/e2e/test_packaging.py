"""Every way of installing the plugin (packaging/), built and run for real, without a registry.

* the base image from Debian's packages (debootstrap + docker import, cached by tag) and the
  plugin image on it, from a local wheelhouse (packaging/build-image.sh --local-base);
* the image as a plain container (a v1 plugin) against the host's dockerd and Open vSwitch:
  the smoke test, `status` (text and JSON), JSON logs, Prometheus metrics, a clean stop;
* the managed (v2) plugin made from that image: create, enable, use as NAME:TAG, disable, remove;
* docker-compose.yml with Debian's docker-compose, with the host's Open vSwitch and with the
  bundled one (which must take the host's place: two userspace datapaths cannot share a host);
* the systemd unit under a real systemd (in a container with its own Open vSwitch): starts
  before docker.service, restarts on failure, stops cleanly.

Each test removes what it made even when it fails; the plugin images are removed at the end of
the session, the base images stay (cached by tag).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import wait_until
from testbed.http import answers_activate
from testbed.registry import local_registry
from testbed.suite import ci_mode

from . import packaging_support as pk
from .support import (
    OVS,
    PLUGIN_DIR,
    docker,
    ovs_bridge_exists,
    run,
)

pytestmark = pytest.mark.e2e

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    if TIMINGS:
        print("\npackaging timings (s): " + json.dumps(TIMINGS), file=sys.stderr)


@pytest.fixture(scope="module")
def image_context(tmp_path_factory: pytest.TempPathFactory, e2e_requirements: None) -> Path:
    """Build context of the plugin image; its wheels/ is the wheelhouse install.sh uses too."""
    return tmp_path_factory.mktemp("image-context")


@pytest.fixture(scope="module")
def plugin_image(image_context: Path) -> Iterator[str]:
    """The plugin image, built from this checkout on the local Debian base."""
    env = {"BUILD_CONTEXT": str(image_context), "BASE_IMAGE": pk.BASE_IMAGE}
    with pk.timed("base image (cached after the first build)", TIMINGS):
        pk.script(pk.PACKAGING / "build-base-image.sh", env={"BASE_IMAGE": pk.BASE_IMAGE})
    try:
        with pk.timed("plugin image", TIMINGS):
            tag = pk.script(
                pk.PACKAGING / "build-image.sh", "--local-base", pk.PLUGIN_IMAGE, env=env
            )
        assert tag == pk.PLUGIN_IMAGE
        yield tag
    finally:  # the Open vSwitch image is built by the compose tests
        docker("rmi", "-f", pk.PLUGIN_IMAGE, pk.OVS_IMAGE, check=False, timeout=120)


@pytest.fixture
def leftovers_removed(e2e_requirements: None) -> None:
    """What an interrupted run of these tests may have left."""
    pk.remove_labelled_containers()
    docker("rm", "-f", pk.PLUGIN_CONTAINER, pk.SYSTEMD_CONTAINER, check=False)
    for driver in (pk.CONTAINER_DRIVER, pk.MANAGED_PLUGIN, pk.COMPOSE_DRIVER, pk.BUNDLED_DRIVER):
        pk.remove_networks(driver)
    for project in pk.COMPOSE_PROJECTS:
        ids = pk.compose_containers(project)
        if ids:
            docker("rm", "-f", *ids, check=False, timeout=120)
    for plugin in (pk.MANAGED_PLUGIN, pk.ALIAS_PLUGIN):
        pk.remove_networks(plugin)
        docker("plugin", "rm", "-f", plugin, check=False)


def test_image_needs_no_registry(plugin_image: str) -> None:
    """The image is built on the local base, which came from Debian's packages."""
    base = docker("image", "inspect", "-f", "{{json .Config.Labels}}", pk.BASE_IMAGE).stdout
    assert "org.docker-ovs-plugin.base" in json.loads(base)
    out = docker("run", "--rm", "--entrypoint", "sh", plugin_image, "-c",
                 "docker-ovs-plugin --version && ovs-ofctl --version && iptables --version && "
                 "ip -V").stdout  # fmt: skip
    assert "0.1.0" in out
    assert "Open vSwitch" in out


def test_container_image(plugin_image: str, busybox_image: str, leftovers_removed: None) -> None:
    """The image as a v1 plugin: host network, NET_ADMIN + NET_RAW, the three mounts."""
    driver = pk.CONTAINER_DRIVER
    sock = pk.plugin_socket(driver)
    metrics_port = pk.free_port()
    caps = [a for cap in pk.PLUGIN_CAPS for a in ("--cap-add", cap)]
    env = pk.PkgDockerEnv(pk.ExternalPlugin(driver, sock), image=busybox_image, driver=driver)
    try:
        with pk.timed("container: start", TIMINGS):
            docker(
                "run", "-d", "--name", pk.PLUGIN_CONTAINER, "--network", "host", *caps,
                "-v", f"{PLUGIN_DIR}:{PLUGIN_DIR}",
                "-v", "/var/run/openvswitch:/var/run/openvswitch",
                "-v", "/var/run/docker.sock:/var/run/docker.sock",
                "--mount", "type=bind,source=/run,target=/run/host,bind-nonrecursive=true",
                plugin_image,
                "serve", "--name", driver, "--log-format", "json",
                "--metrics-address", f"127.0.0.1:{metrics_port}",
            )  # fmt: skip
            wait_until(lambda: answers_activate(sock), timeout=30, what=f"{sock}")
        with pk.timed("container: smoke", TIMINGS):
            net, a, b = pk.smoke(env, "10.211.1.0/24", "10.211.1.1")
        assert pk.network_driver(net.name) == driver
        pk.assert_shares_host_xtables_lock(pk.serving_pid(driver))

        def status_json() -> dict[str, object]:
            out = docker("exec", pk.PLUGIN_CONTAINER, "docker-ovs-plugin", "status",
                         "--name", driver, "--json").stdout  # fmt: skip
            return dict(json.loads(out))

        report = pk.wait_status_counters(status_json, net, [a, b])
        pk.check_status(report, driver, net, [a, b])
        table = docker("exec", pk.PLUGIN_CONTAINER, "docker-ovs-plugin", "status",
                       "--name", driver).stdout  # fmt: skip
        pk.check_status_table(table, net, [a, b])

        metrics = pk.scrape(metrics_port)
        assert metrics["docker_ovs_plugin_networks"] == 1
        assert metrics["docker_ovs_plugin_endpoints"] == 2
        created = (
            'docker_ovs_plugin_requests_total{code="200",method="NetworkDriver.CreateNetwork"}'
        )
        assert metrics[created] == 1
        joined = 'docker_ovs_plugin_request_duration_seconds_count{method="NetworkDriver.Join"}'
        assert metrics[joined] == 2
        assert f'docker_ovs_plugin_info{{driver="{driver}",version="0.1.0"}}' in metrics

        with pk.timed("container: removal", TIMINGS):
            errors = env.cleanup()
        assert not errors, errors
        assert not ovs_bridge_exists(net.bridge)
        assert docker("network", "inspect", net.name, check=False).returncode != 0

        with pk.timed("container: stop", TIMINGS):
            docker("stop", "--time", "20", pk.PLUGIN_CONTAINER, timeout=60)
        state = docker("inspect", "-f", "{{.State.ExitCode}}", pk.PLUGIN_CONTAINER).stdout
        assert state.strip() == "0"
        assert not sock.exists(), "the plugin left its socket behind"
        logs = docker("logs", pk.PLUGIN_CONTAINER).stderr
        records = pk.json_log_lines(logs)
        messages = [r["message"] for r in records]
        assert any(m.startswith(f"serving driver '{driver}'") for m in messages), messages
        assert messages[-1] == "stopped"
    finally:
        env.cleanup()
        docker("rm", "-f", pk.PLUGIN_CONTAINER, check=False)


def test_managed_plugin(plugin_image: str, busybox_image: str, leftovers_removed: None) -> None:
    """`docker plugin create` from the image's rootfs, enable, use as NAME:TAG, remove."""
    ref = pk.MANAGED_PLUGIN
    env = pk.PkgDockerEnv(pk.ExternalPlugin(ref), image=busybox_image, driver=ref)
    try:
        with pk.timed("managed: create", TIMINGS):
            out = pk.script(
                pk.PACKAGING / "managed-plugin" / "build.sh", "--image", plugin_image, ref
            )
        assert out == ref
        config = json.loads(docker("plugin", "inspect", "-f", "{{json .Config}}", ref).stdout)
        assert config["Interface"]["Types"] == ["docker.networkdriver/1.0"]
        assert config["Network"]["Type"] == "host"
        assert "CAP_NET_ADMIN" in config["Linux"]["Capabilities"]
        settings = json.loads(
            docker("plugin", "inspect", "-f", "{{json .Settings.Env}}", ref).stdout
        )
        assert f"DRIVER_NAME={ref}" in settings
        # Overlay networks over ssl: take the same settings as the image and the unit.
        assert {"OVN_NB=", "OVN_NB_PRIVATE_KEY=", "OVN_NB_CERTIFICATE=", "OVN_NB_CA_CERT="} <= set(
            settings
        )
        mounts = {m["Name"]: m for m in config["Mounts"]}
        assert mounts["ovn-pki"]["Destination"] == "/etc/ovn-pki", mounts
        assert mounts["host-run"]["Source"] == "/run", mounts
        with pk.timed("managed: enable", TIMINGS):
            docker("plugin", "enable", "--timeout", "60", ref, timeout=90)
        with pk.timed("managed: smoke", TIMINGS):
            net, a, b = pk.smoke(env, "10.211.2.0/24", "10.211.2.1")
        # The plugin records its networks under DRIVER_NAME; Docker's name for the driver must
        # be the same, or the reconciler would take its networks for someone else's.
        assert pk.network_driver(net.name) == ref
        pk.assert_shares_host_xtables_lock(pk.serving_pid(ref))

        def status_json() -> dict[str, object]:
            out = run([sys.executable, "-m", "docker_ovs_plugin", "status", "--name", ref,
                       "--json"]).stdout  # fmt: skip
            return dict(json.loads(out))

        report = pk.wait_status_counters(status_json, net, [a, b])
        pk.check_status(report, ref, net, [a, b])

        with pk.timed("managed: removal", TIMINGS):
            errors = env.cleanup()
            assert not errors, errors
            docker("plugin", "disable", ref, timeout=60)
            docker("plugin", "rm", ref, timeout=60)
        assert not ovs_bridge_exists(net.bridge)
    finally:
        env.cleanup()
        docker("plugin", "disable", "-f", ref, check=False, timeout=60)
        docker("plugin", "rm", "-f", ref, check=False, timeout=60)


def test_managed_plugin_from_a_registry_under_an_alias(
    plugin_image: str, busybox_image: str, leftovers_removed: None, tmp_path: Path
) -> None:
    """As users install it: `docker plugin push` to a registry, then `docker plugin install
    --alias`. DRIVER_NAME stays the pushed reference, so the name Docker shows as the
    networks' driver (the alias) is not the plugin's own: the reconciler, asking Docker by
    network id, must still keep every live network and endpoint."""
    alias = pk.ALIAS_PLUGIN
    driver = f"{alias}:latest"  # Docker finds a managed network driver by NAME:TAG only
    metrics_port = pk.free_port()
    env = pk.PkgDockerEnv(pk.ExternalPlugin(driver), image=busybox_image, driver=driver)
    with local_registry(tmp_path) as registry:
        ref = f"{registry}/docker-ovs-plugin:e2e"
        try:
            with pk.timed("registry: create + push", TIMINGS):
                pk.script(pk.PACKAGING / "managed-plugin" / "build.sh", "--image", plugin_image,
                          ref)  # fmt: skip
                docker("plugin", "push", ref, timeout=300)
                docker("plugin", "rm", "-f", ref, timeout=60)
            with pk.timed("registry: install", TIMINGS):
                docker("plugin", "install", "--alias", alias, "--grant-all-permissions", ref,
                       "RECONCILE_INTERVAL=1", f"METRICS_ADDRESS=127.0.0.1:{metrics_port}",
                       timeout=300)  # fmt: skip
            settings = json.loads(
                docker("plugin", "inspect", "-f", "{{json .Settings.Env}}", alias).stdout
            )
            assert f"DRIVER_NAME={ref}" in settings, settings
            net, a, b = pk.smoke(env, "10.211.3.0/24", "10.211.3.1")
            assert pk.network_driver(net.name) == driver  # not the plugin's DRIVER_NAME
            # First pass at once, the next after the 10 s grace, then one a second: by the
            # 15th, any network or endpoint taken for gone would have been removed.
            wait_until(
                lambda: pk.scrape(metrics_port)["docker_ovs_plugin_reconcile_passes_total"] >= 15,
                timeout=90,
                what="15 reconcile passes",
            )
            metrics = pk.scrape(metrics_port)
            assert metrics["docker_ovs_plugin_networks"] == 1, metrics
            assert metrics["docker_ovs_plugin_endpoints"] == 2, metrics
            assert metrics["docker_ovs_plugin_reconcile_actions_total"] == 0, metrics
            assert ovs_bridge_exists(net.bridge)
            env.assert_ping(a, b.ip)
            errors = env.cleanup()
            assert not errors, errors
            assert not ovs_bridge_exists(net.bridge)
        finally:
            env.cleanup()
            for plugin in (alias, ref):
                docker("plugin", "disable", "-f", plugin, check=False, timeout=60)
                docker("plugin", "rm", "-f", plugin, check=False, timeout=60)


def test_compose_with_host_ovs(
    plugin_image: str, busybox_image: str, leftovers_removed: None
) -> None:
    """docker-compose.yml, only the plugin service, on the host's Open vSwitch."""
    project, driver = "ovspkgc", pk.COMPOSE_DRIVER
    sock = pk.plugin_socket(driver)
    cenv = {
        "PLUGIN_IMAGE": plugin_image,
        "DRIVER_NAME": driver,
        "OVS_RUNDIR": "/var/run/openvswitch",
        "OVS_IMAGE": pk.OVS_IMAGE,
        "BASE_IMAGE": pk.BASE_IMAGE,
    }
    env = pk.PkgDockerEnv(pk.ExternalPlugin(driver, sock), image=busybox_image, driver=driver)
    try:
        with pk.timed("compose (host OVS): up", TIMINGS):
            pk.compose(project, cenv, "up", "-d", "--no-deps", "plugin")
            wait_until(lambda: answers_activate(sock), timeout=30, what=f"{sock}")
        assert len(pk.compose_containers(project)) == 1  # no Open vSwitch container
        with pk.timed("compose (host OVS): smoke", TIMINGS):
            net, a, b = pk.smoke(env, "10.211.3.0/24", "10.211.3.1")
        table = pk.compose(project, cenv, "exec", "-T", "plugin", "docker-ovs-plugin", "status",
                           "--name", driver)  # fmt: skip
        assert net.name in table and a.name in table and b.name in table, table
        errors = env.cleanup()
        assert not errors, errors
        with pk.timed("compose (host OVS): down", TIMINGS):
            pk.compose(project, cenv, "down", "--volumes", "--timeout", "20")
        assert not pk.compose_containers(project)
        assert not sock.exists()
        assert not ovs_bridge_exists(net.bridge)
    finally:
        env.cleanup()
        pk.compose_down(project, cenv)


BUNDLED_REASON = (
    "the bundled Open vSwitch must take the host's place for a while (two userspace datapaths "
    "cannot share one host: both need the TAP device ovs-netdev), so this test stops the host's "
    "Open vSwitch for about half a minute; it runs under CI=true or OVS_E2E_STOP_HOST_OVS=1"
)


def test_compose_with_bundled_ovs(
    plugin_image: str, busybox_image: str, leftovers_removed: None
) -> None:
    """docker-compose.yml as it comes: Open vSwitch in a container, then the plugin.

    The Open vSwitch service runs on the host's own database and run directory (OVS_DBDIR,
    OVS_RUNDIR), so every other user of the host's switch finds its bridges again afterwards.
    """
    if not (ci_mode() or os.environ.get("OVS_E2E_STOP_HOST_OVS", "") in {"1", "true", "yes"}):
        pytest.skip(BUNDLED_REASON)
    project, driver = "ovspkgb", pk.BUNDLED_DRIVER
    sock = pk.plugin_socket(driver)
    cenv = {
        "PLUGIN_IMAGE": plugin_image,
        "DRIVER_NAME": driver,
        "OVS_IMAGE": pk.OVS_IMAGE,
        "BASE_IMAGE": pk.BASE_IMAGE,
        "OVS_RUNDIR": "/var/run/openvswitch",
        "OVS_DBDIR": "/etc/openvswitch",
    }
    env = pk.PkgDockerEnv(pk.ExternalPlugin(driver, sock), image=busybox_image, driver=driver)
    stopped = False
    try:
        with pk.timed("compose (bundled OVS): build", TIMINGS):
            pk.compose(project, cenv, "build", "openvswitch")
        with pk.timed("compose (bundled OVS): up", TIMINGS):
            OVS.stop()
            stopped = True
            # up waits until the Open vSwitch container is healthy before starting the plugin.
            pk.compose(project, cenv, "up", "-d")
            wait_until(lambda: answers_activate(sock), timeout=60, what=f"{sock}")
        ovs_container = [
            c for c in pk.compose_containers(project)
            if "openvswitch" in docker("inspect", "-f", "{{.Name}}", c).stdout
        ]  # fmt: skip
        assert len(ovs_container) == 1
        health = docker("inspect", "-f", "{{.State.Health.Status}}", ovs_container[0]).stdout
        assert health.strip() == "healthy"
        with pk.timed("compose (bundled OVS): smoke", TIMINGS):
            net, a, b = pk.smoke(env, "10.211.4.0/24", "10.211.4.1")
        # The bridge is the containerised ovs-vswitchd's.
        shown = docker("exec", ovs_container[0], "ovs-vsctl", "list-ports", net.bridge).stdout
        assert a.host_veth in shown.split() and b.host_veth in shown.split()
        errors = env.cleanup()
        assert not errors, errors
        with pk.timed("compose (bundled OVS): down", TIMINGS):
            pk.compose(project, cenv, "down", "--timeout", "20")
        assert not pk.compose_containers(project)
        assert not sock.exists()
        bridge = net.bridge
    finally:
        with contextlib.suppress(Exception):
            env.cleanup()
        pk.compose_down(project, cenv)
        if stopped:
            with pk.timed("compose (bundled OVS): host OVS back", TIMINGS):
                OVS.start()
    assert OVS.running()
    assert not ovs_bridge_exists(bridge)


SYSTEMD_MASKED = (
    # Units that would act on the host's kernel (sysctls, modules, binfmt) or need a console.
    "systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service "
    "proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount systemd-udevd.service "
    "systemd-firstboot.service getty@.service console-getty.service systemd-hwdb-update.service "
    "systemd-random-seed.service systemd-logind.service sys-kernel-config.mount "
    "sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount"
)

#: docker.service stand-in: starts only if the plugin already answers on its socket.
DOCKER_STUB = f"""[Unit]
Description=stand-in for dockerd: needs the plugin's socket answering when it starts

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/python3 /usr/local/bin/check-plugin {PLUGIN_DIR}/{pk.SYSTEMD_DRIVER}.sock
"""

CHECK_PLUGIN = """import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"POST /Plugin.Activate HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 0\\r\\n"
          b"Connection: close\\r\\n\\r\\n")
data = b""
while chunk := s.recv(4096):  # headers and body may come in separate reads
    data += chunk
sys.exit(0 if b"NetworkDriver" in data else 1)
"""


@pytest.fixture(scope="module")
def systemd_image(image_context: Path) -> Iterator[str]:
    """Debian with systemd as PID 1 and Debian's openvswitch-switch units (no registry)."""
    with pk.timed("systemd base image (cached after the first build)", TIMINGS):
        pk.script(
            pk.PACKAGING / "build-base-image.sh",
            env={"BASE_IMAGE": pk.SYSTEMD_BASE_IMAGE, "EXTRA_PACKAGES": "systemd,systemd-sysv"},
        )
    context = image_context / "systemd-image"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(
        f"FROM {pk.SYSTEMD_BASE_IMAGE}\n"
        f"RUN systemctl mask {SYSTEMD_MASKED}\n"
        "ENV container=docker\n"
        "STOPSIGNAL SIGRTMIN+3\n"
        'CMD ["/sbin/init"]\n'
    )
    try:
        docker("build", "-q", "-t", pk.SYSTEMD_IMAGE, str(context), timeout=300)
        yield pk.SYSTEMD_IMAGE
    finally:
        docker("rmi", "-f", pk.SYSTEMD_IMAGE, check=False, timeout=120)


def test_systemd_unit(
    systemd_image: str, plugin_image: str, image_context: Path, leftovers_removed: None
) -> None:
    """install.sh + the unit under a real systemd: after Open vSwitch, before docker.service,
    ready only when the socket answers, restarted after a crash, stopped cleanly with SIGTERM.

    systemd is not PID 1 on the test machine, so it runs in a container (own network
    namespace, its own Open vSwitch started by Debian's units); no Docker network is made."""
    name = pk.SYSTEMD_CONTAINER
    sock = f"{PLUGIN_DIR}/{pk.SYSTEMD_DRIVER}.sock"

    def sh(command: str, *, check: bool = True, input_text: str | None = None) -> str:
        argv = ["docker", "exec", *(["-i"] if input_text is not None else []), name, "sh", "-c"]
        proc = run([*argv, command], check=check, timeout=120, input_text=input_text)
        return proc.stdout

    def show(unit: str, *props: str) -> dict[str, str]:
        out = sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    try:
        with pk.timed("systemd: boot", TIMINGS):
            docker(
                "run", "-d", "--name", name, "--cgroupns=private",
                "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
                "--security-opt", "seccomp=unconfined",
                "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
                systemd_image,
            )  # fmt: skip
            # Until systemd's bus is up, systemctl prints nothing on stdout.
            wait_until(
                lambda: (
                    sh("systemctl is-system-running --wait", check=False).strip()
                    in {"running", "degraded"}
                ),
                timeout=90,
                interval=0.5,
                what="systemd to boot",
            )
            assert show("ovs-vswitchd.service", "ActiveState")["ActiveState"] == "active"

        with pk.timed("systemd: install.sh", TIMINGS):
            docker("exec", name, "mkdir", "-p", "/src")
            docker("cp", str(pk.PACKAGING), f"{name}:/src/packaging")
            docker("cp", str(pk.REPO / "README.md"), f"{name}:/src/README.md")
            docker("cp", str(image_context / "wheels"), f"{name}:/src/wheels")
            sh(
                "mkdir -p /etc/default && cat > /etc/default/docker-ovs-plugin",
                input_text=f"DRIVER_NAME={pk.SYSTEMD_DRIVER}\n"
                "OPTIONS=--log-format json --reconcile-interval 0\n",
            )
            sh("/src/packaging/systemd/install.sh /src/wheels")
        # The unit file as shipped: systemd's own checker, with the executable installed.
        verify = run(
            ["docker", "exec", name, "systemd-analyze", "verify", "docker-ovs-plugin.service"],
            check=False,
        )
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
        unit = show("docker-ovs-plugin.service", "ActiveState", "UnitFileState", "After", "Type")
        assert unit["ActiveState"] == "active" and unit["UnitFileState"] == "enabled", unit
        assert unit["Type"] == "notify"
        assert "ovs-vswitchd.service" in unit["After"].split()

        # Before dockerd: starting docker.service pulls the plugin in (WantedBy) and waits for
        # its READY=1; the stand-in fails unless the socket answers at that instant.
        sh("cat > /usr/local/bin/check-plugin", input_text=CHECK_PLUGIN)
        sh("cat > /etc/systemd/system/docker.service", input_text=DOCKER_STUB)
        sh("systemctl daemon-reload && systemctl stop docker-ovs-plugin")
        assert sh(f"test -e {sock} && echo yes || echo no").strip() == "no"
        with pk.timed("systemd: start docker.service (plugin first)", TIMINGS):
            started = run(["docker", "exec", name, "systemctl", "start", "docker.service"],
                          check=False, timeout=120)  # fmt: skip
        journal = sh("journalctl -u docker.service -u docker-ovs-plugin.service -o short "
                     "--no-pager | tail -n 40", check=False)  # fmt: skip
        assert started.returncode == 0, f"{started.stderr}\n{journal}"
        assert show("docker.service", "Result")["Result"] == "success"
        assert show("docker-ovs-plugin.service", "ActiveState")["ActiveState"] == "active"

        # Restart on failure.
        before = int(show("docker-ovs-plugin.service", "NRestarts")["NRestarts"])
        sh("systemctl kill --signal=KILL docker-ovs-plugin.service")
        with pk.timed("systemd: restart after a crash", TIMINGS):
            wait_until(
                lambda: (
                    int(show("docker-ovs-plugin.service", "NRestarts")["NRestarts"]) > before
                    and show("docker-ovs-plugin.service", "ActiveState")["ActiveState"] == "active"
                ),
                timeout=30,
                what="systemd to restart the plugin",
            )
            check = ["docker", "exec", name, "python3", "/usr/local/bin/check-plugin", sock]
            wait_until(
                lambda: run(check, check=False).returncode == 0,
                timeout=30,
                what="the restarted plugin to answer",
            )

        # Clean stop: SIGTERM, exit status 0 well within TimeoutStopSec, socket removed.
        stop_began = time.monotonic()
        sh("systemctl stop docker-ovs-plugin.service")
        stop_seconds = time.monotonic() - stop_began
        TIMINGS["systemd: stop"] = round(stop_seconds, 1)
        stopped = show("docker-ovs-plugin.service", "Result", "ExecMainStatus", "ActiveState")
        assert stopped == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}
        assert stop_seconds < 30
        assert sh(f"test -e {sock} && echo yes || echo no").strip() == "no"
        journal = sh("journalctl -u docker-ovs-plugin.service -o cat --no-pager")
        messages = [
            json.loads(line)["message"] for line in journal.splitlines() if line.startswith("{")
        ]
        assert "received SIGTERM, stopping" in messages and messages[-1] == "stopped", messages
    finally:
        docker("rm", "-f", name, check=False, timeout=60)
