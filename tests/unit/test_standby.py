"""A replica standing by for a peer: kopf's peering rule read from its peering object, the scheduler
held meanwhile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from apitoken_operator.controller.scheduler import Key, ObjectKey, Scheduler
from apitoken_operator.controller.standby import Standby, paused
from apitoken_operator.kube.api import Kube

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ME = "apitoken-operator@a/1"


def entry(priority: int, *, seen: timedelta = timedelta(seconds=5), lifetime: int = 60) -> dict[str, Any]:
    return {"priority": priority, "lastseen": (NOW - seen).isoformat(), "lifetime": lifetime}


def test_kopfs_rule_a_live_peer_of_higher_or_equal_priority_pauses() -> None:
    assert not paused({ME: entry(5)}, identity=ME, priority=5, now=NOW)
    assert not paused({ME: entry(5), "b": entry(4)}, identity=ME, priority=5, now=NOW)
    assert paused({ME: entry(5), "b": entry(6)}, identity=ME, priority=5, now=NOW)
    assert paused({ME: entry(5), "b": entry(5)}, identity=ME, priority=5, now=NOW), "a tie pauses both"
    dead = entry(9, seen=timedelta(seconds=61))
    assert not paused({ME: entry(5), "b": dead}, identity=ME, priority=5, now=NOW), "a dead peer counts not"
    assert paused({"b": {"priority": "x", "lastseen": NOW.isoformat()}}, identity=ME, priority=5, now=NOW)
    assert not paused({}, identity=ME, priority=0, now=NOW)


class PeeringObjects:
    """The peering objects' status as Kubernetes would answer it (the one read the standby makes)."""

    def __init__(self) -> None:
        self.status: dict[str | None, dict[str, Any] | None] = {}
        self.reads: list[str | None] = []

    async def peering_status(self, name: str, *, namespace: str | None) -> dict[str, Any] | None:
        self.reads.append(namespace)
        return self.status.get(namespace)


def standby(objects: PeeringObjects, *, namespaces: tuple[str, ...] = ()) -> Standby:
    return Standby(
        cast(Kube, objects),
        peering_name="apitoken-operator",
        namespaces=namespaces,
        identity=ME,
        priority=5,
        clock=lambda: NOW,
    )


async def test_follows_the_peering_object() -> None:
    objects = PeeringObjects()
    following = standby(objects)
    await following.look()
    assert not following.standing_by, "no peering object yet: nothing to follow"
    objects.status[None] = {ME: entry(5), "b": entry(7)}
    await following.look()
    assert following.standing_by
    objects.status[None] = {ME: entry(5), "b": entry(7, seen=timedelta(minutes=5))}
    await following.look()
    assert not following.standing_by, "the peer stopped its keep-alives: active again"


async def test_namespaced_peering_pauses_when_any_namespace_says_so() -> None:
    objects = PeeringObjects()
    following = standby(objects, namespaces=("team-a", "team-b"))
    objects.status["team-a"] = {ME: entry(5)}
    objects.status["team-b"] = {ME: entry(5), "b": entry(9)}
    await following.look()
    assert following.standing_by
    assert objects.reads == ["team-a", "team-b"]


async def test_standalone_never_stands_by_and_reads_nothing() -> None:
    alone = Standby()
    await alone.look()
    assert not alone.standing_by


async def test_the_scheduler_holds_due_keys_while_standing_by() -> None:
    fired: list[Key] = []

    async def reconcile(key: Key) -> None:
        fired.append(key)

    objects = PeeringObjects()
    objects.status[None] = {ME: entry(5), "b": entry(7)}
    following = standby(objects)
    await following.look()
    scheduler = Scheduler(reconcile, gate=following.wait_active)
    running = asyncio.create_task(scheduler.run())
    try:
        scheduler.schedule(ObjectKey("ns", "a"))
        await asyncio.sleep(0.1)
        assert fired == [], "a due key fired while the replica stood by"
        objects.status[None] = {ME: entry(5)}
        await following.look()
        for _ in range(100):
            if fired:
                break
            await asyncio.sleep(0.01)
        assert fired == [ObjectKey("ns", "a")]
    finally:
        running.cancel()
