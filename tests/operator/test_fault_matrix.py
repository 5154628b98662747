"""The fault matrix: whatever breaks, no orphan token, no lost secret, no duplicate, every object Ready or
truthfully not (the check is `world_problems` in tests/fixtures/faults.py, the same for every fault).

- kill -9 of the operator at every named step of a create, a replacement, a rotation and a delete, with
  several objects, the crash at a different object's pass each run;
- Dynatrace misbehaving over a whole lifecycle: a 429 storm, a 5xx storm, an outage, lost responses;
- kube-apiserver stopped and started again while creates and deletes are under way (a private control
  plane: the session's one is shared);
- a namespace holding 100 ApiTokens deleted at once;
- two operator replicas with peering: started together (on new objects, and on objects waiting for
  them), and one of higher priority joining while the other has creates under way.

`--fault-runs N` repeats each crash case N times (more objects, other crash moments) and scales the
object counts of the others; `--runslow` adds the long cases. tests/operator/test_throttling.py holds
the sixty-second outage with fifty tokens.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiException

from apitoken_devenv.controlplane import ControlPlane, free_port
from apitoken_operator.controller.failpoints import CREATE_STEPS as CRASH_STEPS
from apitoken_operator.controller.failpoints import DELETE_STEPS as DELETE_CRASH_STEPS
from tests.fixtures.cluster import wait_until
from tests.fixtures.faults import (
    apitokens,
    condition,
    count_arrivals,
    is_ready,
    live_tokens,
    under_way,
    wait_all_deleted,
    wait_invariants,
    world_problems,
)
from tests.fixtures.operator import GROUP, PLURAL, VERSION, OperatorEnv

pytestmark = pytest.mark.controlplane

KILLED = 137
#: objects per crash case in the first run; each further run adds one
OBJECTS = 3
SPEC: dict[str, Any] = {"scopes": ["metrics.read"], "enabled": True, "expirationDate": "now+30d"}
ROTATION = {"gracePeriod": "1s"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "run" in metafunc.fixturenames:
        runs = int(metafunc.config.getoption("--fault-runs"))
        if runs < 1:
            raise pytest.UsageError("--fault-runs must be at least 1")
        metafunc.parametrize("run", range(runs), ids=[f"run{r + 1}" for r in range(runs)])


def spec(name: str, **extra: Any) -> dict[str, Any]:
    return {**SPEC, "name": f"fault {name}", **extra}


def names_for(run: int, prefix: str = "tok") -> list[str]:
    return [f"{prefix}-{i}" for i in range(OBJECTS + run)]


def nth_pass(steps: tuple[str, ...], step: str, run: int, objects: int) -> int:
    """Which pass of `step` to crash at: another object's for each step and each run."""
    return 1 + (steps.index(step) + run) % objects


def crash_during(
    env: OperatorEnv, names: list[str], step: str, nth: int, act: Callable[[], None], **extra: Any
) -> dict[str, str]:
    """Make `names` Ready under an operator set to die (as by kill -9) at the `nth` pass of `step` that
    `act` causes, let `act` run into the crash, and start the operator again; the first token ids by name.

    The objects' own creates pass the create steps once each first (asserted), so they are counted in.
    """
    first = len(names) if step in CRASH_STEPS else 0
    crash_at = f"{step}:{first + nth}"
    env.start(crash_at=crash_at)
    for name in names:
        env.apply(name, spec(name, **extra))
    items = wait_invariants(env, count=len(names))
    assert env.calls("create") == len(names), "not one create per object: the crash would come early"
    act()
    assert env.wait_exit() == KILLED, f"the operator never reached {crash_at}:\n{env.log_text()[-3000:]}"
    env.start()
    return {item["metadata"]["name"]: item["status"]["id"] for item in items}


def apply_all(env: OperatorEnv, names: list[str]) -> Callable[[], None]:
    def act() -> None:
        for name in names:
            env.apply(name, spec(name))

    return act


def delete_all(env: OperatorEnv, names: list[str]) -> Callable[[], None]:
    def act() -> None:
        for name in names:
            env.delete(name)

    return act


# --- kill -9 at every step -------------------------------------------------------------------------------


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_kill_9_during_create(operator_env: OperatorEnv, step: str, run: int) -> None:
    _kill_9_during_create(operator_env, step, run)


@pytest.mark.parametrize("emulator_profile", ["realistic"])
@pytest.mark.parametrize("step", ["after-create", "after-secret"])
def test_kill_9_during_create_against_a_late_dynatrace(
    operator_env: OperatorEnv, step: str, run: int
) -> None:
    """The two crashes whose recovery reads Dynatrace (a listing for the leftover, a lookup for the
    Secret's token), against the realistic profile in every run; the whole matrix runs against it with
    `--emulator-profile realistic`."""
    _kill_9_during_create(operator_env, step, run)


def _kill_9_during_create(operator_env: OperatorEnv, step: str, run: int) -> None:
    names = names_for(run)
    crash_at = f"{step}:{nth_pass(CRASH_STEPS, step, run, len(names))}"
    operator_env.start(crash_at=crash_at)
    apply_all(operator_env, names)()
    assert operator_env.wait_exit() == KILLED, f"the operator never reached {crash_at}"
    operator_env.start()
    wait_invariants(operator_env, count=len(names))


REPLACEMENT_STEPS = CRASH_STEPS + DELETE_CRASH_STEPS


@pytest.mark.parametrize("step", REPLACEMENT_STEPS)
def test_kill_9_during_replacement(operator_env: OperatorEnv, step: str, run: int) -> None:
    """A spec.expirationDate change: a new token, the Secret switched, the old token deleted at once."""
    names = names_for(run)

    def replace_all() -> None:
        for name in names:
            operator_env.patch_spec(name, {"expirationDate": "now+60d"})

    nth = nth_pass(REPLACEMENT_STEPS, step, run, len(names))
    before = crash_during(operator_env, names, step, nth, replace_all)
    for item in wait_invariants(operator_env, count=len(names)):
        assert item["status"]["id"] != before[item["metadata"]["name"]]
        assert item["status"]["requestedExpirationDate"] == "now+60d"


@pytest.mark.parametrize("step", REPLACEMENT_STEPS)
def test_kill_9_during_rotation(operator_env: OperatorEnv, step: str, run: int) -> None:
    """A rotation on request keeps the old token for a grace period (1 s here), then deletes it."""
    names = names_for(run)
    request = f"run-{run}-{uuid.uuid4().hex[:6]}"

    def rotate_all() -> None:
        for name in names:
            operator_env.annotate(name, **{"dynatrace.apitokens.io/rotate": request})

    nth = nth_pass(REPLACEMENT_STEPS, step, run, len(names))
    before = crash_during(operator_env, names, step, nth, rotate_all, rotation=ROTATION)
    wait_until(
        lambda: all(
            item["status"].get("lastRotationRequest") == request
            for item in apitokens(operator_env, operator_env.namespace)
        ),
        what="every object to act on the rotation request",
    )
    for item in wait_invariants(operator_env, count=len(names), retired=True):
        assert item["status"]["id"] != before[item["metadata"]["name"]]
    assert not {t.id for t in live_tokens(operator_env)} & set(before.values()), (
        "an old token outlived its grace"
    )


@pytest.mark.parametrize("step", DELETE_CRASH_STEPS)
def test_kill_9_during_delete(operator_env: OperatorEnv, step: str, run: int) -> None:
    names = names_for(run)
    nth = nth_pass(DELETE_CRASH_STEPS, step, run, len(names))
    crash_during(operator_env, names, step, nth, delete_all(operator_env, names))
    wait_all_deleted(operator_env)


# --- Dynatrace misbehaving -------------------------------------------------------------------------------


def test_a_lifecycle_through_429_and_5xx_storms_an_outage_and_lost_responses(
    operator_env: OperatorEnv, fault_runs: int
) -> None:
    """Each storm first hits every request (so that it surely hits each object), then one in three
    while the operator catches up; the 60 s outage with 50 tokens is in test_throttling.py."""
    env, faults, counters = operator_env, operator_env.emulator.faults, operator_env.emulator.counters
    names = [f"storm-{i}" for i in range(5 * fault_runs)]

    def server_errors() -> int:
        return sum(counters.count(outcome=status) for status in (502, 503, 504))

    # creates through a 429 storm
    faults.update(rate_limit_ratio=1.0, retry_after=0.5)
    env.start()
    apply_all(env, names)()
    # (under the realistic profile a 429 comes after up to 10 s in the queue: it takes longer to hit all)
    wait_until(lambda: counters.count(outcome=429) >= len(names), timeout=120, what="the 429 storm to hit")
    faults.update(rate_limit_ratio=0.3)
    created = {
        item["metadata"]["name"]: item["status"]["id"] for item in wait_invariants(env, count=len(names))
    }

    # scope changes (one PUT each) through a 5xx storm with gateway HTML bodies
    env.reset_faults()
    faults.update(server_error_ratio=1.0, server_error_html=True)
    for name in names:
        env.patch_spec(name, {"scopes": ["metrics.read", "logs.read"]})
    wait_until(lambda: server_errors() >= len(names), what="the 5xx storm to hit")
    faults.update(server_error_ratio=0.3)
    for item in wait_invariants(env, count=len(names)):
        record = env.emulator.emulator.record_of(item["status"]["id"])
        assert record is not None and set(record.scopes) == {"metrics.read", "logs.read"}

    # replacements asked for during an outage: every object says why it waits, and nothing is made
    env.reset_faults()
    faults.update(outage="unavailable")
    for name in names:
        env.patch_spec(name, {"expirationDate": "now+60d"})

    def all_waiting_truthfully() -> bool:
        waiting = [condition(item, "Reconciling") for item in apitokens(env, env.namespace)]
        return all(c and c["reason"] == "DynatraceUnavailable" for c in waiting) and not world_problems(
            env, count=len(names), all_ready=False
        )

    wait_until(all_waiting_truthfully, timeout=60, what="every object to show the outage, truthfully")
    assert {t.id for t in live_tokens(env)} == set(created.values())
    faults.update(outage="off")
    for item in wait_invariants(env, count=len(names), timeout=90):
        assert item["status"]["id"] != created[item["metadata"]["name"]]

    # deletes whose answers are lost after the work was done, then everything at once
    faults.update(drop_response_ratio=1.0, operations=["delete"])
    delete_all(env, names)()
    wait_until(
        lambda: counters.count("delete", "dropped") >= len(names), what="the deletes' answers to be lost"
    )
    faults.update(operations=None, rate_limit_ratio=0.3, server_error_ratio=0.3, drop_response_ratio=0.3)
    wait_all_deleted(env, timeout=120)


# --- kube-apiserver stopped mid-reconcile ----------------------------------------------------------------


def apiserver_outage(plane: ControlPlane, seconds: float) -> None:
    plane.stop_apiserver()
    time.sleep(seconds)  # the outage itself; nothing is asserted by waiting
    plane.start_apiserver()


@pytest.mark.parametrize(
    "outage_seconds",
    [
        pytest.param(3.0, id="3s"),
        # longer than the operator's retries to store a new Secret (about 16 s): it must undo the token
        pytest.param(25.0, id="25s", marks=pytest.mark.slow),
    ],
)
def test_kube_apiserver_stopped_and_started_mid_reconcile(
    private_operator_env: OperatorEnv,
    private_plane: ControlPlane,
    fault_runs: int,
    outage_seconds: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Creates and deletes under way when kube-apiserver goes: answers come back from Dynatrace while the
    new Secrets, statuses and finalizer removals cannot be written."""
    env = private_operator_env
    arrived = count_arrivals(env, monkeypatch)
    old, new = [f"old-{i}" for i in range(3 * fault_runs)], [f"new-{i}" for i in range(3 * fault_runs)]
    env.start()
    apply_all(env, old)()
    wait_invariants(env, count=len(old))
    env.emulator.faults.update(latency=1.5, operations=["create", "delete"])  # calls under way for a while
    delete_all(env, old)()
    apply_all(env, new)()
    wait_until(
        lambda: under_way(env, arrived, "create") and under_way(env, arrived, "delete"),
        what="creates and deletes under way",
    )
    answered = env.calls("create"), env.calls("delete")
    apiserver_outage(private_plane, outage_seconds)
    assert env.calls("create") > answered[0], "no create answered while kube-apiserver was away"
    assert env.calls("delete") > answered[1], "no delete answered while kube-apiserver was away"
    wait_invariants(env, count=len(new), timeout=90)
    assert env.process is not None and env.process.poll() is None, "the operator died"


# --- a namespace deleted at once -------------------------------------------------------------------------


def test_a_namespace_with_a_hundred_apitokens_deleted_at_once(
    operator_env: OperatorEnv, fault_runs: int
) -> None:
    """The operator watches the test's namespace (holding the default connection) and the doomed one."""
    env = operator_env
    doomed = f"t-{uuid.uuid4().hex[:10]}-doomed"
    env.core.create_namespace({"metadata": {"name": doomed}})
    try:
        env.start("--namespace", doomed)
        count = 100 * fault_runs
        for i in range(count):
            env.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                doomed,
                PLURAL,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ApiToken",
                    "metadata": {"name": f"bulk-{i}"},
                    "spec": spec(f"bulk-{i}"),
                },
            )
        wait_invariants(env, [doomed], count=count, timeout=60 + count)
        assert len(live_tokens(env)) == count
        env.core.delete_namespace(doomed)
        wait_until(lambda: not namespace_exists(env, doomed), timeout=60 + count, what="the namespace to go")
        assert live_tokens(env) == [], "tokens left behind by the deleted namespace"
        assert env.process is not None and env.process.poll() is None, "the operator died"
    finally:
        if namespace_exists(env, doomed):
            for item in apitokens(env, doomed):  # let it go if the operator could not
                env.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    doomed,
                    PLURAL,
                    item["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )
            env.core.delete_namespace(doomed)


def namespace_exists(env: OperatorEnv, name: str) -> bool:
    try:
        env.core.read_namespace(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


# --- two replicas ----------------------------------------------------------------------------------------


PEERING = "tokens"
PAUSED, RESUMED = "Pausing operations in favour of", "Resuming operations"


def create_peering_object(env: OperatorEnv) -> None:
    """What the chart's hook creates: the KopfPeering object the replicas announce themselves in."""
    body = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}}
    env.custom.create_namespaced_custom_object("kopf.dev", "v1", env.namespace, "kopfpeerings", body)


def priorities(env: OperatorEnv) -> dict[int, int]:
    """The announced replicas' priorities by process id (kopf's identity ends with /<pid>)."""
    found = env.custom.get_namespaced_custom_object("kopf.dev", "v1", env.namespace, "kopfpeerings", PEERING)
    return {
        int(identity.rsplit("/", 1)[1]): peer["priority"]
        for identity, peer in (found.get("status") or {}).items()
    }


def active(replica: OperatorEnv) -> bool:
    """Whether kopf runs the replica's handlers: its last peering decision was to resume."""
    decisions = [line for line in replica.log_text().splitlines() if PAUSED in line or RESUMED in line]
    return bool(decisions) and RESUMED in decisions[-1]


def pid(replica: OperatorEnv) -> int:
    assert replica.process is not None
    return replica.process.pid


@pytest.mark.usefixtures("peering_crds")
def test_two_replicas_started_together_make_one_token_per_object(
    operator_env: OperatorEnv, second_operator: OperatorEnv, fault_runs: int
) -> None:
    """Started at the same instant: once they have seen each other, the replica of the higher priority
    works and the other stands by; every object then gets one token, made once and deleted once."""
    env, replicas = operator_env, (operator_env, second_operator)
    create_peering_object(env)
    for replica in replicas:
        replica.start("--peering", PEERING)

    def settled() -> bool:
        announced = priorities(env)
        if set(announced) != {pid(r) for r in replicas}:
            return False
        leader = max(replicas, key=lambda r: announced[pid(r)])
        return all(active(r) == (r is leader) for r in replicas)

    wait_until(settled, what="the replica of the higher priority to work and the other to stand by")
    names = [f"peer-{i}" for i in range(10 * fault_runs)]
    apply_all(env, names)()
    wait_invariants(env, count=len(names))
    assert env.calls("create") == len(names), "a token was created twice"
    delete_all(env, names)()
    wait_all_deleted(env)
    assert env.calls("delete") == len(names), "a token was deleted twice"
    for replica in replicas:
        assert replica.process is not None and replica.process.poll() is None, "a replica died"


@pytest.mark.usefixtures("peering_crds")
def test_a_replica_of_higher_priority_joining_while_creates_are_under_way(
    operator_env: OperatorEnv, second_operator: OperatorEnv, fault_runs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paused replica finishes the creates it has under way; the one taking over waits for them
    instead of settling their fresh intents, and from then on the paused one stands by entirely: no
    drift check, no retry, no Dynatrace call."""
    env, faults = operator_env, operator_env.emulator.faults
    arrived = count_arrivals(env, monkeypatch)
    create_peering_object(env)
    faults.update(latency=6.0, operations=["create"])  # creates stay under way for a while
    metrics_port = free_port()
    env.start(
        "--peering", PEERING, "--priority", "1", "--drift-interval", "1", "--metrics-port", str(metrics_port)
    )
    names = [f"peer-{i}" for i in range(3 * fault_runs)]
    apply_all(env, names)()
    wait_until(lambda: arrived["create"] == len(names), what="every object's create under way")
    second_operator.start("--peering", PEERING, "--priority", "2")  # as a RollingUpdate's new pod may
    wait_until(lambda: PAUSED in env.log_text(), timeout=60, what="the first replica to stand by")

    def quiet_and_ready() -> bool:
        items = apitokens(env, env.namespace)
        return not under_way(env, arrived, "create") and all(is_ready(i) for i in items)

    wait_until(quiet_and_ready, timeout=60, what="no create under way, every object with a token")
    assert world_problems(env, count=len(names)) == []
    assert env.calls("create") == len(names), "a token was created twice"
    before = dynatrace_calls(metrics_port)
    time.sleep(3)  # three drift intervals
    assert dynatrace_calls(metrics_port) == before, "the paused replica kept calling Dynatrace"
    assert "standing by" in env.log_text()


def dynatrace_calls(metrics_port: int) -> float:
    """The Dynatrace requests an operator has made, from its own /metrics."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apitoken_operator_dynatrace_api_calls_total{")
    )


@pytest.mark.usefixtures("peering_crds")
def test_two_replicas_started_together_on_existing_objects_make_one_token_each(
    operator_env: OperatorEnv, second_operator: OperatorEnv, fault_runs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects waiting when two replicas start: before the replicas have seen each other both work on
    them. An intent goes only onto the version of the object it was decided on, and a create the other
    replica recorded is waited for, so every object still gets one token."""
    env, replicas = operator_env, (operator_env, second_operator)
    arrived = count_arrivals(env, monkeypatch)
    create_peering_object(env)
    names = [f"early-{i}" for i in range(10 * fault_runs)]
    apply_all(env, names)()
    env.emulator.faults.update(latency=1.0, operations=["create"])  # both replicas get to act meanwhile
    for replica in replicas:
        replica.start("--peering", PEERING)
    wait_invariants(env, count=len(names), timeout=120)
    assert env.calls("create") == len(names), "a token was created twice"
    assert arrived["create"] == len(names), "a create was sent twice"


@pytest.mark.usefixtures("peering_crds")
def test_a_peering_replica_killed_during_creates_has_them_settled_once_kopf_calls_it_dead(
    operator_env: OperatorEnv, second_operator: OperatorEnv
) -> None:
    """kill -9 right after an intent: the replica that takes over does not wait out the whole window
    (3 minutes) for a create whose replica is gone, only until kopf's peering calls that replica dead
    (its keep-alive lifetime, 60 s)."""
    env = operator_env
    create_peering_object(env)
    names = [f"dead-{i}" for i in range(3)]
    env.start("--peering", PEERING, "--priority", "2", crash_at="after-intent:2")
    apply_all(env, names)()
    assert env.wait_exit() == KILLED, "the replica never reached its second intent"
    second_operator.start("--peering", PEERING, "--priority", "1")
    wait_invariants(env, count=len(names), timeout=150)  # the window would end after 180 s
    assert "which recorded create attempt" in second_operator.log_text()
