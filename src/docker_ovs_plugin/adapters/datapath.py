"""Which Open vSwitch datapath this host can run."""

from __future__ import annotations

from pathlib import Path

SYSTEM = "system"
NETDEV = "netdev"
CHOICES = ("auto", SYSTEM, NETDEV)


def detect(sys_module: Path = Path("/sys/module/openvswitch")) -> str:
    """The kernel datapath when the openvswitch module is loaded, else the userspace one.

    ovs-vswitchd's start script loads the module when the kernel has it, so by the time the plugin
    starts its presence is the answer.
    """
    return SYSTEM if sys_module.exists() else NETDEV


def resolve(choice: str) -> str:
    return detect() if choice == "auto" else choice
