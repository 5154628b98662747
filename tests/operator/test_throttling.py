"""Throttling and outages: nothing lost, nothing duplicated, recovery without a restart."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.fixtures.cluster import wait_until
from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane


def test_fifty_tokens_through_throttling_and_a_sixty_second_outage(operator_env: OperatorEnv):
    emulator = operator_env.emulator
    emulator.faults.update(rate_limit_ratio=0.5, retry_after=0.5)
    operator_env.start()
    for i in range(25):
        operator_env.apply(f"t{i}", {"name": f"token {i}", "scopes": ["metrics.read"], "enabled": i % 2 == 0})
    wait_until(lambda: emulator.counters.count(outcome=429) >= 5, what="some 429s")
    outage_started = time.monotonic()
    emulator.faults.update(rate_limit_ratio=0.0, outage="unavailable")  # 503 for everything
    for i in range(25, 50):
        operator_env.apply(f"t{i}", {"name": f"token {i}", "scopes": ["metrics.read"], "enabled": i % 2 == 0})
    seen_waiting = wait_until(
        lambda: [
            c
            for i in range(50)
            if (c := operator_env.condition(f"t{i}", "Reconciling"))
            and c["status"] == "True"
            and c["reason"] in ("DynatraceUnavailable", "Throttled")
        ],
        what="a condition showing the wait",
    )
    assert "retrying" in seen_waiting[0]["message"]
    time.sleep(max(0.0, 30 - (time.monotonic() - outage_started)))
    emulator.faults.update(outage="refuse")  # then connections refused: the port is closed
    time.sleep(max(0.0, 60 - (time.monotonic() - outage_started)))
    emulator.faults.update(outage="off")
    for i in range(50):
        operator_env.wait_ready(f"t{i}", timeout=120)
    names = Counter(t.name for t in operator_env.live_tokens())
    assert len(names) == 50 and set(names.values()) == {1}, names.most_common(3)
    for i in (0, 1, 49):
        status = operator_env.get(f"t{i}")["status"]
        record = emulator.emulator.record_of(status["id"])
        assert record is not None and record.enabled == (i % 2 == 0)
        assert operator_env.secret_value(f"t{i}").token_id == status["id"]
