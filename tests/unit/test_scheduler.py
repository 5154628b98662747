"""The scheduler: the earliest request per key wins, and a reconcile that fails is retried and logged
with the object it was about (JSON log lines carry its namespace and name)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from apitoken_operator.controller.scheduler import Key, ObjectKey, QueuedEvent, Scheduler


async def test_the_earliest_request_wins_and_each_key_fires_once() -> None:
    fired: list[Key] = []
    now = [0.0]

    async def reconcile(key: Key) -> None:
        fired.append(key)

    scheduler = Scheduler(reconcile, monotonic=lambda: now[0])
    running = asyncio.create_task(scheduler.run())
    try:
        scheduler.schedule(ObjectKey("ns", "a"), 5.0)
        scheduler.schedule(ObjectKey("ns", "a"), 0.0)  # earlier: replaces the later one
        scheduler.schedule(ObjectKey("ns", "a"), 3.0)  # later than the one due: ignored
        scheduler.schedule(QueuedEvent("u1", "ns", "b"))
        for _ in range(100):
            if len(fired) == 2:
                break
            await asyncio.sleep(0.01)
        now[0] = 10.0
        scheduler.schedule(ObjectKey("ns", "c"))  # wakes the loop past every old due time
        for _ in range(100):
            if len(fired) == 3:
                break
            await asyncio.sleep(0.01)
        assert sorted(map(repr, fired)) == sorted(
            map(repr, [ObjectKey("ns", "a"), QueuedEvent("u1", "ns", "b"), ObjectKey("ns", "c")])
        )
    finally:
        running.cancel()


async def test_a_failed_reconcile_is_retried_and_logged_with_its_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[Key] = []

    async def reconcile(key: Key) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("an unforeseen answer")

    scheduler = Scheduler(reconcile, failure_retry=0.01)
    running = asyncio.create_task(scheduler.run())
    try:
        with caplog.at_level(logging.ERROR, logger="apitoken_operator.controller.scheduler"):
            scheduler.schedule(ObjectKey("team-a", "web"))
            for _ in range(200):
                if len(calls) == 2:
                    break
                await asyncio.sleep(0.01)
        assert calls == [ObjectKey("team-a", "web")] * 2, "retried after the failure"
        (record,) = [r for r in caplog.records if "scheduled reconcile failed" in r.getMessage()]
        assert record.k8s_ref == {"namespace": "team-a", "name": "web"}  # type: ignore[attr-defined]
        assert record.getMessage().startswith("team-a/web: ")
    finally:
        running.cancel()
