"""The bad-input catalogue: each bad input gets a clear message, and disturbs nothing else.

A bad input is either rejected by the API server up front (the CRD schema and its CEL rules), or reported
on the object: Ready=False with a reason and a message that names the problem, Stalled=True when only a
change by the user can help, and a Warning Event. Nothing else is disturbed: a good ApiToken created
alongside gets Ready, no token is made in Dynatrace for a bad object, no Secret the operator does not own
is touched, and the operator keeps running.

The objects reported on the object are checked side by side in one operator run, to keep the file fast.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.fixtures.cluster import wait_until
from tests.fixtures.operator import CONNECTION, CONNECTION_LABEL, GROUP, PLURAL, VERSION, OperatorEnv, settle

pytestmark = pytest.mark.controlplane

GOOD = {"name": "good", "scopes": ["metrics.read"], "enabled": True}
NAME_RULE = "must not contain control characters"
FORMAT_RULE = "must not contain invisible format characters"

#: (case, spec, text the API server's message must contain)
REJECTED_BY_THE_API_SERVER: list[tuple[str, dict[str, Any], str]] = [
    ("missing name", {"scopes": ["metrics.read"]}, "spec.name: Required value"),
    ("empty name", {"name": "", "scopes": ["metrics.read"]}, "spec.name"),
    ("name with surrounding whitespace", {"name": " padded ", "scopes": ["metrics.read"]}, "whitespace"),
    ("name too long", {"name": "x" * 256, "scopes": ["metrics.read"]}, "spec.name: Too long"),
    ("name with a newline inside", {"name": "two\nlines", "scopes": ["metrics.read"]}, NAME_RULE),
    ("name with a tab inside", {"name": "a\tb", "scopes": ["metrics.read"]}, NAME_RULE),
    ("name with NUL and BEL", {"name": "a\u0000b\u0007", "scopes": ["metrics.read"]}, NAME_RULE),
    # names that read differently from what they are (Trojan Source): Unicode Cf, line separators
    ("name with a right-to-left override", {"name": "prod\u202egnits", "scopes": ["a"]}, FORMAT_RULE),
    ("name with a bidi isolate", {"name": "a\u2066b\u2069", "scopes": ["a"]}, FORMAT_RULE),
    ("name with a right-to-left mark", {"name": "a\u200fb", "scopes": ["a"]}, FORMAT_RULE),
    ("name with a zero-width space", {"name": "ad\u200bmin", "scopes": ["a"]}, FORMAT_RULE),
    ("name with a byte order mark", {"name": "\ufeffname", "scopes": ["a"]}, FORMAT_RULE),
    ("name with a line separator", {"name": "a\u2028b", "scopes": ["a"]}, FORMAT_RULE),
    ("missing scopes", {"name": "n"}, "spec.scopes: Required value"),
    ("empty scopes", {"name": "n", "scopes": []}, "spec.scopes"),
    ("scopes as a string", {"name": "n", "scopes": "metrics.read"}, "spec.scopes"),
    ("duplicate scopes", {"name": "n", "scopes": ["metrics.read", "metrics.read"]}, "Duplicate value"),
    ("scope with spaces", {"name": "n", "scopes": ["metrics read"]}, "spec.scopes[0]"),
    ("scope not a string", {"name": "n", "scopes": [42]}, "spec.scopes[0]"),
    ("scope too long", {"name": "n", "scopes": ["s" * 129]}, "spec.scopes[0]: Too long"),
    ("201 scopes", {"name": "n", "scopes": [f"s{i}.read" for i in range(201)]}, "spec.scopes: Too many"),
    ("enabled not a boolean", {"name": "n", "scopes": ["a"], "enabled": "yes"}, "spec.enabled"),
    (
        "unknown deletion policy",
        {"name": "n", "scopes": ["a"], "deletionPolicy": "Keep"},
        "spec.deletionPolicy",
    ),
    ("expiry in words", {"name": "n", "scopes": ["a"], "expirationDate": "tomorrow"}, "spec.expirationDate"),
    (
        "relative expiry in the past",
        {"name": "n", "scopes": ["a"], "expirationDate": "now-1d"},
        "spec.expirationDate",
    ),
    (
        "expiry in month 13",
        {"name": "n", "scopes": ["a"], "expirationDate": "2030-13-01T00:00:00Z"},
        "spec.expirationDate",
    ),
    (
        "expiry at 24:61",
        {"name": "n", "scopes": ["a"], "expirationDate": "2030-01-01T24:61Z"},
        "spec.expirationDate",
    ),
    (
        "malformed adoptTokenId",
        {"name": "n", "scopes": ["a"], "adoptTokenId": "dt0c01.short"},
        "spec.adoptTokenId",
    ),
    (
        "negative renewBefore",
        {"name": "n", "scopes": ["a"], "rotation": {"renewBefore": "-1d"}},
        "spec.rotation.renewBefore",
    ),
    (
        "gracePeriod in words",
        {"name": "n", "scopes": ["a"], "rotation": {"gracePeriod": "1 hour"}},
        "spec.rotation.gracePeriod",
    ),
    ("secret as a string", {"name": "n", "scopes": ["a"], "secret": "my-secret"}, "spec.secret"),
    ("secret key with a slash", {"name": "n", "scopes": ["a"], "secret": {"key": "a/b"}}, "spec.secret.key"),
    (
        "secret name in capitals",
        {"name": "n", "scopes": ["a"], "secret": {"name": "Token"}},
        "spec.secret.name",
    ),
    (
        "secret label key with spaces",
        {"name": "n", "scopes": ["a"], "secret": {"labels": {"bad key!": "v"}}},
        "label keys must be",
    ),
    (
        "secret label value too long",
        {"name": "n", "scopes": ["a"], "secret": {"labels": {"team": "x" * 64}}},
        "spec.secret.labels.team: Too long",
    ),
    (
        "secret label value with a slash",
        {"name": "n", "scopes": ["a"], "secret": {"labels": {"team": "a/b"}}},
        "spec.secret.labels.team",
    ),
    (
        "secret annotation key with spaces",
        {"name": "n", "scopes": ["a"], "secret": {"annotations": {"my note": "v"}}},
        "annotation keys must be",
    ),
    (
        "connection without a name",
        {"name": "n", "scopes": ["a"], "connectionSecretRef": {}},
        "connectionSecretRef",
    ),
]

#: Unknown fields are dropped silently by default; `kubectl apply` asks for strict field validation.
REJECTED_UNDER_STRICT_FIELD_VALIDATION: list[tuple[str, dict[str, Any], str]] = [
    (
        "connection in another namespace",
        {"name": "n", "scopes": ["a"], "connectionSecretRef": {"name": "c", "namespace": "kube-system"}},
        'unknown field "spec.connectionSecretRef.namespace"',
    ),
    (
        "misspelt field",
        {"name": "n", "scopes": ["a"], "expiresAt": "now+1d"},
        'unknown field "spec.expiresAt"',
    ),
]


def _ids(table: list[tuple[str, dict[str, Any], str]]) -> list[str]:
    return [case for case, _, _ in table]


@pytest.mark.parametrize(
    ("case", "spec", "message"), REJECTED_BY_THE_API_SERVER, ids=_ids(REJECTED_BY_THE_API_SERVER)
)
def test_invalid_spec_is_rejected_by_the_api_server(
    operator_env: OperatorEnv, case: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as rejected:
        operator_env.apply("bad", spec)
    assert rejected.value.status == 422, case
    assert message in rejected.value.body
    assert operator_env.get("bad") is None


@pytest.mark.parametrize(
    ("case", "spec", "message"),
    REJECTED_UNDER_STRICT_FIELD_VALIDATION,
    ids=_ids(REJECTED_UNDER_STRICT_FIELD_VALIDATION),
)
def test_unknown_fields_are_rejected_under_strict_field_validation(
    operator_env: OperatorEnv, case: str, spec: dict[str, Any], message: str
) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ApiToken", "metadata": {"name": "bad"}, "spec": spec}
    with pytest.raises(ApiException) as rejected:
        operator_env.custom.create_namespaced_custom_object(
            GROUP, VERSION, operator_env.namespace, PLURAL, body, field_validation="Strict"
        )
    assert rejected.value.status == 400, case  # strict decoding fails before validation (422)
    assert message in json.loads(rejected.value.body)["message"]
    assert operator_env.get("bad") is None


# --- reported on the object -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OnObject:
    """A bad ApiToken the API server accepts: what its Ready condition must say."""

    name: str
    spec: dict[str, Any]
    reason: str
    #: text the condition's message must contain
    mentions: str
    #: Stalled=True (only the user can fix it); False: retried on its own (Reconciling=True)
    stalled: bool = True
    #: a Warning Event with the reason is posted today (see test_every_stalled_problem_posts_a_warning_event)
    event: bool = True


def _spec(**fields: Any) -> dict[str, Any]:
    return {"name": "bad", "scopes": ["metrics.read"], **fields}


def _via(connection: str) -> dict[str, Any]:
    return _spec(connectionSecretRef={"name": connection})


ON_OBJECT = [
    OnObject("unknown-scope", _spec(scopes=["no.such.scope"]), "RejectedByDynatrace", "no.such.scope"),
    OnObject(
        "200-unknown-scopes",
        _spec(scopes=[f"s{i}.read" for i in range(200)]),
        "RejectedByDynatrace",
        "and 195 more",
    ),
    OnObject(
        "past-expiry",
        _spec(expirationDate="2020-01-01T00:00:00Z"),
        "RejectedByDynatrace",
        "expirationDate",
    ),
    OnObject(
        "year-0001",
        _spec(expirationDate="0001-01-01T00:00:00+01:00"),
        "RejectedByDynatrace",
        "out of range",
    ),
    OnObject(
        "february-30", _spec(expirationDate="2030-02-30T00:00:00Z"), "RejectedByDynatrace", "2030-02-30"
    ),
    OnObject(
        "millis-beyond-any-date",
        _spec(expirationDate="999999999999999"),
        "RejectedByDynatrace",
        "out of range",
    ),
    OnObject(
        "relative-beyond-any-date",
        _spec(expirationDate="now+999999999y"),
        "RejectedByDynatrace",
        "out of range",
    ),
    OnObject(
        "admin-scope", _spec(scopes=["apiTokens.write"]), "PolicyDenied", "apiTokens.write", event=False
    ),
    OnObject(
        "personal-token-via-default",
        _spec(personalAccessToken=True),
        "PolicyDenied",
        "personal access tokens",
        event=False,
    ),
    OnObject("no-connection", _via("nope"), "ConnectionMissing", "nope", event=False),
    OnObject("connection-without-token", _via("c-url-only"), "ConnectionInvalid", "apiToken", event=False),
    OnObject("connection-url-in-words", _via("c-words"), "ConnectionInvalid", "'not a url'", event=False),
    OnObject("connection-url-no-scheme", _via("c-no-scheme"), "ConnectionInvalid", "no scheme", event=False),
    OnObject(
        "connection-url-nowhere",
        _via("c-closed-port"),
        "DynatraceUnavailable",
        "ConnectError",
        stalled=False,
        event=False,
    ),
    OnObject("connection-token-garbage", _via("c-garbage"), "Unauthorized", "401"),
    OnObject("connection-token-weak", _via("c-weak"), "Forbidden", "apiTokens.write"),
    OnObject("secret-name-taken", _spec(secret={"name": "unrelated"}), "SecretNameTaken", "'unrelated'"),
    OnObject(
        "secret-name-of-the-connection",
        _spec(secret={"name": CONNECTION}),
        "SecretNameTaken",
        f"'{CONNECTION}'",
    ),
    OnObject(
        "adopt-unknown-id",
        _spec(adoptTokenId="dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX"),
        "AdoptedTokenNotFound",
        "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX",
    ),
    OnObject(
        "renewal-longer-than-lifetime",
        _spec(expirationDate="now+7d", rotation={"renewBefore": "30d"}),
        "InvalidSpec",
        "renewBefore",
        event=False,
    ),
]

#: Inputs that look odd but are fine: they get Ready like any other.
ACCEPTED: dict[str, dict[str, Any]] = {
    "good": GOOD,
    "unicode-name": {"name": "🔑 Schlüssel 鍵 ✓", "scopes": ["metrics.read"]},
    "year-9999": {"name": "far", "scopes": ["metrics.read"], "expirationDate": "9999-12-31T23:59:59Z"},
    "connection-with-whitespace": {
        "name": "ws",
        "scopes": ["metrics.read"],
        "connectionSecretRef": {"name": "c-whitespace"},
    },
}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _make_connections(env: OperatorEnv) -> str:
    """The connection Secrets the cases name, and an unrelated Secret; returns the weak token's id."""
    url, admin = env.emulator.base_url, env.emulator.admin_token.reveal()
    weak = env.emulator.create_token("weak", ["metrics.read"], owner="weak@example.com")
    secrets = {
        "c-url-only": {"apiUrl": url},
        "c-words": {"apiUrl": "not a url", "apiToken": admin},
        "c-no-scheme": {"apiUrl": "abc12345.live.dynatrace.com", "apiToken": admin},
        "c-closed-port": {"apiUrl": f"http://127.0.0.1:{_closed_port()}", "apiToken": admin},
        "c-garbage": {"apiUrl": url, "apiToken": "hello"},
        "c-weak": {"apiUrl": url, "apiToken": weak.reveal()},
        "c-whitespace": {"apiUrl": f"  {url}/ \n", "apiToken": f"\n {admin}\t\n"},
        "unrelated": {"password": "hunter2"},
    }
    for name, data in secrets.items():
        labels = {} if name == "unrelated" else {CONNECTION_LABEL: "true"}
        env.core.create_namespaced_secret(
            env.namespace, {"metadata": {"name": name, "labels": labels}, "stringData": data}
        )
    return weak.token_id


def _secrets(env: OperatorEnv) -> dict[str, Any]:
    return {s.metadata.name: s for s in env.core.list_namespaced_secret(env.namespace).items}


def test_bad_objects_are_reported_on_the_object_and_disturb_nothing(operator_env: OperatorEnv) -> None:
    env = operator_env
    weak_id = _make_connections(env)
    before = {name: (s.metadata.resource_version, s.data) for name, s in _secrets(env).items()}
    env.start()
    for case in ON_OBJECT:
        env.apply(case.name, case.spec)
    for name, spec in ACCEPTED.items():
        env.apply(name, spec)

    ids = {name: env.wait_ready(name, timeout=60)["status"]["id"] for name in ACCEPTED}
    for case in ON_OBJECT:
        ready = env.wait_condition(case.name, "Ready", "False", case.reason, timeout=60)
        assert case.mentions in ready["message"], (case.name, ready)
        stalled = env.condition(case.name, "Stalled")
        reconciling = env.condition(case.name, "Reconciling")
        assert stalled is not None and reconciling is not None
        assert (stalled["status"], reconciling["status"]) == (
            ("True", "False") if case.stalled else ("False", "True")
        ), case.name
        if case.stalled:
            assert stalled["reason"] == case.reason and stalled["message"] == ready["message"]
        if case.event:
            events = env.events(case.name)
            assert any(e.type == "Warning" and e.reason == case.reason for e in events), (case.name, events)
        assert "id" not in (env.get(case.name) or {}).get("status", {}), case.name

    # The odd-but-fine inputs came through as written.
    tokens = {t.id: t for t in env.live_tokens() if t.id != weak_id}
    assert tokens[ids["unicode-name"]].name == ACCEPTED["unicode-name"]["name"]
    assert tokens[ids["year-9999"]].expiration_date.year == 9999
    assert env.get("year-9999")["status"]["expirationDate"].startswith("9999-12-31T23:59:59")

    # Nothing else disturbed: only the good objects have tokens, none was made and thrown away, the
    # Secrets the operator does not own are untouched, and the operator is still running.
    settle(1.0)
    assert set(tokens) == set(ids.values())
    assert env.calls("delete") == 0
    after = _secrets(env)
    for name, (version, data) in before.items():
        assert (after[name].metadata.resource_version, after[name].data) == (version, data), name
    assert set(after) == set(before) | set(ACCEPTED)
    for name, token_id in ids.items():
        assert env.secret_value(name).token_id == token_id
    assert env.process is not None and env.process.poll() is None
    assert "Traceback" not in env.log_text()


def test_every_stalled_problem_posts_a_warning_event(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.core.create_namespaced_secret(
        env.namespace,
        {
            "metadata": {"name": "c-url-only", "labels": {CONNECTION_LABEL: "true"}},
            "stringData": {"apiUrl": env.emulator.base_url},
        },
    )
    env.start()
    wanted = ("admin-scope", "no-connection", "connection-without-token", "renewal-longer-than-lifetime")
    cases = [case for case in ON_OBJECT if case.name in wanted]
    for case in cases:
        env.apply(case.name, case.spec)
    for case in cases:
        env.wait_condition(case.name, "Stalled", "True", case.reason)
    settle(1.0)
    missing = [
        (case.name, case.reason)
        for case in cases
        if not any(e.type == "Warning" and e.reason == case.reason for e in env.events(case.name))
    ]
    assert missing == []


def test_two_apitokens_naming_one_secret_never_share_it(operator_env: OperatorEnv) -> None:
    """Both see the name free and both create a token; the one whose Secret write loses must not take the
    winner's Secret over, and must not leave its token behind."""
    env = operator_env
    env.start()
    for name in ("first-claim", "second-claim"):
        env.apply(name, {"name": name, "scopes": ["metrics.read"], "secret": {"name": "shared"}})

    def settled() -> tuple[str, str] | None:
        first, second = env.condition("first-claim"), env.condition("second-claim")
        if first is None or second is None:
            return None
        outcome = {first["reason"]: "first-claim", second["reason"]: "second-claim"}
        if set(outcome) == {"Ready", "SecretNameTaken"}:
            return outcome["Ready"], outcome["SecretNameTaken"]
        return None

    winner, loser = wait_until(settled, timeout=60, what="one claim Ready, the other SecretNameTaken")
    winner_id = env.get(winner)["status"]["id"]
    secret = env.core.read_namespaced_secret("shared", env.namespace)
    assert [(r.name, r.controller) for r in secret.metadata.owner_references] == [(winner, True)]
    assert env.secret_value("shared").token_id == winner_id
    assert "'shared'" in env.condition(loser, "Stalled")["message"]
    assert any(e.type == "Warning" and e.reason == "SecretNameTaken" for e in env.events(loser))
    assert [t.id for t in env.live_tokens()] == [winner_id]  # the loser's token, if made, is deleted
    assert "id" not in env.get(loser)["status"]
    assert "Traceback" not in env.log_text()


def test_a_fixed_spec_recovers_from_stalled(operator_env: OperatorEnv) -> None:
    operator_env.start()
    operator_env.apply("fixme", {"name": "f", "scopes": ["no.such.scope"], "enabled": True})
    operator_env.wait_condition("fixme", "Stalled", "True", "RejectedByDynatrace")
    operator_env.patch_spec("fixme", {"scopes": ["metrics.read"]})
    body = operator_env.wait_ready("fixme")
    assert operator_env.condition("fixme", "Stalled")["status"] == "False"
    assert [t.id for t in operator_env.live_tokens()] == [body["status"]["id"]]


def test_deletion_without_credentials_says_how_to_release(operator_env: OperatorEnv) -> None:
    operator_env.start()
    operator_env.apply("stuck", GOOD)
    token_id = operator_env.wait_ready("stuck")["status"]["id"]
    operator_env.core.delete_namespaced_secret(CONNECTION, operator_env.namespace)
    operator_env.delete("stuck")
    blocked = operator_env.wait_condition("stuck", "Stalled", "True", "DeleteBlocked")
    assert "dynatrace.apitokens.io/release=true" in blocked["message"]
    operator_env.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        operator_env.namespace,
        PLURAL,
        "stuck",
        {"metadata": {"annotations": {"dynatrace.apitokens.io/release": "true"}}},
    )
    operator_env.wait_gone("stuck")
    assert operator_env.emulator.emulator.record_of(token_id) is not None  # released, not deleted


def test_a_rotated_connection_token_is_picked_up_without_a_restart(operator_env: OperatorEnv) -> None:
    operator_env.start()
    operator_env.apply("first", GOOD)
    operator_env.wait_ready("first")
    new_admin = operator_env.emulator.create_token(
        "second admin", ["apiTokens.read", "apiTokens.write"], owner="admin@example.com"
    )
    operator_env.core.patch_namespaced_secret(
        CONNECTION, operator_env.namespace, {"stringData": {"apiToken": new_admin.reveal()}}
    )
    old_admin = operator_env.emulator.emulator.record_of(operator_env.emulator.admin_token)
    operator_env.emulator.call(
        operator_env.emulator.store.update, old_admin, now=operator_env.emulator.clock(), enabled=False
    )  # the old one is revoked
    operator_env.apply("second", {**GOOD, "name": "second"})
    operator_env.wait_ready("second")
    assert "Traceback" not in operator_env.log_text()
