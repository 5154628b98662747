"""EmulatorThread: the same emulator for synchronous code, its loop in a daemon thread."""

from __future__ import annotations

import httpx
import pytest

from apitoken_emulator import EmulatorThread, Outage
from tests.emulator.helpers import API, headers


def test_sync_usage(emulator_thread: EmulatorThread) -> None:
    with httpx.Client(base_url=emulator_thread.base_url, headers=headers(emulator_thread.admin_token)) as api:
        created = api.post(
            API, json={"name": "sync", "scopes": ["metrics.read"], "expirationDate": "now+1h"}
        ).json()
        assert api.get(f"{API}/{created['id']}").json()["name"] == "sync"
        minted = emulator_thread.create_token("direct", ["apiTokens.read"])
        with httpx.Client(base_url=emulator_thread.base_url, headers=headers(minted)) as reader:
            assert reader.get(API).json()["totalCount"] == 3
            emulator_thread.faults.update(rate_limit_ratio=1.0)
            assert reader.get(API).status_code == 429
            emulator_thread.faults.reset()
    assert emulator_thread.counters.count("list", 429) == 1
    assert len(emulator_thread.store) == 3


def test_refuse_outage_from_another_thread(emulator_thread: EmulatorThread) -> None:
    with httpx.Client(base_url=emulator_thread.base_url, headers=headers(emulator_thread.admin_token)) as api:
        emulator_thread.faults.update(outage=Outage.REFUSE)
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):
            api.get(API)
        emulator_thread.faults.update(outage=Outage.OFF)
        assert api.get(API).status_code == 200


def test_clock_shift(emulator_thread: EmulatorThread) -> None:
    with httpx.Client(base_url=emulator_thread.base_url, headers=headers(emulator_thread.admin_token)) as api:
        created = api.post(
            API, json={"name": "s", "scopes": ["apiTokens.read"], "expirationDate": "now+1h"}
        ).json()
        emulator_thread.clock.shift(7200)
        expired = httpx.get(
            f"{emulator_thread.base_url}{API}", headers={"Authorization": f"Api-Token {created['token']}"}
        )
        assert expired.status_code == 401


def test_start_failure_is_reported() -> None:
    with pytest.raises(RuntimeError, match="failed to start"), EmulatorThread(port=-5):
        pass
