"""systemd's readiness protocol (sd_notify), for `Type=notify` units.

The unit in packaging/systemd orders dockerd after the plugin; READY=1, sent once the socket
accepts connections, is what makes "after" mean "after the socket exists". Without systemd
(NOTIFY_SOCKET unset) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

LOG = logging.getLogger(__name__)


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; True when it was sent."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as e:
        LOG.warning("cannot notify systemd (%s): %s", state, e)
        return False
    return True
