"""What one suite names its own: the driver it runs the plugin as, the label on its containers,
the prefix of every name it makes, and where it keeps its pidfiles. Each suite has its own, so
one suite's leftover sweep never hits another's objects."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Suite:
    #: Docker driver name (the socket file name without ``.sock``).
    driver: str
    #: Docker label on what the suite creates, so a later run finds the leftovers.
    label: str
    #: Prefix of every docker/netns/link name the suite makes itself.
    prefix: str
    #: Where the suite remembers the pid of the plugin it started (to reap an orphan).
    run_dir: Path

    def unique_name(self, kind: str) -> str:
        """A short, unique name owned by the suite."""
        return f"{self.prefix}-{kind}-{uuid.uuid4().hex[:6]}"


def ci_mode() -> bool:
    """CI=true: a suite that cannot run fails instead of skipping (CI must never go green by
    skipping)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}
