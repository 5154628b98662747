"""`urls.api_root`: every accepted form maps to one API root; everything that cannot be right is refused."""

from __future__ import annotations

import pytest

from apitoken_operator.dynatrace import urls
from apitoken_operator.dynatrace.errors import ConfigurationError

SAAS = "https://abc12345.live.dynatrace.com/api/v2"
MANAGED = "https://dynatrace.example.com/e/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/api/v2"
ACTIVEGATE = "https://ag.example.com:9999/e/abc12345/api/v2"

ACCEPTED = {
    "saas": ("https://abc12345.live.dynatrace.com", SAAS),
    "saas trailing slash": ("https://abc12345.live.dynatrace.com/", SAAS),
    "saas several trailing slashes": ("https://abc12345.live.dynatrace.com///", SAAS),
    "saas with /api": ("https://abc12345.live.dynatrace.com/api", SAAS),
    "saas with /api/": ("https://abc12345.live.dynatrace.com/api/", SAAS),
    "saas with /api/v2": ("https://abc12345.live.dynatrace.com/api/v2", SAAS),
    "saas with /api/v2/": ("https://abc12345.live.dynatrace.com/api/v2/", SAAS),
    "saas upper-case scheme and host": ("HTTPS://ABC12345.Live.Dynatrace.com", SAAS),
    "saas surrounding whitespace": ("  https://abc12345.live.dynatrace.com \n", SAAS),
    "saas explicit port 443": (
        "https://abc12345.live.dynatrace.com:443",
        "https://abc12345.live.dynatrace.com:443/api/v2",
    ),
    "managed": ("https://dynatrace.example.com/e/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", MANAGED),
    "managed trailing slash": (
        "https://dynatrace.example.com/e/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/",
        MANAGED,
    ),
    "managed with /api/v2": (
        "https://dynatrace.example.com/e/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/api/v2/",
        MANAGED,
    ),
    "activegate": ("https://ag.example.com:9999/e/abc12345", ACTIVEGATE),
    "activegate with /api": ("https://ag.example.com:9999/e/abc12345/api", ACTIVEGATE),
    "activegate with API in capitals": ("https://ag.example.com:9999/e/abc12345/API/V2", ACTIVEGATE),
    "reverse proxy prefix": (
        "https://proxy.example.com/dynatrace/",
        "https://proxy.example.com/dynatrace/api/v2",
    ),
    "local emulator over http": ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v2"),
    "ipv6 host": ("http://[::1]:8080/", "http://[::1]:8080/api/v2"),
}

REFUSED = {
    "empty": ("", "empty"),
    "no scheme": ("abc12345.live.dynatrace.com", "no scheme"),
    "host and port without scheme": ("localhost:8080", "no scheme"),
    "ftp scheme": ("ftp://abc12345.live.dynatrace.com", "https://"),
    "no host": ("https:///e/abc", "no host"),
    "query string": ("https://abc12345.live.dynatrace.com/?api-token=x", "query string"),
    "empty query": ("https://abc12345.live.dynatrace.com/?", "query string"),
    "fragment": ("https://abc12345.live.dynatrace.com/#dashboards", "fragment"),
    "credentials": ("https://user:hunter2@abc12345.live.dynatrace.com", "credentials"),
    "user only": ("https://user@abc12345.live.dynatrace.com", "credentials"),
    "apiTokens endpoint": ("https://abc12345.live.dynatrace.com/api/v2/apiTokens", "API endpoint"),
    "apiTokens endpoint trailing slash": (
        "https://abc12345.live.dynatrace.com/api/v2/apiTokens/",
        "API endpoint",
    ),
    "apiTokens without api": ("https://abc12345.live.dynatrace.com/apiTokens", "endpoint"),
    "lookup endpoint": ("https://abc12345.live.dynatrace.com/api/v2/apiTokens/lookup", "API endpoint"),
    "api v1": ("https://abc12345.live.dynatrace.com/api/v1", "API endpoint"),
    "config api": ("https://abc12345.live.dynatrace.com/api/config/v1", "API endpoint"),
    "double api": ("https://abc12345.live.dynatrace.com/api/v2/api/v2", "API endpoint"),
    "platform address": ("https://abc12345.apps.dynatrace.com", "abc12345.live.dynatrace.com"),
    "web ui": ("https://abc12345.live.dynatrace.com/ui/apps/dynatrace.classic.tokens", "web UI"),
    "managed without env id": ("https://dynatrace.example.com/e/", "/e/"),
    "managed with extra path": ("https://dynatrace.example.com/e/abc/settings", "/e/"),
    "whitespace inside": ("https://abc12345.live dynatrace.com", "whitespace"),
    "bad port": ("https://abc12345.live.dynatrace.com:99999", "not a valid URL"),
}


@pytest.mark.parametrize(("given", "expected"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_forms(given: str, expected: str) -> None:
    assert urls.api_root(given) == expected


@pytest.mark.parametrize(("given", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_forms(given: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        urls.api_root(given)
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("given", [expected for _, expected in ACCEPTED.values()])
def test_normalising_is_idempotent(given: str) -> None:
    assert urls.api_root(given) == given


def test_credentials_are_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        urls.api_root("https://admin:s3cret-pass@abc12345.live.dynatrace.com")
    assert "s3cret-pass" not in str(caught.value)
    assert "admin" not in str(caught.value)
