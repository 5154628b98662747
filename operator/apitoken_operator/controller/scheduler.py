"""One timer for many objects: wake each key at its due time, the earliest request winning.

Used for every reconcile that is not an ApiToken's own watch event: retries, a Secret edited, drift
found by a listing, renewals and the end of grace periods. One task and a heap, not a sleeping
task per object, so 10,000 objects cost 10,000 heap entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectKey:
    """Reconcile this ApiToken as it is now: a retry, a wake-up, a change found elsewhere."""

    namespace: str
    name: str


@dataclass(frozen=True)
class QueuedEvent:
    """A watch event that found every reconcile slot taken: when its turn comes (after the object's
    reconcile under way, if any), it is looked at like an event (from its body if the runtime still
    keeps it, else read), so one that turned out to be an echo costs no reconcile."""

    uid: str
    namespace: str
    name: str


@dataclass(frozen=True)
class ParkedObject:
    """An object parked on its connection's budget: when woken (or at the fallback retry), reconciled
    from the body it parked with if the runtime still keeps it, else read as it is now."""

    uid: str
    namespace: str
    name: str


Key = ObjectKey | QueuedEvent | ParkedObject


class Scheduler:
    def __init__(
        self,
        callback: Callable[[Key], Awaitable[None]],
        *,
        concurrency: int = 32,
        monotonic: Callable[[], float] = time.monotonic,
        gate: Callable[[], Awaitable[None]] | None = None,
        failure_retry: float = 10.0,
    ) -> None:
        """`gate`: awaited before due keys fire (a replica standing by holds them until it resumes)."""
        self._callback = callback
        self._failure_retry = failure_retry
        self._gate = gate
        self._monotonic = monotonic
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._counter = 0
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()

    def schedule(self, key: Key, delay: float = 0.0) -> None:
        when = self._monotonic() + max(0.0, delay)
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, key))
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            if self._gate is not None:
                await self._gate()
            now = self._monotonic()
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # superseded by an earlier request
                del self._due[key]
                await self._slots.acquire()
                task = asyncio.create_task(self._fire(key))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _fire(self, key: Key) -> None:
        try:
            await self._callback(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "%s/%s: scheduled reconcile failed; retrying in %.0f s",
                key.namespace,
                key.name,
                self._failure_retry,
                extra={"k8s_ref": {"namespace": key.namespace, "name": key.name}},
            )
            self.schedule(key, self._failure_retry)
        finally:
            self._slots.release()
