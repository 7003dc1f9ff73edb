"""An in-memory Hosts (service.liveness) on a FakeNorthbound: heartbeat rows and fencing,
serialised by the fake database's lock as OVSDB serialises transactions."""

from __future__ import annotations

from ipaddress import IPv4Address

from docker_ovs_plugin import contract as c
from docker_ovs_plugin.service.liveness import Freed, HostState

from .fakes import FakeNorthbound


class FakeHosts:
    def __init__(self, nb: FakeNorthbound) -> None:
        self.nb = nb
        self.rows: dict[str, dict[str, str]] = {}  # system-id -> external_ids
        self.beats = 0

    @staticmethod
    def _state(host: str, ids: dict[str, str]) -> HostState:
        at, after = ids.get(c.FENCED_AT_KEY), ids.get(c.FENCED_AFTER_KEY)
        return HostState(
            host,
            ids.get(c.HEARTBEAT_KEY, ""),
            float(at) if at else None,
            float(after) if after else None,
        )

    def hosts(self) -> list[HostState]:
        with self.nb._lock:
            return [self._state(h, ids) for h, ids in self.rows.items()]

    def host(self, system_id: str) -> HostState | None:
        with self.nb._lock:
            ids = self.rows.get(system_id)
            return self._state(system_id, ids) if ids is not None else None

    def beat(self, system_id: str, driver: str) -> HostState:
        with self.nb._lock:
            ids = self.rows.setdefault(system_id, c.owned({c.HOST_KEY: system_id}))
            if c.FENCED_AT_KEY not in ids:
                self.beats += 1  # a value that changes every beat, as the real time does
                ids[c.HEARTBEAT_KEY] = f"{self.nb.clock():.3f}/{self.beats}"
            return self._state(system_id, ids)

    def clear_fence(self, system_id: str) -> None:
        with self.nb._lock:
            ids = self.rows[system_id]
            ids.pop(c.FENCED_AT_KEY, None)
            ids.pop(c.FENCED_AFTER_KEY, None)
            self.beats += 1
            ids[c.HEARTBEAT_KEY] = f"{self.nb.clock():.3f}/{self.beats}"

    def fence(self, system_id: str, seen_heartbeat: str, silent_for: float) -> list[Freed] | None:
        nb = self.nb
        with nb._lock:
            ids = self.rows.get(system_id)
            if ids is None or c.FENCED_AT_KEY in ids or ids.get(c.HEARTBEAT_KEY) != seen_heartbeat:
                return None
            ids[c.FENCED_AT_KEY] = f"{nb.clock():.3f}"
            ids[c.FENCED_AFTER_KEY] = f"{silent_for:.0f}"
            freed = []
            for pool_id, sw in list(nb.switches.items()):
                for name, lsp in list(sw.ports.items()):
                    lids = lsp.external_ids
                    if lids[c.HOST_KEY] == system_id and lids.get(c.ROLE_KEY) != c.ROLE_GATEWAY:
                        del sw.ports[name]
                        del nb.port_names[name]
                        freed.append(
                            Freed(
                                pool_id,
                                IPv4Address(lids[c.ADDRESS_KEY]),
                                lids.get(c.ENDPOINT_ID_KEY),
                            )
                        )
        for pool_id, sw in list(nb.switches.items()):
            # the same drop (and delete-if-unused) as DeleteNetwork / ReleasePool
            for key in (c.host_pool_key(system_id), c.host_network_key(system_id)):
                if key in sw.external_ids:
                    nb._drop_use(pool_id, key)
        return freed
