"""What every measurement gets: the options of this run, the plugin process, the output folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.plugin import BenchPlugin


@dataclass
class Settings:
    quick: bool
    lifecycle_rounds: int
    driver_levels: tuple[int, ...]
    driver_samples: int
    burst_containers: int
    burst_parallel: int
    burst_rounds: int
    restart_rounds: int
    iperf_seconds: int
    iperf_rounds: int
    recovery_rounds: int
    recovery_method: str
    profile_containers: int
    primitives_samples: int

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(
                quick=True,
                lifecycle_rounds=6,
                driver_levels=(10, 100),
                driver_samples=40,
                burst_containers=30,
                burst_parallel=10,
                burst_rounds=1,
                restart_rounds=2,
                iperf_seconds=3,
                iperf_rounds=1,
                recovery_rounds=2,
                recovery_method="exit-start",
                profile_containers=5,
                primitives_samples=10,
            )
        return cls(
            quick=False,
            lifecycle_rounds=25,
            driver_levels=(10, 100, 1000),
            driver_samples=150,
            burst_containers=100,
            burst_parallel=10,
            burst_rounds=2,
            restart_rounds=3,
            iperf_seconds=6,
            iperf_rounds=3,
            recovery_rounds=5,
            recovery_method="exit-start",
            profile_containers=20,
            primitives_samples=30,
        )


@dataclass
class Context:
    settings: Settings
    plugin: BenchPlugin
    out_dir: Path
    #: Shared between items (e.g. the endpoint population of driver/restart/memory).
    shared: dict[str, Any] = field(default_factory=dict)
