"""The manifests themselves, without a server: names, refusals, fields as read, YAML, the CRD's schema."""

from __future__ import annotations

import secrets
import string
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.dynatrace.secrets import TOKEN_ID_PATTERN
from apitoken_operator.export import manifests
from apitoken_operator.export.manifests import (
    Unexportable,
    build_document,
    build_manifests,
    check_token,
    metadata_name,
    render_stream,
    slug,
)
from tests.export.helpers import DNS_LABEL, assert_valid_manifest, crd_schema

SOURCE = "https://abc12345.live.dynatrace.com/api/v2"
_PUBLIC = string.ascii_uppercase + string.digits


def new_id() -> str:
    return "dt0c01." + "".join(secrets.choice(_PUBLIC) for _ in range(24))


def token(**fields: Any) -> ApiToken:
    values: dict[str, Any] = {
        "id": new_id(),
        "name": "ci reader",
        "enabled": True,
        "personal_access_token": False,
        "owner": "admin@example.com",
        "creation_date": "2025-01-02T03:04:05.678Z",
        "scopes": ["metrics.read", "entities.read"],
    }
    values.update(fields)
    return ApiToken(**values)


ids = st.text(alphabet=_PUBLIC, min_size=24, max_size=24).map(lambda public: f"dt0c01.{public}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CI Reader", "ci-reader"),
        ("Überwachung", "uberwachung"),
        ("\ufb01le \u2460 \uff37\uff49\uff44\uff45", "file-1-wide"),  # ligature, circled, full width
        ("监控令牌", ""),
        ("--a__b..c--", "a-b-c"),
        ("team/prod: metrics (read)", "team-prod-metrics-read"),
    ],
)
def test_slug(text: str, expected: str) -> None:
    assert slug(text) == expected


def test_slug_is_cut_without_a_trailing_hyphen() -> None:
    assert slug("a" * 10 + " " + "b" * 10, limit=11) == "a" * 10


def test_metadata_name_is_slug_and_id_digest() -> None:
    token_id = new_id()
    name = metadata_name("CI Reader", token_id)
    assert name.startswith("ci-reader-")
    assert len(name) == len("ci-reader-") + manifests.SUFFIX_LENGTH
    assert metadata_name("CI Reader", token_id) == name  # stable
    assert metadata_name("监控", token_id).startswith("token-")


@settings(max_examples=300, deadline=None)
@given(name=st.text(min_size=1, max_size=300), token_id=ids)
def test_metadata_name_is_always_a_dns_label(name: str, token_id: str) -> None:
    result = metadata_name(name, token_id)
    assert DNS_LABEL.match(result), result
    assert len(result) <= 63


@settings(max_examples=100, deadline=None)
@given(name=st.text(min_size=1, max_size=300), first=ids, second=ids)
def test_same_name_different_ids_give_different_metadata_names(name: str, first: str, second: str) -> None:
    if first != second:
        assert metadata_name(name, first) != metadata_name(name, second)


def test_colliding_digests_get_longer_suffixes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = manifests.id_suffix
    monkeypatch.setattr(
        manifests,
        "id_suffix",
        lambda token_id, length=8: "a" * length if length == 8 else real(token_id, length),
    )
    tokens = [token(name="same"), token(name="same"), token(name="other")]
    result = build_manifests(tokens, source=SOURCE)
    names = [m.name for m in result]
    assert len(set(names)) == 3
    assert "other-aaaaaaaa" in names
    assert all(DNS_LABEL.match(n) and len(n) <= 63 for n in names)
    assert sorted(n for n in names if n.startswith("same-")) == sorted(
        f"same-{real(t.id or '', 16)}" for t in tokens[:2]
    )


def test_document_carries_every_compared_field_as_read() -> None:
    read = token(
        name="Überwachung 监控",
        scopes=["metrics.read", "entities.read", "metrics.read"],
        enabled=False,
        personal_access_token=True,
        expiration_date="2031-02-03T04:05:06.789Z",
    )
    document = build_document(
        read, name="x-abc", namespace="team-a", deletion_policy="Delete", connection_secret="dt-conn"
    )
    assert document == {
        "apiVersion": "dynatrace.apitokens.io/v1alpha1",
        "kind": "ApiToken",
        "metadata": {"name": "x-abc", "namespace": "team-a"},
        "spec": {
            "name": "Überwachung 监控",
            "scopes": ["entities.read", "metrics.read"],
            "enabled": False,
            "personalAccessToken": True,
            "expirationDate": "2031-02-03T04:05:06.789Z",
            "adoptTokenId": read.id,
            "deletionPolicy": "Delete",
            "secret": {"name": "x-abc"},
            "connectionSecretRef": {"name": "dt-conn"},
        },
    }
    assert_valid_manifest(document)


def test_defaults_orphan_no_namespace_no_expiry() -> None:
    read = token(personal_access_token=None)
    document = build_document(read, name="ci-reader-abc")
    assert "namespace" not in document["metadata"]
    assert "expirationDate" not in document["spec"]
    assert "connectionSecretRef" not in document["spec"]
    assert document["spec"]["deletionPolicy"] == "Orphan"
    assert document["spec"]["personalAccessToken"] is False  # Dynatrace may leave out a false
    assert_valid_manifest(document)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"id": None}, "id"),
        ({"id": "not-an-id"}, "id"),
        ({"name": ""}, "no name"),
        ({"name": None}, "no name"),
        ({"name": " padded"}, "whitespace"),
        ({"name": "padded\n"}, "whitespace"),
        ({"name": "x" * 256}, "longer than 255"),
        ({"name": "bad \ud800 text"}, "Unicode"),
        ({"name": "ci [creating " + "0" * 32 + "]"}, "being created by an apitoken-operator"),
        ({"enabled": None}, "enabled"),
        ({"scopes": None}, "scopes"),
        ({"scopes": []}, "no scopes"),
        ({"scopes": ["storage:buckets:read"]}, "storage:buckets:read"),
        ({"scopes": [f"s{i}.read" for i in range(201)]}, "more than 200"),
        ({"expiration_date": "now+30d"}, "absolute"),
        ({"expiration_date": "next tuesday"}, "cannot be read"),
    ],
)
def test_tokens_an_apitoken_cannot_declare_exactly_are_refused(fields: dict[str, Any], why: str) -> None:
    with pytest.raises(Unexportable, match=why.replace("+", r"\+")):
        check_token(token(**fields))


def test_legacy_scopes_and_long_names_are_exported() -> None:
    read = token(name="n" * 255, scopes=["DataExport", "ReadConfig", "apiTokens.read"])
    check_token(read)
    (manifest,) = build_manifests([read], source=SOURCE)
    assert_valid_manifest(manifest.document)


#: Any text the CRD accepts as spec.name (hypothesis' text never holds lone surrogates).
_exportable_names = st.text(min_size=1, max_size=255).filter(lambda text: text.strip() == text)


@settings(max_examples=300, deadline=None)
@given(name=_exportable_names, owner=st.text(max_size=40))
def test_yaml_gives_back_exactly_what_was_read(name: str, owner: str) -> None:
    read = token(name=name, owner=owner, expiration_date="2031-02-03T04:05:06.789Z")
    check_token(read)
    (manifest,) = build_manifests([read], source=SOURCE)
    text = manifest.render()
    assert yaml.safe_load(text) == manifest.document
    assert yaml.safe_load(text)["spec"]["name"] == name
    header_lines = text.splitlines()[:5]
    assert all(line.startswith("# ") and line.isascii() for line in header_lines)


def test_header_says_where_from_and_that_the_secret_is_missing() -> None:
    read = token(owner="evil\n---\nkind: Secret\u2028x: y")
    (manifest,) = build_manifests([read], source=SOURCE)
    text = manifest.render()
    comment = "".join(line for line in text.splitlines() if line.startswith("#"))
    assert SOURCE in comment
    assert str(read.id) in comment
    assert "secret is not included" in comment
    assert "dynatrace.apitokens.io/rotate" in comment
    assert list(yaml.safe_load_all(text)) == [manifest.document]  # the owner could not break out


def test_stream_is_sorted_and_parses_back() -> None:
    tokens = [token(name=name) for name in ("zeta", "alpha", "alpha", "Mid")]
    result = build_manifests(tokens, source=SOURCE, namespace="ns")
    documents = list(yaml.safe_load_all(render_stream(result)))
    assert [d["metadata"]["name"] for d in documents] == sorted(m.name for m in result)
    assert [d["spec"]["name"] for d in documents] == ["alpha", "alpha", "Mid", "zeta"]
    assert len({d["metadata"]["name"] for d in documents}) == 4
    for document in documents:
        assert_valid_manifest(document)


def test_empty_export_is_an_empty_stream() -> None:
    assert render_stream([]) == ""
    assert build_manifests([], source=SOURCE) == []


def test_the_checks_use_the_crds_limits() -> None:
    spec = crd_schema()["properties"]["spec"]["properties"]
    assert spec["name"]["maxLength"] == manifests._NAME_MAX
    assert spec["scopes"]["maxItems"] == manifests._SCOPES_MAX
    assert spec["scopes"]["items"]["maxLength"] == manifests._SCOPE_MAX
    assert spec["scopes"]["items"]["pattern"] == manifests._SCOPE.pattern
    assert spec["expirationDate"]["maxLength"] == manifests._EXPIRATION_MAX
    assert spec["adoptTokenId"]["pattern"] == f"^{TOKEN_ID_PATTERN.pattern}$"
    assert set(spec["deletionPolicy"]["enum"]) == set(manifests.DELETION_POLICIES)
