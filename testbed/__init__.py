"""The test bed of the end-to-end suite (tests/e2e), the multi-host suite (tests/multihost), the
contract tests (tests/contract) and the benchmarks (benchmarks/).

What they need to drive the real tools on a host: commands with timeouts (:mod:`.commands`), how
to reach one host's dockerd, Open vSwitch and plugin sockets (:mod:`.host`), the busybox test
image (:mod:`.image`), the plugin as a child process (:mod:`.plugin`) and over its socket
(:mod:`.http`), the host's daemons (:mod:`.daemons`), Docker networks and containers
(:mod:`.docker`), host snapshots (:mod:`.snapshot`) and the "outside host" namespace
(:mod:`.outside`), a private Open vSwitch in a directory of its own (:mod:`.ovs_sandbox`, for
the contract tests), and a cluster of Docker hosts on OVN in namespaces with its fault levers
(:mod:`.multihost`, with :mod:`.ovn` and :mod:`.procs`). A :class:`~testbed.suite.Suite` names
what one suite creates (driver, label, prefix), so the suites stay out of each other's way. Not
part of the wheel.
"""

from testbed.commands import CommandError, WaitTimeout, run, wait_until
from testbed.docker import Container, DockerEnv, Network
from testbed.host import LOCAL, Host
from testbed.http import PluginClient, plugin_call
from testbed.image import IMAGE_TAG, build_busybox_image
from testbed.outside import OutsideHost
from testbed.plugin import PluginError, PluginProcess
from testbed.snapshot import HostSnapshot, Ownership, Snapshots
from testbed.suite import Suite

__all__ = [
    "IMAGE_TAG",
    "LOCAL",
    "CommandError",
    "Container",
    "DockerEnv",
    "Host",
    "HostSnapshot",
    "Network",
    "OutsideHost",
    "Ownership",
    "PluginClient",
    "PluginError",
    "PluginProcess",
    "Snapshots",
    "Suite",
    "WaitTimeout",
    "build_busybox_image",
    "plugin_call",
    "run",
    "wait_until",
]
