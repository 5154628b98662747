"""Requests counted by operation and outcome, for tests that assert how many calls a client made.

The outcome is the HTTP status as a string (`"200"`, `"429"`) or `"dropped"` for a connection closed
without a response. Operations are the six of the API plus `unknown` for any other path under /api.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["DROPPED", "Counters"]

DROPPED = "dropped"


class Counters:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, operation: str, outcome: int | str) -> None:
        with self._lock:
            self._counts[operation, str(outcome)] += 1

    def count(self, operation: str | None = None, outcome: int | str | None = None) -> int:
        """Requests for `operation` (all when None) with `outcome` (any when None)."""
        wanted = None if outcome is None else str(outcome)
        with self._lock:
            return sum(
                number
                for (op, result), number in self._counts.items()
                if (operation is None or op == operation) and (wanted is None or result == wanted)
            )

    def snapshot(self) -> dict[str, dict[str, int]]:
        """`{operation: {outcome: count}}`."""
        result: dict[str, dict[str, int]] = {}
        with self._lock:
            for (operation, outcome), number in sorted(self._counts.items()):
                result.setdefault(operation, {})[outcome] = number
        return result

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
