"""A replica standing by for a peer: kopf's peering decisions followed, the scheduler held meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterator

import pytest

from apitoken_operator.controller.scheduler import Scheduler
from apitoken_operator.controller.standby import PEERING_LOGGER, Standby


@pytest.fixture
def standby() -> Iterator[Standby]:
    following = Standby()
    following.install()
    yield following
    following.uninstall()


def kopf_says(message: str) -> None:
    logging.getLogger(PEERING_LOGGER).info(message)


def test_follows_kopfs_pause_and_resume(standby: Standby) -> None:
    assert not standby.standing_by
    kopf_says("Pausing operations in favour of [Peer(identity='b', priority=2)].")
    assert standby.standing_by
    kopf_says("Something else entirely.")
    assert standby.standing_by
    kopf_says("Resuming operations after the pause. Conflicting operators with the same priority are gone.")
    assert not standby.standing_by
    kopf_says("Pausing all operators, including self: [...]")
    assert standby.standing_by


def test_other_loggers_do_not_count(standby: Standby) -> None:
    logging.getLogger("kopf.objects").info("Pausing operations in favour of nobody")
    assert not standby.standing_by


async def test_the_scheduler_holds_due_keys_while_standing_by(standby: Standby) -> None:
    fired: list[Hashable] = []

    async def reconcile(key: Hashable) -> None:
        fired.append(key)

    scheduler = Scheduler(reconcile, gate=standby.wait_active)
    kopf_says("Pausing operations in favour of [Peer(identity='b', priority=2)].")
    running = asyncio.create_task(scheduler.run())
    try:
        scheduler.schedule(("ns", "a"))
        await asyncio.sleep(0.1)
        assert fired == [], "a due key fired while the replica stood by"
        kopf_says("Resuming operations after the pause.")
        for _ in range(100):
            if fired:
                break
            await asyncio.sleep(0.01)
        assert fired == [("ns", "a")]
    finally:
        running.cancel()
