"""How many reconciles each Dynatrace connection may have running at once: no tenant starves the rest.

A connection that hangs, throttles or streams endless pages keeps its reconciles waiting for as long as
the client's deadline allows. Without a budget they would take every reconcile slot the operator has,
and every other namespace would wait behind them. So each connection (on the shared default connection:
each namespace) gets a few reconciles at once; one that finds its budget spent does not wait holding a
slot, it is parked — its key kept in a queue, nothing else — and woken when a reconcile of that budget
ends, in arrival order. (A woken key may find its place taken by a newcomer of the same budget and park
again: one connection's objects compete among themselves, never with other connections'.)

No I/O here; `wake` is how a parked key goes back to the scheduler.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable


class Budgets:
    def __init__(self, *, per_budget: int, wake: Callable[[Hashable], None] | None = None) -> None:
        if per_budget < 1:
            raise ValueError("a budget allows at least one reconcile")
        self._per_budget = per_budget
        self.wake = wake
        self._running: dict[Hashable, int] = {}
        #: budget -> parked object keys, in arrival order (an ordered set)
        self._parked: dict[Hashable, OrderedDict[Hashable, None]] = {}

    def try_enter(self, budget: Hashable, *, key: Hashable) -> bool:
        """Take a place in `budget` for the object `key`, or park the key until one is free."""
        running = self._running.get(budget, 0)
        if running < self._per_budget:
            self._running[budget] = running + 1
            self._unpark(budget, key)
            return True
        self._parked.setdefault(budget, OrderedDict())[key] = None
        return False

    def leave(self, budget: Hashable) -> None:
        """A reconcile of `budget` ended: wake the key parked longest, if any."""
        running = self._running.get(budget, 0) - 1
        if running > 0:
            self._running[budget] = running
        else:
            self._running.pop(budget, None)
        parked = self._parked.get(budget)
        if parked:
            key, _ = parked.popitem(last=False)
            if not parked:
                del self._parked[budget]
            if self.wake is not None:
                self.wake(key)

    def running(self, budget: Hashable) -> int:
        return self._running.get(budget, 0)

    def parked(self, budget: Hashable) -> int:
        return len(self._parked.get(budget, ()))

    def _unpark(self, budget: Hashable, key: Hashable) -> None:
        parked = self._parked.get(budget)
        if parked is not None:
            parked.pop(key, None)
            if not parked:
                del self._parked[budget]
