"""The `docker-ovs-plugin` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from docker_ovs_plugin import __version__, logs, sdnotify
from docker_ovs_plugin.adapters import datapath
from docker_ovs_plugin.service.errors import PluginError
from docker_ovs_plugin.settings import DEFAULT_NAME, DEFAULT_OVSDB, PLUGIN_DIR, Settings

if TYPE_CHECKING:  # keeps --help free of OVS imports
    from docker_ovs_plugin.bootstrap import Core

LOG = logging.getLogger("docker_ovs_plugin")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docker-ovs-plugin",
        description="Docker network driver that attaches containers to Open vSwitch.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"driver name for `docker network create -d NAME` (default: {DEFAULT_NAME})",
    )
    common.add_argument(
        "--socket",
        type=Path,
        default=None,
        help=f"socket path (default: {PLUGIN_DIR}/NAME.sock, where Docker looks for plugins)",
    )
    common.add_argument(
        "--ovsdb",
        default=DEFAULT_OVSDB,
        help=f"OVSDB address, e.g. unix:/path/db.sock (default: {DEFAULT_OVSDB})",
    )
    common.add_argument(
        "--ovs-rundir",
        type=Path,
        default=None,
        help="Open vSwitch run directory holding BRIDGE.mgmt OpenFlow sockets "
        "(default: the directory of a unix: --ovsdb socket)",
    )
    common.add_argument(
        "--datapath-type",
        choices=datapath.CHOICES,
        default="auto",
        help="OVS datapath for new bridges: system (kernel module), netdev (userspace), or auto: "
        "system when the openvswitch module is loaded (default: auto)",
    )
    common.add_argument(
        "--ovsdb-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for an OVSDB transaction before failing the request (default: 10)",
    )
    common.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level; debug logs every request with its timing (default: info)",
    )
    common.add_argument(
        "--log-format",
        default="text",
        choices=logs.FORMATS,
        help="text for people, json for log collectors: one object per line (default: text)",
    )
    common.add_argument(
        "--docker-url",
        default="unix:///var/run/docker.sock",
        help="Docker API the background reconciler asks which endpoints still exist; "
        "'' turns that check off (default: unix:///var/run/docker.sock)",
    )
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the network driver to Docker (foreground, as root)",
        description="Serve the Docker network driver on a unix socket until SIGTERM/SIGINT.",
    )
    serve.add_argument(
        "--reconcile-interval",
        type=float,
        default=30.0,
        help="seconds between background passes that collect what Docker forgot and put back "
        "what OVS lost; 0 turns them off (default: 30)",
    )
    serve.add_argument(
        "--reconcile-grace",
        type=float,
        default=10.0,
        help="seconds something must keep looking stale before a pass removes it (default: 10)",
    )
    _add_ovn_flags(serve)
    serve.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        default=None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="report leftovers and inconsistencies between Docker, OVS, the kernel and iptables",
        description="Compare Docker, Open vSwitch, the kernel and iptables; print what is "
        "inconsistent; with --fix, repair it. Exit status 0 when all is well, 1 otherwise.",
    )
    doctor.add_argument("--fix", action="store_true", help="repair what is found")
    _add_ovn_flags(doctor)  # the same as serve's: doctor checks this host's part of OVN
    status = sub.add_parser(
        "status",
        parents=[common],
        help="show networks and endpoints: container, IP, MAC, OVS port, ofport, VLAN, counters",
        description="Show this driver's networks and, for every endpoint, its container, "
        "addresses, OVS port, ofport, VLAN and packet counters (as OVS counts them on the port: "
        "RX is what the container sent). Reads OVSDB and asks Docker for names.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.add_argument(
        "--all", action="store_true", help="every driver name (plugin instance) on this OVS"
    )
    return parser


def _add_ovn_flags(parser: argparse.ArgumentParser) -> None:
    ovn = parser.add_argument_group("multi-host overlay networks (OVN)")
    ovn.add_argument(
        "--ovn-nb",
        metavar="REMOTES",
        default=None,
        help="OVN northbound database, a comma list of a cluster's members, e.g. "
        "ssl:192.0.2.11:6641,ssl:192.0.2.12:6641; enables -o ovs.mode=overlay (default: off)",
    )
    ovn.add_argument("--ovn-nb-private-key", type=Path, default=None, help="for ssl: remotes")
    ovn.add_argument("--ovn-nb-certificate", type=Path, default=None, help="for ssl: remotes")
    ovn.add_argument("--ovn-nb-ca-cert", type=Path, default=None, help="for ssl: remotes")
    ovn.add_argument(
        "--ovn-nb-insecure-tcp",
        action="store_true",
        help="allow plain tcp: remotes: INSECURE, anyone on the network can read and change "
        "every overlay network; for labs only",
    )
    ovn.add_argument(
        "--ovn-join-timeout",
        type=float,
        default=30.0,
        help="seconds a container start waits for ovn-controller to claim its port (default: 30; "
        "after an NB leader loss ovn-northd reconnects with a back-off of 1, 2, 4, 8 s: new ports "
        "were bound 11-15 s later, measured)",
    )
    ovn.add_argument(
        "--ovn-fence-period",
        type=float,
        default=120.0,
        help="seconds a host may go without heartbeat in the northbound database before "
        "another host removes its endpoints and frees its addresses (default: 120)",
    )
    ovn.add_argument(
        "--ovn-rundir",
        type=Path,
        default=Path("/var/run/ovn"),
        help="ovn-controller's run directory, with its pid file and control socket; doctor "
        "asks it whether it is connected (default: /var/run/ovn)",
    )


def _doctor(settings: Settings, fix: bool) -> int:
    from docker_ovs_plugin import bootstrap  # noqa: PLC0415 (keeps --help free of OVS imports)

    try:
        core = bootstrap.build_core(settings)
    except (PluginError, OSError) as e:
        LOG.error("cannot start: %s", e)
        return 2
    try:
        ovn_problems = _doctor_ovn(core, settings)
        networks, endpoints = core.driver.load()
        print(f"{len(networks)} networks, {len(endpoints)} endpoints in OVSDB")
        if core.overlay is not None and core.overlay.loaded:
            print(
                f"{len(core.overlay.networks())} overlay networks, "
                f"{len(core.overlay.endpoints())} overlay endpoints (OVN northbound, br-int)"
            )
        findings = core.reconciler.findings()
        if not findings:
            print("no problems found" if not ovn_problems else f"{ovn_problems} OVN problem(s)")
            return 0 if not ovn_problems else 1
        for f in findings:
            print(f"- {f.message}")
        if not fix:
            print(f"{len(findings) + ovn_problems} problem(s); run with --fix to repair")
            return 1
        applied = core.reconciler.run_once(confirmed=True)
        left = core.reconciler.findings()
        print(f"repaired {len(applied)}; {len(left)} problem(s) left")
        for f in left:
            print(f"- still: {f.message}")
        return 0 if not left and not ovn_problems else 1
    finally:
        core.close()


def _doctor_ovn(core: Core, settings: Settings) -> int:
    """Print the checks of this host's part of OVN; the number of problems."""
    from docker_ovs_plugin import bootstrap  # noqa: PLC0415
    from docker_ovs_plugin.service.ovn_doctor import check_host  # noqa: PLC0415

    link = core.northbound
    if link is None:
        return 0
    connected = link.connect_once()  # bounded by --ovsdb-timeout; loads the overlay state
    hosts = bootstrap.host_rows(core)
    checks = check_host(
        bootstrap.ovn_probe(core, settings),
        remotes=link.remotes,
        nb_error=None if connected else (link.last_error or "no answer"),
        host_state=hosts.host if connected and hosts is not None else None,
        fence_period=settings.ovn_fence_period,
    )
    print("OVN (this host):")
    for check in checks:
        print(f"  {'ok ' if check.ok else '-  '} {check.message}")
    return sum(not check.ok for check in checks)


def _status(settings: Settings, *, as_json: bool, all_drivers: bool) -> int:
    from docker_ovs_plugin import bootstrap, status  # noqa: PLC0415 (as in _doctor)

    try:
        sources = bootstrap.build_status(settings)
    except (PluginError, OSError) as e:
        LOG.error("cannot read Open vSwitch: %s", e)
        return 2
    try:
        report = status.collect(
            sources.records, sources.ports, sources.docker, None if all_drivers else settings.name
        )
    finally:
        sources.close()
    print(status.render_json(report) if as_json else status.render_table(report), end="")
    return 0


def _serve(settings: Settings) -> int:
    from docker_ovs_plugin import bootstrap  # noqa: PLC0415 (keeps --help free of OVS imports)

    try:
        app = bootstrap.build(settings)
    except (PluginError, OSError) as e:
        LOG.error("cannot start: %s", e)
        return 1

    def stop(signum: int, _frame: FrameType | None) -> None:
        LOG.info("received %s, stopping", signal.Signals(signum).name)
        sdnotify.notify("STOPPING=1")
        # shutdown() waits for serve_forever to return, so it must run on another thread.
        threading.Thread(target=app.server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sdnotify.notify("READY=1")  # the socket accepts connections from here on
    try:
        app.server.serve_forever()
    finally:
        app.close()
    LOG.info("stopped")
    return 0


_SSL_FILES = ("ovn_nb_private_key", "ovn_nb_certificate", "ovn_nb_ca_cert")


def _check_ovn(args: argparse.Namespace) -> str | None:
    """What is wrong with the --ovn-nb* flags, or None."""
    remotes = getattr(args, "ovn_nb", None)
    if remotes is None:
        return None
    problems = []
    members = [r.strip() for r in remotes.split(",")]
    for member in members:
        kind = member.split(":", 1)[0]
        if kind not in ("ssl", "tcp", "unix"):
            problems.append(f"--ovn-nb {member!r}: use ssl:HOST:PORT, tcp:HOST:PORT or unix:PATH")
        elif kind == "tcp" and not args.ovn_nb_insecure_tcp:
            problems.append(
                f"--ovn-nb {member}: plain tcp is unencrypted and unauthenticated; use ssl: "
                "or give --ovn-nb-insecure-tcp (labs only)"
            )
    if any(m.startswith("ssl:") for m in members):
        missing = [f"--{f.replace('_', '-')}" for f in _SSL_FILES if getattr(args, f) is None]
        if missing:
            problems.append(f"--ovn-nb with ssl: remotes needs {', '.join(missing)}")
        absent = [str(p) for f in _SSL_FILES if (p := getattr(args, f)) and not p.is_file()]
        if absent:
            problems.append(f"--ovn-nb: no such file {', '.join(absent)}")
    if args.ovn_join_timeout <= 0:
        problems.append("--ovn-join-timeout must be positive")
    if args.ovn_fence_period <= 0:
        problems.append("--ovn-fence-period must be positive")
    return "; ".join(problems) or None


def _quiet_libraries(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.INFO or not record.name.startswith(("ovsdbapp", "pyroute2"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (problem := _check_ovn(args)) is not None:
        parser.error(problem)
    logs.configure(args.log_level, args.log_format, sys.stderr)
    # Library internals (poll loops, netlink dumps) would drown the per-request debug lines.
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_libraries)
    settings = Settings(
        name=args.name,
        socket=args.socket,
        ovsdb=args.ovsdb,
        datapath_type=args.datapath_type,
        ovsdb_timeout=args.ovsdb_timeout,
        ovs_rundir=args.ovs_rundir,
        docker_url=args.docker_url,
        reconcile_interval=getattr(args, "reconcile_interval", 0.0),
        reconcile_grace=getattr(args, "reconcile_grace", 10.0),
        metrics_address=getattr(args, "metrics_address", None),
        ovn_nb=getattr(args, "ovn_nb", None),
        ovn_nb_private_key=getattr(args, "ovn_nb_private_key", None),
        ovn_nb_certificate=getattr(args, "ovn_nb_certificate", None),
        ovn_nb_ca_cert=getattr(args, "ovn_nb_ca_cert", None),
        ovn_join_timeout=getattr(args, "ovn_join_timeout", 30.0),
        ovn_fence_period=getattr(args, "ovn_fence_period", 120.0),
        ovn_rundir=getattr(args, "ovn_rundir", Path("/var/run/ovn")),
    )
    if args.command == "doctor":
        return _doctor(settings, args.fix)
    if args.command == "status":
        return _status(settings, as_json=args.json, all_drivers=args.all)
    return _serve(settings)
