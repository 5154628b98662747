"""No token secret anywhere a user or a log collector can see: logs, Events, objects, annotations."""

from __future__ import annotations

import json

import pytest

from apitoken_operator.dynatrace.secrets import TOKEN_PATTERN
from tests.fixtures.cluster import wait_until
from tests.fixtures.operator import GROUP, PLURAL, VERSION, OperatorEnv

pytestmark = pytest.mark.controlplane


def test_no_secret_in_logs_events_objects_or_annotations(operator_env: OperatorEnv):
    operator_env.start()
    operator_env.apply(
        "leaky",
        {"name": "leak test", "scopes": ["metrics.read"], "enabled": True, "expirationDate": "now+10d"},
    )
    first = operator_env.wait_ready("leaky")["status"]["id"]
    secrets_seen = [operator_env.secret_value("leaky")]
    operator_env.patch_spec("leaky", {"scopes": ["logs.read"], "enabled": False, "expirationDate": "now+20d"})
    wait_until(lambda: operator_env.wait_ready("leaky")["status"]["id"] != first, what="the replacement")
    secrets_seen.append(operator_env.secret_value("leaky"))
    operator_env.apply("bad", {"name": "bad", "scopes": ["no.such.scope"]})
    operator_env.wait_condition("bad", "Stalled", "True")
    everything = {
        "operator log": operator_env.log_text(),
        "objects": json.dumps(
            operator_env.custom.list_namespaced_custom_object(GROUP, VERSION, operator_env.namespace, PLURAL)
        ),
        "events": "\n".join(
            f"{e.reason} {e.message} {e.metadata.annotations}"
            for e in operator_env.core.list_namespaced_event(operator_env.namespace).items
        ),
    }
    operator_env.delete("leaky")
    operator_env.wait_gone("leaky")
    everything["operator log"] = operator_env.log_text()
    assert "Created" in everything["events"] and "Replaced" in everything["events"]
    for where, text in everything.items():
        assert not TOKEN_PATTERN.search(text), f"a full token in the {where}"
        for secret in secrets_seen:
            assert secret is not None
            assert secret.reveal().split(".")[2] not in text, f"a secret part in the {where}"
