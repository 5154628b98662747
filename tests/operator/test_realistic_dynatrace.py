"""Exactly one token per object against a slower, stricter Dynatrace than the kind emulator plays.

- lists whose answers arrive seconds after their snapshot (a page of thousands of tokens takes that);
- two operators (two clusters, or two namespace shards) on one environment with one admin credential,
  making tokens of the same names, one of them losing a create's answer;
- offset-style pages that shift while the operator deletes tokens between two page calls;
- throttling as Dynatrace documents it: bare 429s, after up to ten seconds in its queue;
- a personal access token as the connection, after the environment turned them off.

Every case ends in `world_problems` (tests/fixtures/faults.py): no orphan, no duplicate, every Secret
holding its object's live token.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.reconcile.status import last_used_period
from tests.fixtures.cluster import wait_until
from tests.fixtures.faults import apitokens, live_tokens, wait_invariants, world_problems
from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane

SPEC: dict[str, Any] = {"scopes": ["metrics.read"], "enabled": True}


def spec(name: str) -> dict[str, Any]:
    return {**SPEC, "name": name}


@pytest.fixture
def other_cluster(operator_env: OperatorEnv, k8s: kubernetes.client.ApiClient) -> Iterator[OperatorEnv]:
    """A second operator on the same Dynatrace environment and admin credential, in a namespace of its
    own that the first never watches: to either, the other's tokens are strangers of the same owner."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    core = kubernetes.client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": namespace}})
    workdir = operator_env.workdir / "other-cluster"
    workdir.mkdir()
    other = dataclasses.replace(operator_env, namespace=namespace, workdir=workdir, process=None, logs=[])
    other.create_connection()
    try:
        yield other
    finally:
        other.stop()
        for item in apitokens(other, namespace):  # let the namespace go
            other.custom.patch_namespaced_custom_object(
                "dynatrace.apitokens.io",
                "v1alpha1",
                namespace,
                "apitokens",
                item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )
        core.delete_namespace(namespace)


def test_a_lost_create_never_deletes_another_operators_token_of_the_same_name(
    operator_env: OperatorEnv, other_cluster: OperatorEnv
) -> None:
    """GitOps rolls the same manifests to two clusters: both make a token named "web ingest" through the
    same admin token, so Dynatrace shows two tokens of one name and one owner. The first operator's
    create reaches Dynatrace but its answer is lost; its clean-up must find its own token, not the
    other cluster's, made a moment earlier."""
    mine, theirs = operator_env, other_cluster
    theirs.start()
    theirs.apply("web", spec("web ingest"))
    their_token = theirs.wait_ready("web")["status"]["id"]
    faults = mine.emulator.faults
    faults.update(drop_response_ratio=1.0, operations=["create"])
    mine.start()
    mine.apply("web", spec("web ingest"))
    wait_until(
        lambda: mine.emulator.counters.count("create", "dropped") >= 1, what="a create answer to be lost"
    )
    mine.reset_faults()
    my_token = mine.wait_ready("web", timeout=60)["status"]["id"]

    assert my_token != their_token
    assert mine.emulator.emulator.record_of(their_token) is not None, "the other cluster's token was deleted"
    value = theirs.secret_value("web")
    assert value is not None and value.token_id == their_token
    assert mine.emulator.emulator.record_of(value) is not None  # the other cluster's Secret still works
    assert world_problems(mine, (mine.namespace, theirs.namespace), count=2) == []
    names = sorted(t.name for t in live_tokens(mine))
    assert names == ["web ingest", "web ingest"]  # the lost create's leftover went, nothing else


def test_lists_answering_seconds_after_their_snapshot_make_no_second_token(operator_env: OperatorEnv) -> None:
    """Creates land while a listing is on its way back: the listing must not hide them."""
    env = operator_env
    env.emulator.faults.update(list_latency=2.0)
    env.start()
    apply_in_waves(env, "wave", count=60)
    wait_invariants(env, count=60, timeout=120)
    time.sleep(3)  # listings under way when the last create landed have come back
    assert world_problems(env, count=60) == []
    assert env.calls("create") == 60


def test_with_a_one_second_drift_check_too(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.emulator.faults.update(list_latency=2.0)
    env.start("--drift-interval", "1")
    apply_in_waves(env, "drift", count=60)
    wait_invariants(env, count=60, timeout=120)
    time.sleep(4)  # two more drift checks, each answering 2 s late
    assert world_problems(env, count=60) == []
    assert env.calls("create") == 60
    assert not any(e.reason == Reason.RECREATED for e in env.core.list_namespaced_event(env.namespace).items)


def apply_in_waves(env: OperatorEnv, prefix: str, *, count: int, wave: int = 10, pause: float = 1.0) -> None:
    for start in range(0, count, wave):
        for i in range(start, min(start + wave, count)):
            env.apply(f"{prefix}-{i}", spec(f"{prefix} {i}"))
        time.sleep(pause)


def test_bare_429s_after_ten_seconds_in_the_queue_converge_to_one_token_each(
    operator_env: OperatorEnv,
) -> None:
    """Half the calls are throttled as Dynatrace documents it: no Retry-After, no X-RateLimit-*, and the
    429 only after up to ten seconds in the environment's queue."""
    env = operator_env
    env.emulator.faults.update(
        rate_limit_ratio=0.5, retry_after=None, rate_limit_reset=False, throttle_wait=10.0
    )
    env.start()
    for i in range(50):
        env.apply(f"throttled-{i}", spec(f"throttled {i}"))
    wait_until(lambda: env.emulator.counters.count(outcome=429) >= 50, timeout=120, what="the 429s to hit")
    wait_invariants(env, count=50, timeout=300)
    assert len(live_tokens(env)) == 50
    assert env.emulator.counters.count("create", 201) == 50  # no create made twice


def test_offset_pages_shifted_by_deletes_never_make_a_replacement(operator_env: OperatorEnv) -> None:
    """Pages of 100 with offset cursors, answered late: the operator deletes the newest tokens while a
    drift listing is between its two pages, so the second page shifts and skips 60 live tokens. A skipped
    token is looked at again (by id, or by a newer listing), never replaced."""
    env = operator_env
    env.emulator.faults.update(paging="offset", list_latency=0.5)
    env.start("--list-page-size", "100", "--drift-interval", "1")
    names = [f"paged-{i}" for i in range(160)]
    for name in names:
        env.apply(name, spec(name))
    before = {
        item["metadata"]["name"]: item["status"]["id"]
        for item in wait_invariants(env, count=160, timeout=180)
    }
    gate = env.emulator.follow_up_pages
    gate.hold()  # the next listing reads its first page, then waits for its second
    try:
        wait_until(lambda: gate.waiting > 0, timeout=60, what="a drift listing between its pages")
        doomed = names[-60:]  # the newest tokens: the first page; deleting them shifts the second
        survivors = names[:-60]
        for name in doomed:
            env.delete(name)
        wait_until(lambda: len(live_tokens(env)) == len(survivors), timeout=120, what="the deletes")
    finally:
        gate.release()
    # The held listing goes on: its second page starts at offset 100 of the 100 tokens left, so it is
    # empty and the oldest survivors went unseen by that listing.
    wait_until(lambda: gate.passed > 0, timeout=30, what="the held listing's second page")
    time.sleep(3)  # the drift it reports is looked at; more drift checks
    after = {
        item["metadata"]["name"]: item["status"]["id"] for item in wait_invariants(env, count=len(survivors))
    }
    assert after == {name: before[name] for name in survivors}  # nobody got a new token
    assert env.emulator.counters.count("create") == 160
    assert not any(e.reason == Reason.RECREATED for e in env.core.list_namespaced_event(env.namespace).items)


def test_a_personal_access_token_connection_after_the_environment_turned_them_off(
    operator_env: OperatorEnv,
) -> None:
    """The connection's token is a personal access token; the environment then turns them off, which makes
    existing ones fail authentication. Objects say so (Stalled, Unauthorized); nothing is deleted, also
    not when an object is deleted meanwhile."""
    env = operator_env
    pat = env.emulator.create_token(
        "ci pat", ["apiTokens.read", "apiTokens.write"], owner="ci@example.com", personal_access_token=True
    )
    env.core.create_namespaced_secret(
        env.namespace,
        {
            "metadata": {"name": "pat-connection", "labels": {"dynatrace.apitokens.io/connection": "true"}},
            "stringData": {"apiUrl": env.emulator.base_url, "apiToken": pat.reveal()},
        },
    )
    env.start("--drift-interval", "1")
    for i in range(3):
        env.apply(f"pat-{i}", {**spec(f"pat {i}"), "connectionSecretRef": {"name": "pat-connection"}})
    for i in range(3):
        env.wait_ready(f"pat-{i}")
    tokens_before = {t.id for t in live_tokens(env)}
    env.emulator.set_personal_access_tokens(False)
    for i in range(3):
        condition = env.wait_condition(f"pat-{i}", "Stalled", "True", reason=Reason.UNAUTHORIZED, timeout=60)
        assert "personal access tokens are disabled" in condition["message"]
    env.delete("pat-0")
    env.wait_condition("pat-0", "Stalled", "True", reason=Reason.DELETE_BLOCKED, timeout=30)
    time.sleep(2)
    assert {t.id for t in live_tokens(env)} == tokens_before  # nothing deleted
    warnings = [e for e in env.events("pat-1") if e.type == "Warning" and e.reason == Reason.UNAUTHORIZED]
    assert warnings


def test_tokens_in_use_reach_the_status_once_not_at_every_drift_check(operator_env: OperatorEnv) -> None:
    """Consumers use every token all the time. The first use shows in the status; later ones rewrite
    nothing until the token's own last-use period turns (once a --last-used-interval, the periods
    staggered per token), whatever the drift checks see."""
    env = operator_env
    env.start("--drift-interval", "1")
    names = [f"used-{i}" for i in range(20)]
    for name in names:
        env.apply(name, spec(name))
    wait_invariants(env, count=len(names))
    env.emulator.usage_round(1.0)  # every token used once

    def statuses() -> dict[str, dict[str, Any]]:
        return {item["metadata"]["name"]: item for item in apitokens(env, env.namespace)}

    def first_use_shown() -> dict[str, dict[str, Any]] | None:
        items = statuses()
        return items if all((i.get("status") or {}).get("lastUsedDate") for i in items.values()) else None

    before = wait_until(first_use_shown, timeout=30, what="the first use in every status")
    for _ in range(5):  # five more drift checks, every token used again before each
        env.emulator.usage_round(1.0)
        time.sleep(1.0)
    after = statuses()
    for name, item in after.items():
        if item["metadata"]["resourceVersion"] == before[name]["metadata"]["resourceVersion"]:
            continue
        # rewritten: only because the token's period turned (rare: ~7 s of a 3600 s period, per token)
        token_id, was, now = item["status"]["id"], before[name]["status"], item["status"]
        periods = {
            last_used_period(s["lastUsedDate"], interval=3600.0, token_id=token_id) for s in (was, now)
        }
        assert len(periods) == 2, f"{name}: its use alone rewrote it within one period"
