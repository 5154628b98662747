"""Whether kopf's peering pauses this replica, for the work kopf does not pause itself.

kopf pauses its watch streams when a peer of higher priority (or a rival of equal priority) is alive,
but not what this operator runs beside them: the scheduler (retries, drift repairs, renewals, grace
periods) and the drift check. kopf keeps its pause flag private, so the replica reads what kopf decides
from: the peering object (`KopfPeering` / `ClusterKopfPeering`, kopf's documented resource, whose status
lists each peer's priority, last keep-alive and lifetime), and applies kopf's documented rule to it
(`paused`). The object is read every `interval` seconds; what a replica starts in the few seconds
before it notices a pause still finishes safely (intents are written conditionally with peering).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from apitoken_operator.controller.peers import live_identities
from apitoken_operator.kube.api import Kube, KubeError

logger = logging.getLogger(__name__)


def paused(status: Mapping[str, Any], *, identity: str, priority: int, now: datetime) -> bool:
    """kopf's rule: pause while another live peer has a higher priority, or the same one."""
    alive = live_identities(status, now=now) - {identity}
    for peer in alive:
        entry = status.get(peer)
        try:
            theirs = int(entry.get("priority", 0)) if isinstance(entry, Mapping) else 0
        except (TypeError, ValueError):
            return True  # unreadable: assume a rival, so that two replicas never run at once
        if theirs >= priority:
            return True
    return False


class Standby:
    """Always active standalone (`peering_name` None); otherwise following the peering object(s)."""

    def __init__(
        self,
        kube: Kube | None = None,
        *,
        peering_name: str | None = None,
        namespaces: tuple[str, ...] = (),
        identity: str = "",
        priority: int = 0,
        interval: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`namespaces`: where the namespaced peering objects are (empty: the cluster-wide one)."""
        self._kube = kube
        self._name = peering_name
        self._scopes: tuple[str | None, ...] = namespaces or (None,)
        self._identity = identity
        self._priority = priority
        self._interval = interval
        self._clock = clock
        self._active = asyncio.Event()
        self._active.set()

    @property
    def standing_by(self) -> bool:
        return not self._active.is_set()

    async def wait_active(self) -> None:
        await self._active.wait()

    async def look(self) -> None:
        """Read the peering object(s) once and follow; an unreadable object changes nothing."""
        if self._kube is None or self._name is None:
            return
        now = self._clock()
        verdicts = []
        for scope in self._scopes:
            try:
                status = await self._kube.peering_status(self._name, namespace=scope)
            except KubeError as error:
                logger.warning("peering object %s not readable: %s", self._name, error)
                return
            if status is not None:
                verdicts.append(paused(status, identity=self._identity, priority=self._priority, now=now))
        if not verdicts:
            return
        self.follow(paused=any(verdicts))

    def follow(self, *, paused: bool) -> None:
        if paused and not self.standing_by:
            self._active.clear()
            logger.info("standing by: retries, repairs and drift checks wait while a peer runs")
        elif not paused and self.standing_by:
            self._active.set()
            logger.info("active again: retries, repairs and drift checks resume")

    async def run(self) -> None:
        while self._name is not None:
            await self.look()
            await asyncio.sleep(self._interval)
