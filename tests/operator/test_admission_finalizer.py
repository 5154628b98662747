"""The finalizer put on by the API server (the chart's admissionFinalizer, the admission-finalizer component):
a new ApiToken carries it from its creation, the operator makes four writes for it instead of five, and
deletion still revokes the token and releases the object.

The policy is the shipped component's, bound to the test's namespace only (the control plane is shared
with the other tests) and removed afterwards.
"""

from __future__ import annotations

import copy
import pathlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client import ApiException

from apitoken_devenv.controlplane import free_port
from apitoken_operator.reconcile.attention import FINALIZER
from tests.fixtures.cluster import wait_until
from tests.fixtures.metrics import Samples, scrape, value
from tests.fixtures.operator import OperatorEnv

pytestmark = pytest.mark.controlplane

COMPONENT = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "components" / "admission-finalizer"
REQUESTS = "apitoken_operator_kubernetes_requests_total"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def finalizer_policy(operator_env: OperatorEnv) -> Iterator[str]:
    """The component's policy and binding, renamed for this test and bound to its namespace."""
    policy, binding = (d for d in yaml.safe_load_all((COMPONENT / "finalizer-policy.yaml").read_text()) if d)
    name = f"test-{uuid.uuid4().hex[:8]}.{policy['metadata']['name']}"
    policy, binding = copy.deepcopy(policy), copy.deepcopy(binding)
    policy["metadata"]["name"] = binding["metadata"]["name"] = binding["spec"]["policyName"] = name
    binding["spec"]["matchResources"] = {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [operator_env.namespace]}
            ]
        }
    }
    api: Any = kubernetes.client.AdmissionregistrationV1Api(operator_env.k8s)
    api.create_mutating_admission_policy(policy)
    api.create_mutating_admission_policy_binding(binding)
    try:
        yield name
    finally:
        api.delete_mutating_admission_policy_binding(name)
        api.delete_mutating_admission_policy(name)


def _writes(samples: Samples) -> dict[str, float]:
    return {
        f"{verb} {resource}": value(samples, REQUESTS, verb=verb, resource=resource)
        for verb in WRITES
        for resource in ("apitokens", "apitokens/status", "secrets", "events")
        if value(samples, REQUESTS, verb=verb, resource=resource)
    }


def _settled(port: int) -> Callable[[], dict[str, float] | None]:
    """A check that holds once two scrapes a second apart count the same writes (Events are posted in
    the background)."""
    last: list[dict[str, float]] = []

    def check() -> dict[str, float] | None:
        now = _writes(scrape(port))
        if last and last[-1] == now:
            return now
        last.append(now)
        time.sleep(1.0)
        return None

    return check


def _reads_settled(port: int) -> Callable[[], tuple[float] | None]:
    """A check that holds once two scrapes a second apart count the same ApiToken reads (as a 1-tuple,
    which is truthy for wait_until even when the count is 0)."""
    last: list[float] = []

    def check() -> tuple[float] | None:
        now = value(scrape(port), REQUESTS, verb="GET", resource="apitokens")
        if last and last[-1] == now:
            return (now,)
        last.append(now)
        time.sleep(1.0)
        return None

    return check


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: n - before.get(key, 0) for key, n in after.items() if n - before.get(key, 0)}


def _wait_for_the_policy(operator_env: OperatorEnv, spec: dict[str, Any]) -> None:
    """The policy takes effect once the API server's informer has it: probe until a create carries it."""
    probes: list[str] = []

    def probe() -> bool:
        name = f"probe-{uuid.uuid4().hex[:6]}"
        try:
            made = operator_env.apply(name, spec)
        except ApiException as error:
            # for about a second after a policy is made, the API server answers an ApiToken create 503
            # (the policy's types for the CRD are being resolved); clients retry, and so does this probe
            if error.status != 503:
                raise
            return False
        probes.append(name)
        operator_env.delete(name)  # released by the operator, or gone at once without the finalizer
        return FINALIZER in (made["metadata"].get("finalizers") or [])

    wait_until(probe, timeout=30, interval=0.5, what="the finalizer policy to apply to new ApiTokens")
    for name in probes:
        operator_env.wait_gone(name)
    wait_until(lambda: not operator_env.live_tokens(), what="the probes' tokens to be deleted")


def test_a_new_apitoken_has_the_finalizer_from_its_creation_and_costs_four_writes(
    operator_env: OperatorEnv, finalizer_policy: str
) -> None:
    port = free_port()
    operator_env.start("--metrics-port", str(port))
    spec = {"name": "web ingest", "scopes": ["metrics.ingest"]}

    _wait_for_the_policy(operator_env, spec)
    before = wait_until(_settled(port), what="the probes' writes to be counted")
    made = operator_env.apply("web", spec)
    assert made["metadata"]["finalizers"] == [FINALIZER]  # put on by the API server, in the create
    ready = operator_env.wait_ready("web")
    assert operator_env.secret_value("web") is not None and ready["status"]["id"]

    def four_writes() -> dict[str, float] | None:
        written = _delta(before, _writes(scrape(port)))
        return written if sum(written.values()) >= 4 else None

    written = wait_until(four_writes, what="the create's writes (the Event is posted in the background)")
    # the intent and the outcome in the status, the Secret, the Created Event: no finalizer PATCH
    assert written == {"PATCH apitokens/status": 2, "POST secrets": 1, "POST events": 1}, written

    operator_env.delete("web")
    operator_env.wait_gone("web")
    assert operator_env.live_tokens() == []


def test_objects_parked_on_their_connection_are_reconciled_without_reading_them_again(
    operator_env: OperatorEnv, finalizer_policy: str
) -> None:
    """24 ApiTokens at once on one connection, whose budget runs 8 reconciles at a time, with Dynatrace
    answering creates late: most park, and each is reconciled from the body it parked with when its turn
    comes (so are the events of the operator's own writes queued meanwhile), not from a new read."""
    port = free_port()
    operator_env.start("--metrics-port", str(port))
    spec = {"name": "web ingest", "scopes": ["metrics.ingest"]}
    _wait_for_the_policy(operator_env, spec)
    # The garbage collector deletes the probes' Secrets after them, and each deletion wakes a reconcile
    # of its (gone) probe, a read: count from when they are gone and the reads have settled.
    wait_until(
        lambda: (
            not [
                s
                for s in operator_env.core.list_namespaced_secret(operator_env.namespace).items
                if s.metadata.name.startswith("probe-")
            ]
        ),
        what="the probes' Secrets to be collected",
    )
    (reads_before,) = wait_until(_reads_settled(port), what="the probes' reads to settle")
    operator_env.emulator.faults.update(latency=0.3, operations=["create"])
    names = [f"burst-{i}" for i in range(24)]
    for name in names:
        operator_env.apply(name, spec)
    for name in names:
        operator_env.wait_ready(name, timeout=120)
    assert len(operator_env.live_tokens()) == len(names)
    assert value(scrape(port), REQUESTS, verb="GET", resource="apitokens") == reads_before


def test_an_apitoken_made_before_the_policy_still_gets_the_finalizer_from_the_operator(
    operator_env: OperatorEnv,
) -> None:
    """Without the policy (an older cluster, admissionFinalizer=false) nothing changes: the operator adds
    the finalizer with its first write, and five writes make a token."""
    port = free_port()
    operator_env.start("--metrics-port", str(port))
    made = operator_env.apply("web", {"name": "web", "scopes": ["metrics.ingest"]})
    assert FINALIZER not in (made["metadata"].get("finalizers") or [])
    operator_env.wait_ready("web")
    assert FINALIZER in (operator_env.get("web") or {})["metadata"]["finalizers"]

    def five_writes() -> dict[str, float] | None:
        written = _writes(scrape(port))
        return written if sum(written.values()) >= 5 else None

    written = wait_until(five_writes, what="the create's writes")
    assert written == {
        "PATCH apitokens": 1,
        "PATCH apitokens/status": 2,
        "POST secrets": 1,
        "POST events": 1,
    }, written
