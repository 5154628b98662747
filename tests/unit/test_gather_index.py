"""The decisions that read the index of held tokens wait until it is complete; the others do not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from apitoken_operator.controller.gather import Work, gather
from apitoken_operator.reconcile.model import Desired, Input
from apitoken_operator.settings import PolicySettings

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
ADOPTED = "dt0c01." + "C" * 24


def _work(status: dict[str, Any] | None = None) -> Work:
    work = Work(body={"metadata": {"name": "web", "namespace": "team", "uid": "u"}, "status": status or {}})
    work.secret_bodies["web"] = None  # read already: no I/O in these tests
    return work


async def _gathered(
    work: Work, spec: dict[str, Any], *, holders: dict[str, int], index: asyncio.Event
) -> Input:
    return await gather(
        work,
        desired=Desired.from_spec(spec, object_name="web"),
        connection=None,
        kube=None,  # type: ignore[arg-type]
        now=NOW,
        deleting=False,
        ids_of_others=lambda uid: {ADOPTED} if index.is_set() else set(),
        default_policy=PolicySettings(max_tokens_per_namespace=3),
        holding=lambda namespace: holders[namespace],
        indexed=index.wait,
    )


def test_a_first_token_under_a_namespace_limit_is_counted_only_once_the_index_is_complete() -> None:
    async def scenario() -> tuple[bool, int]:
        index, holders = asyncio.Event(), {"team": 0}
        gathering = asyncio.create_task(
            _gathered(_work(), {"name": "web", "scopes": ["metrics.read"]}, holders=holders, index=index)
        )
        await asyncio.sleep(0.05)
        waited = not gathering.done()
        holders["team"] = 3  # the start-up listing found three
        index.set()
        return waited, (await asyncio.wait_for(gathering, 5)).namespace_holding

    waited, counted = asyncio.run(scenario())
    assert waited and counted == 3


def test_an_adoption_is_judged_against_the_complete_index() -> None:
    async def scenario() -> tuple[bool, bool]:
        index = asyncio.Event()
        spec = {"name": "web", "scopes": ["metrics.read"], "adoptTokenId": ADOPTED}
        gathering = asyncio.create_task(_gathered(_work(), spec, holders={"team": 0}, index=index))
        await asyncio.sleep(0.05)
        waited = not gathering.done()
        index.set()
        return waited, (await asyncio.wait_for(gathering, 5)).adopt_claimed

    waited, claimed = asyncio.run(scenario())
    assert waited and claimed  # another object holds it: known only from the complete index


def test_an_object_holding_its_token_does_not_wait_for_the_index() -> None:
    async def scenario() -> bool:
        index = asyncio.Event()
        work = _work({"id": "dt0c01." + "A" * 24, "secretName": "web"})
        state = await asyncio.wait_for(
            _gathered(work, {"name": "web", "scopes": ["metrics.read"]}, holders={"team": 0}, index=index), 5
        )
        return state.recorded.token_id is not None and not index.is_set()

    assert asyncio.run(scenario())
