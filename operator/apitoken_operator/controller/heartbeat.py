"""How late the event loop runs: the liveness probe fails when it falls far behind.

Everything the operator does shares one event loop. A loop that is blocked outright cannot answer the
probe at all, and Kubernetes restarts the pod; one that is starved (a handler computing for seconds at a
time, say) still answers now and then while every reconcile waits. A beat every second measures how
late it wakes; the probe reports that, and fails past a bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Heartbeat:
    def __init__(self, *, interval: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._monotonic = monotonic
        #: seconds the last beat woke late
        self.lag = 0.0
        self._last_beat = monotonic()

    async def run(self) -> None:
        while True:
            before = self._monotonic()
            await asyncio.sleep(self._interval)
            self.beat(late=self._monotonic() - before - self._interval)

    def beat(self, *, late: float) -> None:
        self.lag = max(0.0, late)
        self._last_beat = self._monotonic()

    def problem(self, *, max_lag: float) -> str | None:
        """Why the loop counts as stuck, or None."""
        silent = self._monotonic() - self._last_beat - self._interval
        if silent > max_lag:
            return f"the event loop has not run its heartbeat for {silent:.1f} s"
        if self.lag > max_lag:
            return f"the event loop ran {self.lag:.1f} s late"
        return None
