"""Keeping tokens true over time: drift repair, adoption, rotation (issue 'Keep tokens true over time')."""

from __future__ import annotations

import threading
import time

import pytest

from apitoken_operator.dynatrace.dates import format_date
from tests.fixtures.cluster import wait_until
from tests.fixtures.operator import OperatorEnv, settle

pytestmark = pytest.mark.controlplane

SPEC = {"name": "drift token", "scopes": ["metrics.read", "logs.read"], "enabled": True}
FAST = ("--drift-interval", "1")


def test_each_drift_kind_is_put_back_with_one_put_and_an_event(operator_env: OperatorEnv):
    operator_env.start(*FAST)
    operator_env.apply("drift", SPEC)
    token_id = operator_env.wait_ready("drift")["status"]["id"]
    store, emulator = operator_env.emulator.store, operator_env.emulator.emulator
    for change in ({"name": "edited in the UI"}, {"scopes": ("metrics.read",)}, {"enabled": False}):
        puts = operator_env.calls("update")
        record = emulator.record_of(token_id)
        operator_env.emulator.call(store.update, record, now=emulator.clock(), **change)
        wait_until(lambda puts=puts: operator_env.calls("update") > puts, what=f"a PUT putting back {change}")
        settle(1.5)
        assert operator_env.calls("update") - puts == 1, change
        record = emulator.record_of(token_id)
        assert (
            record.name == "drift token"
            and set(record.scopes) == {"metrics.read", "logs.read"}
            and record.enabled
        )
    assert sum(e.reason == "Updated" for e in operator_env.events("drift")) >= 3


def test_token_deleted_outside_is_recreated_with_a_new_secret(operator_env: OperatorEnv):
    operator_env.start(*FAST)
    operator_env.apply("drift", SPEC)
    old = operator_env.wait_ready("drift")["status"]["id"]
    emulator = operator_env.emulator.emulator
    operator_env.emulator.call(operator_env.emulator.store.delete, emulator.record_of(old))
    wait_until(
        lambda: (operator_env.get("drift") or {}).get("status", {}).get("id") not in (None, old),
        what="a recreated token",
    )
    new = operator_env.wait_ready("drift")["status"]["id"]
    secret = operator_env.secret_value("drift")
    assert secret.token_id == new and emulator.record_of(secret) is not None
    assert any(e.reason == "Recreated" for e in operator_env.events("drift"))


def test_drift_check_of_500_tokens_costs_one_list_call_plus_one_put_per_changed_token(
    operator_env: OperatorEnv,
):
    """The listing that finds drift is paged by the API's maximum; 500 tokens fit in one page."""
    from apitoken_operator.controller.observer import MAX_PAGE_SIZE

    emulator = operator_env.emulator
    ids = [emulator.create_token(f"bulk {i}", ["metrics.read"]).token_id for i in range(500)]
    operator_env.start(*FAST)
    for i, token_id in enumerate(ids[:5]):  # five of them managed through adoption
        operator_env.apply(
            f"bulk-{i}",
            {"name": f"bulk {i}", "scopes": ["metrics.read"], "enabled": True, "adoptTokenId": token_id},
        )
        operator_env.wait_ready(f"bulk-{i}")
    settle(2.5)
    before = emulator.counters.snapshot()
    for token_id in ids[:2]:
        emulator.call(
            emulator.store.update, emulator.emulator.record_of(token_id), now=emulator.clock(), name="x"
        )
    wait_until(
        lambda: emulator.counters.count("update") - before.get("update", {}).get("204", 0) >= 2,
        what="two PUTs",
    )
    checks_before = before.get("list", {}).get("200", 0)
    settle(1.1)  # one more drift interval: nothing else may happen
    lists = emulator.counters.count("list") - checks_before
    seconds = 4  # the intervals that passed since `before`, generously
    assert emulator.counters.count("update") - before.get("update", {}).get("204", 0) == 2
    assert lists <= seconds * -(-500 // MAX_PAGE_SIZE) + 2, lists
    assert emulator.counters.count("get") == before.get("get", {}).get("200", 0)


def test_adoption_makes_no_create_and_no_put_when_nothing_differs(operator_env: OperatorEnv):
    secret = operator_env.emulator.create_token("made by hand", ["metrics.read", "entities.read"])
    operator_env.start()
    operator_env.apply(
        "adopted",
        {
            "name": "made by hand",
            "scopes": ["entities.read", "metrics.read"],
            "enabled": True,
            "adoptTokenId": secret.token_id,
        },
    )
    body = operator_env.wait_ready("adopted")
    settle()
    assert body["status"]["id"] == secret.token_id
    assert body["status"]["secretAvailable"] is False
    assert "rotate" in operator_env.condition("adopted")["message"]
    assert operator_env.calls("create") == 0 and operator_env.calls("update") == 0
    assert any(e.reason == "Adopted" for e in operator_env.events("adopted"))
    operator_env.patch_spec("adopted", {"scopes": ["metrics.read"]})
    wait_until(lambda: operator_env.calls("update") == 1, what="one PUT after a spec change")
    operator_env.annotate("adopted", **{"dynatrace.apitokens.io/rotate": "1"})
    wait_until(lambda: operator_env.secret_value("adopted") is not None, what="a secret after the rotation")
    assert operator_env.wait_ready("adopted")["status"]["secretAvailable"] is True


def test_rotation_keeps_the_old_token_for_the_grace_period_and_consumers_never_see_a_dead_one(
    operator_env: OperatorEnv,
):
    operator_env.start()
    operator_env.apply("rotating", {**SPEC, "expirationDate": "now+30d", "rotation": {"gracePeriod": "4s"}})
    old_id = operator_env.wait_ready("rotating")["status"]["id"]
    old = operator_env.secret_value("rotating")
    emulator = operator_env.emulator.emulator
    seen_invalid: list[str] = []
    stop = threading.Event()

    def consumer() -> None:  # reads the Secret like a workload would, and uses what it finds
        while not stop.is_set():
            value = operator_env.secret_value("rotating")
            record = emulator.record_of(value) if value else None
            if record is None or not record.enabled or record.is_expired(emulator.clock()):
                seen_invalid.append(value.token_id if value else "no secret")
            time.sleep(0.05)

    reader = threading.Thread(target=consumer)
    reader.start()
    try:
        operator_env.annotate("rotating", **{"dynatrace.apitokens.io/rotate": "2026-11-28"})
        wait_until(lambda: operator_env.secret_value("rotating").token_id != old_id, what="the switch")
        switched = time.monotonic()
        status = operator_env.wait_ready("rotating")["status"]
        assert status["id"] != old_id and status["lastRotationRequest"] == "2026-11-28"
        assert [t["id"] for t in status["retiringTokens"]] == [old_id]
        assert emulator.record_of(old) is not None  # still works during the grace period
        wait_until(lambda: emulator.record_of(old) is None, timeout=20, what="the old token's deletion")
        assert time.monotonic() - switched >= 3.0
    finally:
        stop.set()
        reader.join()
    assert seen_invalid == []
    assert [t.id for t in operator_env.live_tokens()] == [operator_env.get("rotating")["status"]["id"]]
    assert "retiringTokens" not in operator_env.get("rotating")["status"]
    assert {"Rotated", "Retired"} <= {e.reason for e in operator_env.events("rotating")}


def test_renewal_before_expiry_gives_a_fresh_window(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply(
        "renewing",
        {**SPEC, "expirationDate": "now+10m", "rotation": {"renewBefore": "598s", "gracePeriod": "1s"}},
    )
    first = operator_env.wait_ready("renewing")["status"]
    assert first["nextRenewal"] < first["expirationDate"]
    wait_until(
        lambda: (operator_env.get("renewing") or {})["status"]["id"] != first["id"],
        timeout=20,
        what="a renewal",
    )
    renewed = operator_env.wait_ready("renewing")["status"]
    assert renewed["expirationDate"] > first["expirationDate"]
    assert renewed["nextRenewal"] > format_date(operator_env.emulator.emulator.clock())


def test_check_annotation_requests_an_immediate_drift_check(operator_env: OperatorEnv):
    operator_env.start("--drift-interval", "3600", "--observation-max-age", "3600")
    operator_env.apply("drift", SPEC)
    token_id = operator_env.wait_ready("drift")["status"]["id"]
    emulator = operator_env.emulator
    emulator.call(
        emulator.store.update, emulator.emulator.record_of(token_id), now=emulator.clock(), enabled=False
    )
    settle(1.5)
    assert emulator.emulator.record_of(token_id).enabled is False  # nobody looked yet
    operator_env.annotate("drift", **{"dynatrace.apitokens.io/check": "now"})
    wait_until(lambda: emulator.emulator.record_of(token_id).enabled, what="the drift to be put back")
