"""Desired.from_spec: the spec with its defaults, or a SpecError the user can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apitoken_operator.reconcile.model import DEFAULT_GRACE_PERIOD, Desired, SpecError, renewal_problem

MINIMAL: dict[str, Any] = {"name": "web ingest", "scopes": ["metrics.ingest"]}


def test_defaults() -> None:
    want = Desired.from_spec(MINIMAL, object_name="web")
    assert want.name == "web ingest"
    assert want.scopes == frozenset({"metrics.ingest"})
    assert want.enabled is False
    assert want.personal_access_token is False
    assert want.expiration_date is None
    assert want.deletion_policy == "Delete"
    assert want.secret_name == "web"
    assert want.secret_key == "token"
    assert dict(want.secret_labels) == {}
    assert dict(want.secret_annotations) == {}
    assert want.connection_secret is None


def test_every_field_is_read() -> None:
    spec = {
        **MINIMAL,
        "scopes": ["metrics.ingest", "logs.ingest"],
        "enabled": True,
        "personalAccessToken": True,
        "expirationDate": "now+30d",
        "deletionPolicy": "Orphan",
        "secret": {"name": "dt", "key": "apiToken", "labels": {"a": "1"}, "annotations": {"b": "2"}},
        "connectionSecretRef": {"name": "conn"},
    }
    want = Desired.from_spec(spec, object_name="web")
    assert want.scopes == frozenset({"metrics.ingest", "logs.ingest"})
    assert (want.enabled, want.personal_access_token) == (True, True)
    assert want.expiration_date == "now+30d"
    assert want.deletion_policy == "Orphan"
    assert (want.secret_name, want.secret_key) == ("dt", "apiToken")
    assert (dict(want.secret_labels), dict(want.secret_annotations)) == ({"a": "1"}, {"b": "2"})
    assert want.connection_secret == "conn"


@pytest.mark.parametrize(
    ("extra", "field", "value"),
    [
        ({"secret": {}}, "secret_name", "web"),
        ({"secret": {"name": ""}}, "secret_name", "web"),
        ({"secret": {"key": ""}}, "secret_key", "token"),
        ({"secret": None}, "secret_key", "token"),
        ({"expirationDate": ""}, "expiration_date", None),
        ({"deletionPolicy": None}, "deletion_policy", "Delete"),
        ({"connectionSecretRef": {"name": ""}}, "connection_secret", None),
        ({"enabled": None}, "enabled", False),
    ],
)
def test_empty_values_take_the_default(extra: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(Desired.from_spec({**MINIMAL, **extra}, object_name="web"), field) == value


def test_the_desired_value_is_detached_from_the_spec() -> None:
    labels = {"a": "1"}
    want = Desired.from_spec({**MINIMAL, "secret": {"labels": labels}}, object_name="web")
    labels["a"] = "changed"
    assert dict(want.secret_labels) == {"a": "1"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x"}, "spec.scopes must be a non-empty list"),
        ({"name": "x", "scopes": []}, "spec.scopes must be a non-empty list"),
        ({"name": "x", "scopes": "metrics.ingest"}, "spec.scopes must be a non-empty list"),
        ({"name": "x", "scopes": ["a", ""]}, "spec.scopes must be a non-empty list"),
        ({"name": "x", "scopes": ["a", 1]}, "spec.scopes must be a non-empty list"),
        ({"name": "x", "scopes": ["a", "b", "a"]}, "spec.scopes must not contain duplicates"),
        ({"scopes": ["a"]}, "spec.name must be a non-empty string"),
        ({"name": "", "scopes": ["a"]}, "spec.name must be a non-empty string"),
        ({"name": "   ", "scopes": ["a"]}, "spec.name must be a non-empty string"),
        ({"name": 7, "scopes": ["a"]}, "spec.name must be a non-empty string"),
        (
            {"name": "web [creating " + "0" * 32 + "]", "scopes": ["a"]},
            "spec.name must not end with '",
        ),
        (
            {**MINIMAL, "deletionPolicy": "Retain"},
            "spec.deletionPolicy must be Delete or Orphan, not 'Retain'",
        ),
        ({**MINIMAL, "deletionPolicy": "delete"}, "spec.deletionPolicy must be Delete or Orphan"),
    ],
)
def test_spec_errors(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        Desired.from_spec(spec, object_name="web")


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_rotation_and_adoption_defaults() -> None:
    want = Desired.from_spec(MINIMAL, object_name="web")
    assert want.adopt_token_id is None
    assert want.renew_before is None
    assert want.grace_period == timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("36h", timedelta(hours=36)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("0s", timedelta(0)),
    ],
)
def test_rotation_durations(text: str, expected: timedelta) -> None:
    spec = {
        **MINIMAL,
        "rotation": {"renewBefore": text, "gracePeriod": text},
        "adoptTokenId": "dt0c01." + "A" * 24,
    }
    want = Desired.from_spec(spec, object_name="web")
    assert want.renew_before == expected
    assert want.grace_period == expected
    assert want.adopt_token_id == "dt0c01." + "A" * 24


@pytest.mark.parametrize("text", ["7", "d", "7 d", "1.5h", "7D", "-1d", "1y", "1234567s"])
@pytest.mark.parametrize("field", ["renewBefore", "gracePeriod"])
def test_bad_rotation_durations(field: str, text: str) -> None:
    with pytest.raises(SpecError, match=f"^spec\\.rotation\\.{field} must be a number and a unit"):
        Desired.from_spec({**MINIMAL, "rotation": {field: text}}, object_name="web")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"scopes": ["metrics read"]}, "spec.scopes[0]: string should match pattern"),
        ({"scopes": [f"s{i}" for i in range(201)]}, "spec.scopes: list should have at most 200 items"),
        ({"name": "x" * 256}, "spec.name: string should have at most 255 characters"),
        ({"secret": {"name": "Token"}}, "spec.secret.name: string should match pattern"),
        (
            {"secret": {"labels": {"team": "x" * 64}}},
            "spec.secret.labels.team: string should have at most 63",
        ),
        ({"adoptTokenId": "dt0c01.short"}, "spec.adoptTokenId: string should match pattern"),
        ({"expirationDate": "tomorrow"}, "spec.expirationDate: string should match pattern"),
        ({"connectionSecretRef": {"name": "a_b"}}, "spec.connectionSecretRef.name: string should match"),
        ({"enabled": [True]}, "spec.enabled: input should be a valid boolean"),
    ],
)
def test_what_the_crd_refuses_is_refused_here_naming_the_field(extra: dict[str, Any], message: str) -> None:
    """Objects stored before a rule existed reach the operator: the model's patterns are the CRD's."""
    with pytest.raises(SpecError) as error:
        Desired.from_spec({**MINIMAL, **extra}, object_name="web")
    assert str(error.value).startswith(message), str(error.value)


def test_empty_values_inside_labels_are_values() -> None:
    want = Desired.from_spec(
        {**MINIMAL, "secret": {"labels": {"a": ""}, "annotations": {"b": ""}}}, object_name="w"
    )
    assert (dict(want.secret_labels), dict(want.secret_annotations)) == ({"a": ""}, {"b": ""})


@pytest.mark.parametrize(
    ("expiration", "renew_before", "refused"),
    [
        ("now+7d", "30d", True),
        ("now+7d", "7d", True),
        ("now+7d", "6d", False),
        ("now+1M", "29d", True),  # a month is read at its shortest (February): 28 days
        ("now+1M", "27d", False),
        ("now+1y", "52w", False),
        ("now+1y", "53w", True),
        ("2030-01-01T00:00:00Z", "999999w", False),  # an absolute expiry renews into the same date
        (None, "7d", False),
    ],
)
def test_renew_before_must_be_shorter_than_the_lifetime(
    expiration: str | None, renew_before: str, refused: bool
) -> None:
    spec = {**MINIMAL, "expirationDate": expiration, "rotation": {"renewBefore": renew_before}}
    if not refused:
        assert Desired.from_spec(spec, object_name="web").renew_before is not None
        return
    with pytest.raises(SpecError) as error:
        Desired.from_spec(spec, object_name="web")
    assert str(error.value) == (
        f"spec.rotation.renewBefore ({renew_before}) must be shorter than the token's lifetime "
        f"({expiration}), or every new token would be due for renewal at once"
    )


def test_renewal_problem_reads_a_rounded_expiry_at_the_time_given() -> None:
    late, early = datetime(2030, 6, 1, 23, 0, tzinfo=UTC), datetime(2030, 6, 1, 1, 0, tzinfo=UTC)
    assert renewal_problem(timedelta(hours=2), "now+1d/d", now=late) is not None
    assert renewal_problem(timedelta(hours=2), "now+1d/d", now=early) is None
    assert "(1w)" in (renewal_problem(timedelta(days=7), "now+1d", now=early) or "")


def test_a_missing_grace_period_in_a_rotation_is_the_default() -> None:
    want = Desired.from_spec({**MINIMAL, "rotation": {"renewBefore": "1h"}}, object_name="web")
    assert want.grace_period == DEFAULT_GRACE_PERIOD == timedelta(hours=1)
