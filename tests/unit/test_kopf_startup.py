"""kopf's start-up barrier with the fix: waiters are woken when the set's state changes, not per toggle."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from apitoken_operator import kopf_startup


async def _barrier(objects: int) -> tuple[int, bool, bool]:
    """kopf's use at start-up: a toggle per listed object, every worker waiting for all to be dropped.

    Returns the waiters' wake-ups, whether any passed before the last drop, and whether all passed after.
    """
    indexed = aiotoggles.ToggleSet(all)
    toggles = [await indexed.make_toggle(name=str(index)) for index in range(objects)]
    wakeups = 0
    original = indexed.is_on

    def counted() -> bool:
        nonlocal wakeups
        wakeups += 1
        return original()

    indexed.is_on = counted  # type: ignore[method-assign]
    waiters = [asyncio.create_task(indexed.wait_for(True)) for _ in range(objects)]
    await asyncio.sleep(0)
    for toggle in toggles[:-1]:
        await indexed.drop_toggle(toggle)
        await asyncio.sleep(0)
    early = any(waiter.done() for waiter in waiters)
    await indexed.drop_toggle(toggles[-1])
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
    return wakeups, early, all(waiter.done() for waiter in waiters)


def test_the_barrier_wakes_its_waiters_once_each_not_once_per_object() -> None:
    assert kopf_startup.install()
    wakeups, early, passed = asyncio.run(_barrier(300))
    assert not early  # nobody passes while an object is still unindexed
    assert passed  # everybody passes after the last one
    # each waiter checks once on arrival and once when woken, plus two checks per add/drop; without the fix
    # every drop woke all 300 waiters (~90,000 checks)
    assert wakeups < 300 * 5


def test_a_toggle_set_still_wakes_waiters_when_its_state_changes_either_way() -> None:
    """kopf's pause (an `any` set): a toggle turned on or dropped still wakes who waits for the change."""
    assert kopf_startup.install()

    async def scenario() -> tuple[bool, bool]:
        paused = aiotoggles.ToggleSet(any)
        toggle = await paused.make_toggle(True, name="peering")
        resumed = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        before = resumed.done()
        await paused.drop_toggle(toggle)
        await asyncio.wait_for(resumed, timeout=5)
        again = await paused.make_toggle(False, name="peering")
        pausing = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        await again.turn_to(True)
        await asyncio.wait_for(pausing, timeout=5)
        return before, pausing.done()

    before, paused_again = asyncio.run(scenario())
    assert not before and paused_again
