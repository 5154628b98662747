"""The metrics a Prometheus scrape finds after a real lifecycle."""

from __future__ import annotations

import pytest

from apitoken_devenv.controlplane import free_port
from tests.fixtures.cluster import wait_until
from tests.fixtures.metrics import scrape, value
from tests.fixtures.operator import GROUP, PLURAL, VERSION, OperatorEnv

pytestmark = pytest.mark.controlplane


def test_metrics_after_create_rotate_and_a_failure(operator_env: OperatorEnv):
    port = free_port()
    operator_env.start("--metrics-port", str(port))
    operator_env.apply(
        "m",
        {
            "name": "m",
            "scopes": ["metrics.read"],
            "enabled": True,
            "expirationDate": "now+30d",
            "rotation": {"gracePeriod": "1s"},
        },
    )
    first = operator_env.wait_ready("m")["status"]
    operator_env.apply("bad", {"name": "bad", "scopes": ["no.such.scope"]})
    operator_env.wait_condition("bad", "Stalled", "True")
    operator_env.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        operator_env.namespace,
        PLURAL,
        "m",
        {"metadata": {"annotations": {"dynatrace.apitokens.io/rotate": "1"}}},
    )
    wait_until(lambda: operator_env.get("m")["status"]["id"] != first["id"], what="the rotation")
    second = operator_env.wait_ready("m")["status"]
    samples = wait_until(
        lambda: (s := scrape(port)) and value(s, "apitoken_operator_rotations_total") >= 1 and s,
        what="the rotation in the metrics",
    )
    assert (
        value(samples, "apitoken_operator_dynatrace_api_calls_total", operation="create", status="201") == 2
    )
    assert (
        value(samples, "apitoken_operator_dynatrace_api_calls_total", operation="create", status="400") == 1
    )
    assert (
        value(samples, "apitoken_operator_dynatrace_api_call_duration_seconds_count", operation="create") == 3
    )
    assert value(samples, "apitoken_operator_reconciles_total", health="Ready") >= 2
    assert (
        value(samples, "apitoken_operator_reconciles_total", health="Stalled", reason="RejectedByDynatrace")
        >= 1
    )
    # the reconciler's own Kubernetes requests: one Secret made (for "m"; "bad" never got one), the
    # intents and outcomes as status patches; labelled by resource, never by object
    requests = "apitoken_operator_kubernetes_requests_total"
    assert value(samples, requests, verb="POST", resource="secrets", code="201") == 1
    assert value(samples, requests, verb="PATCH", resource="apitokens/status", code="200") >= 4
    assert value(samples, requests, verb="POST", resource="events", code="201") >= 2
    resources = {dict(ls)["resource"] for (n, ls), _ in samples.items() if n == requests}
    assert resources <= {"apitokens", "apitokens/status", "secrets", "events", "kopfpeerings"}, resources
    assert value(samples, "apitoken_operator_token_ready", name="m") == 1
    assert value(samples, "apitoken_operator_token_ready", name="bad") == 0
    assert value(samples, "apitoken_operator_tokens_managed") == 1
    expiry = [
        (ls, v)
        for (n, ls), v in samples.items()
        if n == "apitoken_operator_token_expiration_timestamp_seconds"
    ]
    # one series per object, following it across the rotation; no token id in any label
    assert [dict(ls) for ls, _ in expiry] == [{"namespace": operator_env.namespace, "name": "m"}]
    assert not any("dt0c01." in label for _, ls in samples for _, label in ls)
    from apitoken_operator.dynatrace.dates import parse_date

    assert expiry[0][1] == pytest.approx(parse_date(second["expirationDate"], now=None).timestamp())  # type: ignore[arg-type]
