"""Desired.from_spec: the spec with its defaults, or a SpecError the user can act on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from apitoken_operator.reconcile.model import Desired, SpecError

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
