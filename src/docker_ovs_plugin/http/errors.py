"""The one place where failures become HTTP answers Docker understands: non-200 + {"Err": ...}."""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError

from docker_ovs_plugin.service.errors import PluginError

LOG = logging.getLogger(__name__)


class BadRequest(Exception):
    """The body is not JSON or not the request this endpoint expects."""


def describe_validation(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def error_response(method: str, exc: Exception) -> tuple[int, dict[str, str]]:
    if isinstance(exc, PluginError):
        return exc.status, {"Err": str(exc)}
    if isinstance(exc, ValidationError):
        return 400, {"Err": f"invalid {method} request: {describe_validation(exc)}"}
    if isinstance(exc, BadRequest | json.JSONDecodeError | ValueError):
        return 400, {"Err": f"invalid {method} request: {exc}"}
    LOG.error("unexpected error in %s", method, exc_info=exc)
    return 500, {
        "Err": f"internal error in docker-ovs-plugin ({type(exc).__name__}: {exc}); "
        "see the plugin's log"
    }
