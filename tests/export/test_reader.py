"""Reading an emulated environment: the fields as Dynatrace reports them, selectors, paging, what is skipped.

Each manifest is also checked against what the operator compares (its plan's checks), so applying the
export adopts every token without a create and without a PUT.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apitoken_emulator import Emulator
from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.dynatrace.selector import Selector
from apitoken_operator.export.reader import ExportOptions, ExportResult, read_tokens, select
from apitoken_operator.reconcile.model import Desired, Input, Recorded, SecretFacts
from apitoken_operator.reconcile.plan import immutable_fields_match, token_matches
from apitoken_operator.settings import DynatraceSettings, RetrySettings
from tests.export.helpers import assert_valid_manifest

OTHER = "other@example.com"


def client_for(emulator: Emulator, token: TokenSecret | None = None) -> DynatraceClient:
    return DynatraceClient(
        emulator.base_url,
        token=token or emulator.admin_token,
        settings=DynatraceSettings(retry=RetrySettings(max_attempts=2, deadline=20.0)),
    )


async def export(
    emulator: Emulator, *, page_size: int = 1000, progress: list[int] | None = None, **options: Any
) -> ExportResult:
    selector = options.get("selector", Selector())
    async with client_for(emulator) as client:
        tokens = await read_tokens(
            client,
            selector=selector,
            page_size=page_size,
            progress=progress.append if progress is not None else None,
        )
        return select(
            tokens,
            options=ExportOptions(**options),
            calling_token_id=client.token_id,
            now=emulator.clock(),
            source=client.api_root,
        )


def by_token_id(result: ExportResult) -> dict[str, dict[str, Any]]:
    return {m.token_id: m.document for m in result.manifests}


async def test_every_shape_is_exported_exactly_as_dynatrace_reports_it(emulator: Emulator) -> None:
    now = emulator.clock()
    made = {
        "dup1": emulator.create_token("ci reader", ["metrics.read", "entities.read"]),
        "dup2": emulator.create_token("ci reader", ["metrics.read", "entities.read"]),
        "unicode": emulator.create_token("Überwachung 监控 ✓", ["metrics.read"]),
        "cjk": emulator.create_token("监控令牌", ["logs.read"]),
        "disabled": emulator.create_token("off", ["metrics.read"], enabled=False),
        "pat": emulator.create_token("mine", ["settings.read"], owner=OTHER, personal_access_token=True),
        "expiring": emulator.create_token(
            "soon", ["metrics.ingest"], expiration_date=now + timedelta(days=30)
        ),
        "legacy": emulator.create_token("old", ["DataExport", "ReadConfig"]),
    }
    result = await export(emulator, namespace="team-a")

    documents = by_token_id(result)
    assert set(documents) == {secret.token_id for secret in made.values()}
    assert result.calling_token == [emulator.admin_token.token_id]
    assert result.expired == [] and result.unexportable == [] and result.unmatched == []
    names = [d["metadata"]["name"] for d in documents.values()]
    assert len(set(names)) == len(names)
    for document in documents.values():
        assert_valid_manifest(document)
        assert document["metadata"]["namespace"] == "team-a"
        assert document["spec"]["deletionPolicy"] == "Orphan"
        assert document["spec"]["secret"] == {"name": document["metadata"]["name"]}

    dup1, dup2 = documents[made["dup1"].token_id], documents[made["dup2"].token_id]
    assert dup1["spec"]["name"] == dup2["spec"]["name"] == "ci reader"
    assert dup1["metadata"]["name"] != dup2["metadata"]["name"]
    assert dup1["metadata"]["name"].startswith("ci-reader-")
    assert documents[made["unicode"].token_id]["metadata"]["name"].startswith("uberwachung-")
    assert documents[made["cjk"].token_id]["metadata"]["name"].startswith("token-")
    assert documents[made["disabled"].token_id]["spec"]["enabled"] is False
    assert documents[made["pat"].token_id]["spec"]["personalAccessToken"] is True
    assert "expirationDate" in documents[made["expiring"].token_id]["spec"]
    assert "expirationDate" not in documents[made["dup1"].token_id]["spec"]

    # Exactly as a GET of each token reports it.
    async with client_for(emulator) as client:
        for token_id, document in documents.items():
            read = await client.get(token_id)
            spec = document["spec"]
            assert spec["adoptTokenId"] == read.id
            assert spec["name"] == read.name
            assert spec["scopes"] == sorted(read.scopes or [])
            assert spec["enabled"] == read.enabled
            assert spec["personalAccessToken"] == bool(read.personal_access_token)
            assert spec.get("expirationDate") == read.expiration_date
            assert_operator_sees_no_difference(document, read, emulator)


def assert_operator_sees_no_difference(document: dict[str, Any], read: ApiToken, emulator: Emulator) -> None:
    """The operator's own checks, on an adopted object: neither a replacement nor a PUT."""
    name = document["metadata"]["name"]
    desired = Desired.from_spec(document["spec"], object_name=name)
    state = Input(
        desired=desired,
        recorded=Recorded(token_id=read.id, secret_name=name),
        secret=SecretFacts(name=name),
        now=emulator.clock(),
        token=read,
    )
    assert immutable_fields_match(state) is None
    assert token_matches(state) is None


async def test_expired_tokens_are_skipped_unless_asked(emulator: Emulator) -> None:
    now = emulator.clock()
    expired = emulator.create_token("gone", ["metrics.read"], expiration_date=now - timedelta(days=1))
    live = emulator.create_token("live", ["metrics.read"], expiration_date=now + timedelta(days=1))

    skipped = await export(emulator)
    assert set(by_token_id(skipped)) == {live.token_id}
    assert skipped.expired == [expired.token_id]

    included = await export(emulator, include_expired=True)
    assert set(by_token_id(included)) == {live.token_id, expired.token_id}
    assert included.expired == []


async def test_the_calling_token_is_exported_only_when_asked(emulator: Emulator) -> None:
    result = await export(emulator, include_self=True)
    (document,) = result.manifests
    assert document.token_id == emulator.admin_token.token_id
    assert result.calling_token == []


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (Selector(owner=OTHER), {"pat", "other-api"}),
        (Selector(personal_access_token=True), {"pat"}),
        (Selector(personal_access_token=False), {"metrics", "logs", "other-api"}),
        (Selector(scopes=("logs.read",)), {"logs"}),
        (Selector(scopes=("logs.read", "settings.read")), {"logs", "pat"}),  # any of the scopes
        (Selector(owner=OTHER, personal_access_token=False), {"other-api"}),
    ],
)
async def test_selectors_filter(emulator: Emulator, selector: Selector, expected: set[str]) -> None:
    made = {
        "metrics": emulator.create_token("metrics", ["metrics.read"]),
        "logs": emulator.create_token("logs", ["logs.read", "metrics.read"]),
        "pat": emulator.create_token("pat", ["settings.read"], owner=OTHER, personal_access_token=True),
        "other-api": emulator.create_token("other-api", ["entities.read"], owner=OTHER),
    }
    result = await export(emulator, selector=selector)
    wanted = {made[key].token_id for key in expected}
    assert set(by_token_id(result)) == wanted
    assert result.unmatched == []


async def test_250_tokens_in_pages_of_100(emulator: Emulator) -> None:
    for number in range(250):
        emulator.create_token(f"bulk {number:03d}", ["metrics.read"])
    emulator.counters.reset()
    progress: list[int] = []

    result = await export(emulator, page_size=100, progress=progress)

    assert result.read == 251  # and the admin token
    assert len(result.manifests) == 250
    assert len({m.name for m in result.manifests}) == 250
    assert emulator.counters.count("list") == 3
    assert progress == [100, 200]


def test_a_token_the_server_should_not_have_listed_is_left_out() -> None:
    listed = [
        ApiToken(id="dt0c01." + "A" * 24, name="a", enabled=True, owner="x", scopes=["metrics.read"]),
        ApiToken(id="dt0c01." + "B" * 24, name="b", enabled=True, owner="y", scopes=["metrics.read"]),
    ]
    result = select(
        listed,
        options=ExportOptions(selector=Selector(owner="x")),
        calling_token_id="dt0c01." + "C" * 24,
        now=datetime.now(UTC),
        source="https://abc.live.dynatrace.com/api/v2",
    )
    assert [m.token_id for m in result.manifests] == ["dt0c01." + "A" * 24]
    assert result.unmatched == ["dt0c01." + "B" * 24]
