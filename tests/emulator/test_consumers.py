"""Consumers using tokens: lastUsedDate and lastUsedIpAddress move without any call from the operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from apitoken_emulator import Emulator, EmulatorThread, start_emulator
from apitoken_emulator.environment import CONSUMER_ADDRESSES
from tests.emulator.helpers import API, eventually


@pytest.fixture
async def admin(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{emulator.base_url}/_emulator") as http:
        yield http


async def test_use_token_moves_last_used_without_an_api_call(emulator: Emulator) -> None:
    secret = emulator.create_token("used by a workload", ["metrics.read"])
    record = emulator.record_of(secret)
    assert record is not None
    assert record.last_used_date is None
    emulator.clock.shift(3600)
    assert emulator.use_token(secret.token_id, ip_address="10.1.2.3") is True
    assert record.last_used_date is not None
    assert abs(record.last_used_date - emulator.clock()) < timedelta(seconds=5)  # the emulator clock
    assert record.last_used_ip_address == "10.1.2.3"
    assert emulator.counters.snapshot() == {}  # no API call at all


async def test_use_token_on_a_fixed_clock() -> None:
    fixed = datetime(2031, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    async with start_emulator(validate_responses=True, clock=lambda: fixed) as emulator:
        secret = emulator.create_token("t")
        emulator.use_token(secret.token_id)
        assert emulator.record_of(secret).wire()["lastUsedDate"] == "2031-03-04T05:06:07.890Z"  # type: ignore[union-attr]
        assert emulator.record_of(secret).wire()["lastUsedIpAddress"] == "10.1.2.3"  # type: ignore[union-attr]


async def test_a_token_that_would_not_authenticate_is_not_used(emulator: Emulator) -> None:
    disabled = emulator.create_token("off", enabled=False)
    expired = emulator.create_token("old", expiration_date=emulator.clock() + timedelta(minutes=1))
    emulator.clock.shift(120)
    assert emulator.use_token(disabled.token_id) is False
    assert emulator.use_token(expired.token_id) is False
    assert emulator.record_of(disabled).last_used_date is None  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        emulator.use_token("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")


async def test_admin_use_endpoint(
    emulator: Emulator, admin: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    used = emulator.create_token("a")
    disabled = emulator.create_token("b", enabled=False)
    unknown = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX"
    response = await admin.post(
        "/use", json={"ids": [used.token_id, disabled.token_id, unknown], "ip": "172.16.0.9"}
    )
    assert response.status_code == 200
    assert response.json() == {"used": [used.token_id], "refused": [disabled.token_id], "unknown": [unknown]}
    body = (await api.get(f"{API}/{used.token_id}")).json()
    assert body["lastUsedIpAddress"] == "172.16.0.9"
    assert "lastUsedDate" in body
    for bad in ({"ids": "x"}, {"ids": [1]}, {"ids": [], "ip": 5}, [1]):
        assert (await admin.post("/use", json=bad)).status_code == 400


async def test_a_usage_round_is_seeded_and_touches_only_usable_tokens() -> None:
    async def round_of(seed: int) -> list[str]:
        async with start_emulator(seed=seed) as emulator:
            names = {}
            for index in range(200):
                secret = emulator.create_token(f"t{index}", enabled=index % 10 != 0)
                names[secret.token_id] = f"t{index}"
            used = emulator.usage_round(0.2)
            for token_id in used:
                record = emulator.store.get(token_id)
                assert record is not None
                assert record.enabled
                assert record.last_used_ip_address in CONSUMER_ADDRESSES
            return [names.get(token_id, "admin") for token_id in used]

    first = await round_of(1)
    assert first == await round_of(1)
    assert first != await round_of(2)
    assert 15 <= len(first) <= 70  # about 20 % of the 181 usable tokens
    assert not any(name in first for name in ("t0", "t10", "t20"))


async def test_the_background_consumers_use_tokens_on_their_own(emulator: Emulator) -> None:
    secrets = [emulator.create_token(f"t{index}") for index in range(20)]
    emulator.faults.update(usage_interval=0.05, usage_ratio=0.5)
    records = [emulator.record_of(secret) for secret in secrets]
    await eventually(lambda: any(record and record.last_used_date for record in records), seconds=20)
    emulator.faults.update(usage_interval=0.0)
    assert emulator.counters.snapshot() == {}


async def test_pat_tokens_are_not_used_while_pats_are_off(emulator: Emulator) -> None:
    pat = emulator.create_token("p", personal_access_token=True, owner="bob@example.com")
    emulator.set_personal_access_tokens(False)
    assert emulator.use_token(pat.token_id) is False
    assert pat.token_id not in emulator.usage_round(1.0)
    emulator.set_personal_access_tokens(True)
    assert pat.token_id in emulator.usage_round(1.0)


def test_the_thread_variant() -> None:
    with EmulatorThread(validate_responses=True) as emulator:
        secret = emulator.create_token("t")
        assert emulator.use_token(secret.token_id, ip_address="10.9.9.9") is True
        assert secret.token_id in emulator.usage_round(1.0)
        emulator.set_personal_access_tokens(False)
        assert emulator.emulator.allow_personal_access_tokens is False
        assert not emulator.contract_violations
