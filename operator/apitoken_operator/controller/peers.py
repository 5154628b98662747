"""Which operator replicas are alive, as kopf's peering object says: for intents of replicas now gone.

With peering, a create recorded by another replica is waited for while it may still be running. When
that replica has left the peering object (or stopped renewing its entry, as kopf judges it), its create
is over: the intent can be settled at once instead of at the end of the window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apitoken_operator.kube.api import Kube, KubeError

logger = logging.getLogger(__name__)
#: kopf's default when an entry has none
DEFAULT_LIFETIME = 60
#: seconds a reading of the peering object is reused (objects are settled in bursts)
CACHE_SECONDS = 2.0


def live_identities(status: Mapping[str, Any], *, now: datetime) -> set[str]:
    """The identities whose entry kopf would not call dead: last seen less than its lifetime ago."""
    alive = set()
    for identity, entry in status.items():
        if not isinstance(entry, Mapping):
            continue
        try:
            seen = datetime.fromisoformat(str(entry["lastseen"]))
            lifetime = timedelta(seconds=int(entry.get("lifetime", DEFAULT_LIFETIME)))
        except (KeyError, TypeError, ValueError):
            alive.add(identity)  # unreadable: assume alive, so that nothing is settled too early
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        if seen + lifetime > now:
            alive.add(identity)
    return alive


class PeerDirectory:
    def __init__(
        self,
        kube: Kube,
        *,
        name: str,
        clusterwide: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._name = name
        self._clusterwide = clusterwide
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str | None, tuple[float, set[str] | None]] = {}

    async def gone(self, identity: str, *, namespace: str) -> bool:
        """Whether the replica `identity` has surely left; False when the peering object cannot be read."""
        scope = None if self._clusterwide else namespace
        cached = self._cache.get(scope)
        if cached is not None and self._monotonic() - cached[0] < CACHE_SECONDS:
            alive = cached[1]
        else:
            alive = await self._read(scope)
            self._cache[scope] = (self._monotonic(), alive)
        return alive is not None and identity not in alive

    async def _read(self, namespace: str | None) -> set[str] | None:
        try:
            status = await self._kube.peering_status(self._name, namespace=namespace)
        except KubeError as error:
            logger.warning("peering object %s not readable: %s", self._name, error)
            return None
        if status is None:
            return None
        return live_identities(status, now=self._clock())
