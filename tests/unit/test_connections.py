"""Connections: which path an object names decides the policy; what a namespace connection may reach.

Namespace users write namespace connection Secrets, so these are held to more than the default one:
an opt-in label, https, no internal addresses (literal or resolved), no raw error bodies quoted back.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any, cast

import httpx
import pytest

from apitoken_operator.controller import egress
from apitoken_operator.controller.connections import (
    CONNECTION_LABEL,
    ConnectionProblem,
    Connections,
)
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.kube.api import Kube
from apitoken_operator.reconcile.reasons import Reason
from apitoken_operator.settings import (
    ConnectionSettings,
    DynatraceSettings,
    OperatorSettings,
    RetrySettings,
)

TOKEN = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX." + "A" * 64
OTHER_TOKEN = "dt0c01.ZYXWVUTSRQPONMLKJIHGFEDC." + "B" * 64
PUBLIC_URL = "https://8.8.8.8"  # a literal global address: no DNS needed


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(url: str, token: str = TOKEN, *, labelled: bool = True, label: str = "true") -> dict[str, Any]:
    labels = {CONNECTION_LABEL: label} if labelled else {}
    return {"metadata": {"labels": labels}, "data": {"apiUrl": _b64(url), "apiToken": _b64(token)}}


class FakeKube:
    def __init__(self, secrets: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.secrets = secrets

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secrets.get((namespace, name))


def connections(
    secrets: dict[tuple[str, str], dict[str, Any]],
    *,
    default: str | None = "ops/dt",
    insecure_http: bool = False,
    cidrs: tuple[str, ...] = (),
) -> Connections:
    settings = OperatorSettings(
        default_connection=default,
        connections=ConnectionSettings(allow_insecure_http=insecure_http, allowed_cidrs=cidrs),
    )
    return Connections(cast(Kube, FakeKube(secrets)), settings)


async def refusal(made: Connections, namespace: str, name: str | None) -> ConnectionProblem:
    with pytest.raises(ConnectionProblem) as refused:
        await made.resolve(namespace=namespace, secret_name=name)
    return refused.value


# --- the policy follows the path the object names --------------------------------------------------------


@pytest.mark.parametrize("default_first", [True, False], ids=["default-first", "named-first"])
async def test_is_default_follows_the_named_path_not_the_cache(default_first: bool) -> None:
    """The same URL and token as the default, in a namespace Secret, is a namespace connection (and the
    default stays the default), whichever was resolved first."""
    made = connections({("ops", "dt"): secret(PUBLIC_URL), ("team", "copy"): secret(PUBLIC_URL)})
    order = [("team", None), ("team", "copy")]
    if not default_first:
        order.reverse()
    seen = {name: await made.resolve(namespace=ns, secret_name=name) for ns, name in order}
    seen_again = {name: await made.resolve(namespace=ns, secret_name=name) for ns, name in reversed(order)}
    for results in (seen, seen_again):
        assert results[None].is_default and results[None].name == "ops/dt"
        assert not results["copy"].is_default and results["copy"].name == "team/copy"
    await made.close()


async def test_the_default_secret_named_explicitly_is_a_namespace_connection() -> None:
    made = connections({("ops", "dt"): secret(PUBLIC_URL)})
    via_default = await made.resolve(namespace="team", secret_name=None)
    named = await made.resolve(namespace="ops", secret_name="dt")
    assert via_default.is_default and not named.is_default
    await made.close()


async def test_objects_of_one_path_share_one_client() -> None:
    made = connections({("team", "a"): secret(PUBLIC_URL), ("team", "b"): secret(PUBLIC_URL)})
    a = await made.resolve(namespace="team", secret_name="a")
    b = await made.resolve(namespace="team", secret_name="b")
    assert a.client is b.client and a.observer is b.observer
    assert (a.name, b.name) == ("team/a", "team/b")
    assert a.client_token.reveal() == TOKEN
    assert len(made.all()) == 1
    await made.close()


# --- the opt-in label --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [secret(PUBLIC_URL, labelled=False), secret(PUBLIC_URL, label="yes"), secret(PUBLIC_URL, label="True")],
    ids=["no-label", "label-yes", "label-True"],
)
async def test_a_namespace_secret_without_the_label_is_no_connection(body: dict[str, Any]) -> None:
    made = connections({("team", "creds"): body})
    problem = await refusal(made, "team", "creds")
    assert problem.reason == Reason.CONNECTION_INVALID
    assert "not marked as a connection" in problem.message
    assert f"kubectl label secret creds -n team {CONNECTION_LABEL}=true" in problem.message
    assert made.all() == []


async def test_the_default_connection_needs_no_label() -> None:
    made = connections({("ops", "dt"): secret(PUBLIC_URL, labelled=False)})
    assert (await made.resolve(namespace="team", secret_name=None)).is_default
    await made.close()


# --- schemes and addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "own"], ids=["default", "namespace"])
async def test_plain_http_is_refused_unless_allowed(name: str | None) -> None:
    secrets = {("ops", "dt"): secret("http://8.8.8.8"), ("team", "own"): secret("http://8.8.8.8")}
    problem = await refusal(connections(secrets), "team", name)
    assert problem.reason == Reason.CONNECTION_NOT_ALLOWED
    assert "http://" in problem.message and "--allow-insecure-http" in problem.message
    allowed = connections(secrets, insecure_http=True)
    assert (await allowed.resolve(namespace="team", secret_name=name)).client.api_root.startswith("http://")
    await allowed.close()


INTERNAL = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # the cloud metadata endpoint
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "private"),  # documentation ranges count as non-global
    ("198.18.0.1", "private"),
    ("[::1]", "loopback"),
    ("[::]", "unspecified"),
    ("[fd00::1]", "private"),
    ("[fc00::1]", "private"),
    ("[fe80::1]", "link-local"),
    ("[ff02::1]", "multicast"),
    ("[::ffff:10.0.0.1]", "private"),  # IPv4-mapped
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[64:ff9b::a9fe:a9fe]", "link-local"),  # NAT64 of 169.254.169.254
    ("[2002:a00:1::1]", "private"),  # 6to4 of 10.0.0.1
    ("[2001:db8::1]", "private"),  # documentation
]


@pytest.mark.parametrize(("host", "kind"), INTERNAL, ids=[h for h, _ in INTERNAL])
async def test_a_namespace_connection_cannot_reach_an_internal_address(host: str, kind: str) -> None:
    made = connections({("team", "own"): secret(f"https://{host}:8443")})
    problem = await refusal(made, "team", "own")
    assert problem.reason == Reason.CONNECTION_NOT_ALLOWED
    assert f"internal address ({kind})" in problem.message
    assert "--allow-connection-cidr" in problem.message
    assert made.all() == []


@pytest.mark.parametrize("host", ["8.8.8.8", "[2606:4700::1]", "[::ffff:8.8.8.8]", "[64:ff9b::808:808]"])
async def test_global_addresses_are_reachable(host: str) -> None:
    made = connections({("team", "own"): secret(f"https://{host}")})
    assert not (await made.resolve(namespace="team", secret_name="own")).is_default
    await made.close()


async def test_the_default_connection_may_be_internal() -> None:
    """The administrator chose it (a Managed cluster may well be internal)."""
    made = connections({("ops", "dt"): secret("https://10.1.2.3/e/abc")})
    assert (await made.resolve(namespace="team", secret_name=None)).is_default
    await made.close()


async def test_an_allowed_network_is_reachable_and_no_other() -> None:
    secrets = {("team", "in"): secret("https://10.20.1.1"), ("team", "out"): secret("https://10.21.1.1")}
    made = connections(secrets, cidrs=("10.20.0.0/16",))
    await made.resolve(namespace="team", secret_name="in")
    assert (await refusal(made, "team", "out")).reason == Reason.CONNECTION_NOT_ALLOWED
    await made.close()


async def test_a_host_name_is_judged_by_every_address_it_resolves_to(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "dynatrace.example.com": ["8.8.8.8"],
        "sneaky.example.com": ["8.8.8.8", "10.0.0.7"],
        "metadata.example.com": ["169.254.169.254"],
        "kubernetes.default.svc": ["10.96.0.1"],
    }

    async def resolve(host: str, port: int) -> list[egress.IPAddress]:
        return [ipaddress.ip_address(a) for a in answers[host]]

    monkeypatch.setattr(egress, "resolve", resolve)
    made = connections({("team", name): secret(f"https://{name}") for name in answers})
    await made.resolve(namespace="team", secret_name="dynatrace.example.com")
    for name, shown in [
        ("sneaky.example.com", "sneaky.example.com (resolves to 10.0.0.7) is an internal address (private)"),
        ("metadata.example.com", "(resolves to 169.254.169.254) is an internal address (link-local)"),
        ("kubernetes.default.svc", "(resolves to 10.96.0.1) is an internal address (private)"),
    ]:
        problem = await refusal(made, "team", name)
        assert problem.reason == Reason.CONNECTION_NOT_ALLOWED and shown in problem.message, problem.message
    await made.close()


async def test_the_guard_checks_again_at_connect_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name passed the first check, then resolves to the metadata endpoint."""
    answers = {"rebind.example.com": ["8.8.8.8"]}

    async def resolve(host: str, port: int) -> list[egress.IPAddress]:
        return [ipaddress.ip_address(a) for a in answers[host]]

    monkeypatch.setattr(egress, "resolve", resolve)
    made = connections({("team", "own"): secret("https://rebind.example.com")})
    connection = await made.resolve(namespace="team", secret_name="own")
    answers["rebind.example.com"] = ["169.254.169.254"]
    with pytest.raises(errors.DynatraceTransportError) as refused:
        await connection.client.get("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")
    assert "AddressRefused" in str(refused.value) and "169.254.169.254" in str(refused.value)
    assert refused.value.attempts == 1 and not refused.value.request_sent  # not retried, nothing sent
    await made.close()


async def test_a_url_the_client_refuses_is_invalid_not_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(host: str, port: int) -> list[egress.IPAddress]:
        raise AssertionError("no lookup for a URL that cannot be right")

    monkeypatch.setattr(egress, "resolve", resolve)
    made = connections({("team", "own"): secret("https://user:pw@dynatrace.example.com")})
    problem = await refusal(made, "team", "own")
    assert problem.reason == Reason.CONNECTION_INVALID and "credentials" in problem.message


# --- error text -----------------------------------------------------------------------------------------

HTML = b"<html><head><title>Internal admin console: db password hunter2</title></head><body>x</body></html>"


@pytest.mark.parametrize(
    "body",
    [HTML, b"plain text from some internal service", b'{"message": "bare json message"}', b"[1, 2]"],
    ids=["html", "text", "bare-json", "other-json"],
)
def test_envelope_only_errors_quote_no_raw_body(body: bytes) -> None:
    error = errors.error_from_response(status=502, body=body, operation="GET /apiTokens", envelope_only=True)
    assert error.message == ""
    assert str(error) == "GET /apiTokens failed with 502 Bad Gateway"
    quoted = errors.error_from_response(status=502, body=body, operation="GET /apiTokens")
    assert quoted.message != ""  # the default connection's errors still say what came back


def test_envelope_only_keeps_dynatraces_own_message() -> None:
    body = (
        b'{"error": {"code": 403, "message": "Token is missing required scope. Use one of: apiTokens.write"}}'
    )
    error = errors.error_from_response(status=403, body=body, operation="POST /apiTokens", envelope_only=True)
    assert isinstance(error, errors.Forbidden) and error.missing_scope == "apiTokens.write"
    assert "missing required scope" in str(error)


async def test_a_client_for_a_namespace_connection_quotes_no_html() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, content=HTML, headers={"Content-Type": "text/html"})

    client = DynatraceClient(
        "https://8.8.8.8",
        token=TokenSecret(TOKEN),
        transport=httpx.MockTransport(answer),
        quote_unstructured_errors=False,
    )
    with pytest.raises(errors.NotFound) as refused:
        await client.get("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")
    assert "hunter2" not in str(refused.value) and "admin console" not in str(refused.value)
    assert "404 Not Found" in str(refused.value)
    await client.aclose()


async def test_namespace_connections_get_the_quiet_client() -> None:
    made = connections({("ops", "dt"): secret(PUBLIC_URL), ("team", "own"): secret(PUBLIC_URL, OTHER_TOKEN)})
    default = await made.resolve(namespace="team", secret_name=None)
    own = await made.resolve(namespace="team", secret_name="own")
    assert default.client._envelope_only is False
    assert own.client._envelope_only is True
    await made.close()


async def test_through_an_environment_proxy_only_the_first_check_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.corp")
    assert egress.through_proxy("https://abc.live.dynatrace.com/api/v2")
    assert not egress.through_proxy("https://dt.internal.corp/api/v2")
    made = connections({("team", "own"): secret(PUBLIC_URL), ("team", "bad"): secret("https://10.0.0.1")})
    own = await made.resolve(namespace="team", secret_name="own")
    assert not isinstance(own.client._http._transport, egress.GuardedTransport)  # httpx's, with the proxy
    assert (await refusal(made, "team", "bad")).reason == Reason.CONNECTION_NOT_ALLOWED
    await made.close()


async def test_without_a_proxy_namespace_connections_use_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    made = connections({("ops", "dt"): secret(PUBLIC_URL), ("team", "own"): secret(PUBLIC_URL, OTHER_TOKEN)})
    own = await made.resolve(namespace="team", secret_name="own")
    default = await made.resolve(namespace="team", secret_name=None)
    assert isinstance(own.client._http._transport, egress.GuardedTransport)
    assert not isinstance(default.client._http._transport, egress.GuardedTransport)
    await made.close()


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "localhost"])
async def test_other_spellings_of_loopback_are_judged_by_what_they_resolve_to(host: str) -> None:
    """inet_aton accepts decimal, octal, hex and short forms; the system resolver answers for them."""
    made = connections({("team", "own"): secret(f"https://{host}")})
    problem = await refusal(made, "team", "own")
    assert problem.reason == Reason.CONNECTION_NOT_ALLOWED
    assert "internal address (loopback)" in problem.message


async def test_a_quiet_client_quotes_no_bytes_of_an_answer_that_is_not_http() -> None:
    """h11 puts the first bytes of a non-HTTP answer (an SSH or Redis banner) into its error text."""

    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(
            "illegal status line: bytearray(b'SSH-2.0-OpenSSH_9.6 internal-host')"
        )

    for quiet in (True, False):
        client = DynatraceClient(
            "https://8.8.8.8",
            token=TokenSecret(TOKEN),
            transport=httpx.MockTransport(answer),
            quote_unstructured_errors=not quiet,
            settings=DynatraceSettings(retry=RetrySettings(max_attempts=1)),
        )
        with pytest.raises(errors.DynatraceTransportError) as failed:
            await client.get("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")
        assert ("OpenSSH" in str(failed.value)) is not quiet
        assert "RemoteProtocolError" in str(failed.value)
        await client.aclose()


# --- a client lives while an object uses it --------------------------------------------------------------


async def test_a_client_closes_when_its_last_object_goes_or_moves_away() -> None:
    made = connections({("team", "a"): secret(PUBLIC_URL), ("team", "b"): secret(PUBLIC_URL, OTHER_TOKEN)})
    first = await made.resolve(namespace="team", secret_name="a", user="uid-1")
    await made.resolve(namespace="team", secret_name="a", user="uid-2")
    await made.release("uid-1")
    assert made.all() == [first.shared]  # uid-2 still uses it
    moved = await made.resolve(namespace="team", secret_name="b", user="uid-2")
    assert made.all() == [moved.shared]  # the first client closed once nobody used it
    assert first.client._http.is_closed
    await made.release("uid-2")
    assert made.all() == []
    await made.release("uid-unknown")  # nothing to do
    await made.close()
