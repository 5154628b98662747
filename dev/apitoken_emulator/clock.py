"""The emulator's notion of "now": an injectable base clock plus an offset that tests can shift.

Expiry, `lastUsedDate`, `from`/`to` and relative `expirationDate` values all read this clock, so a test
moves time forward (or back) instead of sleeping. Real-time waits (injected latency, outage
durations, `Retry-After`) deliberately do not use it: they concern the client's wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "ShiftableClock", "system_clock"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class ShiftableClock:
    """`base() + offset`; always returns an aware UTC datetime."""

    def __init__(self, base: Clock | None = None) -> None:
        self._base: Clock = base or system_clock
        self._offset = timedelta(0)

    def __call__(self) -> datetime:
        return (self._base() + self._offset).astimezone(UTC)

    @property
    def offset(self) -> timedelta:
        return self._offset

    def shift(self, delta: timedelta | float) -> datetime:
        """Move time by `delta` (seconds when a number); returns the new now."""
        self._offset += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self()

    def set_offset(self, offset: timedelta | float) -> datetime:
        """Set the total offset from the base clock; 0 goes back to the base clock's time."""
        self._offset = offset if isinstance(offset, timedelta) else timedelta(seconds=offset)
        return self()
