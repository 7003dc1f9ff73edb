"""Domain errors. Each message is written for the user who typed the docker command."""

import logging
from collections.abc import Callable

LOG = logging.getLogger(__name__)


class PluginError(Exception):
    """Base of every error the driver reports to Docker as {"Err": message}."""

    status = 500


class InvalidRequest(PluginError):
    """The request or one of its options is malformed or not allowed."""

    status = 400


class NotFound(PluginError):
    """The request names a network or endpoint this plugin does not know."""

    status = 404


class Conflict(PluginError):
    """The request collides with something that already exists."""

    status = 409


class BackendError(PluginError):
    """Open vSwitch, the kernel or iptables refused or did not answer in time."""

    status = 500


def undo(what: str, action: Callable[[], None]) -> None:
    """One step of a rollback: a failure is logged, and the rollback goes on."""
    try:
        action()
    except Exception:
        LOG.exception("rollback: could not %s", what)
