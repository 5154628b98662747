"""A fix for kopf's start-up barrier, which costs time quadratic in the number of objects.

With an index handler, kopf holds every object's handlers until every object is indexed (so a handler
never sees a partial index): one toggle per listed object in one `ToggleSet`, and every worker waits
on the set's condition. kopf 1.45.2 wakes *every* waiter each time a toggle is added or dropped, although
the set's state (on or off) changes only with the last one: 10,000 ApiTokens (and 10,000 Secrets
waiting too) made ~10^8 wake-ups, minutes of CPU, before the first reconcile. Here the waiters are woken
only when the set's state changes, which is all they wait for (`ToggleSet.wait_for` waits for a state;
a single toggle's own changes notify through `Toggle.turn_to`, untouched).

Installed once by `install()`; a kopf whose `ToggleSet` is not the one this was written for is left as
it is (logged), since the barrier is then kopf's to keep correct.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

#: the kopf versions whose ToggleSet this replaces (pinned in pyproject.toml)
FIXED_VERSIONS = frozenset({"1.45.2"})


def install() -> bool:
    """Replace `ToggleSet.make_toggle` and `drop_toggle(s)`; False (and nothing changed) if this kopf
    is not a version the replacement was written for."""
    import kopf
    from kopf._cogs.aiokits import aiotoggles

    toggle_set: Any = aiotoggles.ToggleSet
    if getattr(toggle_set, "_apitoken_operator_fixed", False):
        return True
    version = getattr(kopf, "__version__", None) or _distribution_version()
    if version not in FIXED_VERSIONS:
        logger.warning("kopf %s: its start-up barrier left as it is (fixed for %s)", version, FIXED_VERSIONS)
        return False

    async def make_toggle(self: Any, __val: bool = False, *, name: str | None = None) -> Any:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            was = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != was:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self: Any, toggle: Any) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.discard(toggle)
            if self.is_on() != was:
                self._condition.notify_all()

    async def drop_toggles(self: Any, toggles: Any) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != was:
                self._condition.notify_all()

    toggle_set.make_toggle = make_toggle
    toggle_set.drop_toggle = drop_toggle
    toggle_set.drop_toggles = drop_toggles
    toggle_set._apitoken_operator_fixed = True
    return True


def _distribution_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("kopf")
    except metadata.PackageNotFoundError:
        return None
