"""Turn the base URL a user writes into the Tokens API v2 root the client appends `apiTokens` to.

Accepted forms (trailing slashes allowed, and each may already end in `/api` or `/api/v2`):

- SaaS: `https://<env-id>.live.dynatrace.com`
- Managed: `https://<domain>/e/<env-id>`
- Environment ActiveGate: `https://<activegate>:9999/e/<env-id>`
- any other prefix a reverse proxy puts in front of one of those.

Rejected, with a message that says what to write instead: a missing or non-HTTP scheme, a missing host,
credentials in the URL (they would land in logs), a query string or fragment (a pasted browser address),
a path into the web UI or into an API endpoint (`.../apiTokens`, `/api/v1`), and the platform address
`*.apps.dynatrace.com`, which does not serve the classic environment API.

Pure functions; no I/O.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from apitoken_operator.dynatrace.errors import ConfigurationError

__all__ = ["api_root"]

_API_VERSION = ("api", "v2")
_SCHEMES = frozenset({"http", "https"})
_ENDPOINT_SEGMENTS = frozenset({"apitokens"})
_EXAMPLES = "https://<env-id>.live.dynatrace.com or https://<host>/e/<env-id>"


def api_root(url: str) -> str:
    """The API v2 root for `url`, e.g. `https://abc12345.live.dynatrace.com/api/v2`, without a trailing slash.

    Raises `ConfigurationError` for anything that cannot be the address of an environment.
    """
    text = url.strip()
    if not text:
        raise ConfigurationError(f"the Dynatrace URL is empty; write the environment URL, e.g. {_EXAMPLES}")
    shown = _shown(text)
    if any(char.isspace() for char in text):
        raise ConfigurationError(f"the Dynatrace URL {shown} contains whitespace")
    if "://" not in text:
        raise ConfigurationError(
            f"the Dynatrace URL {shown} has no scheme; write it with https://, e.g. {_EXAMPLES}"
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise ConfigurationError(f"the Dynatrace URL {shown} is not a valid URL: {error}") from error
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"the Dynatrace URL {shown} must start with https:// (or http://), not {scheme}://"
        )
    if parts.username is not None or parts.password is not None:
        # Deliberately not echoed: the part before `@` is a credential.
        raise ConfigurationError(
            "the Dynatrace URL must not contain credentials (user:password@); "
            "the API token is given separately and sent in the Authorization header"
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise ConfigurationError(f"the Dynatrace URL {shown} has no host")
    if "?" in text or "#" in text:
        raise ConfigurationError(
            f"the Dynatrace URL {shown} must not have a query string or fragment; "
            f"give the environment URL only, e.g. {_EXAMPLES}"
        )
    if host.endswith(".apps.dynatrace.com"):
        raise ConfigurationError(
            f"the Dynatrace URL {shown} is the platform address; the environment API is served from "
            f"https://{host.removesuffix('.apps.dynatrace.com')}.live.dynatrace.com"
        )
    segments = _environment_path(parts.path, shown=shown)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = "".join(f"/{segment}" for segment in (*segments, *_API_VERSION))
    return f"{scheme}://{netloc}{path}"


def _environment_path(path: str, *, shown: str) -> list[str]:
    """The path segments before `/api/v2`, after removing a trailing `/api` or `/api/v2` the user wrote."""
    segments = [segment for segment in path.split("/") if segment]
    lowered = [segment.lower() for segment in segments]
    if lowered[-2:] == list(_API_VERSION):
        segments, lowered = segments[:-2], lowered[:-2]
    elif lowered[-1:] == ["api"]:
        segments, lowered = segments[:-1], lowered[:-1]
    if "api" in lowered:
        raise ConfigurationError(
            f"the Dynatrace URL {shown} points into an API endpoint; give the environment URL "
            f"(ending at the host or at /e/<env-id>, optionally followed by /api/v2), e.g. {_EXAMPLES}"
        )
    if lowered and lowered[-1] in _ENDPOINT_SEGMENTS:
        raise ConfigurationError(
            f"the Dynatrace URL {shown} ends in an endpoint; the client adds /api/v2/apiTokens itself, "
            f"so give the environment URL, e.g. {_EXAMPLES}"
        )
    if "ui" in lowered:
        raise ConfigurationError(
            f"the Dynatrace URL {shown} is a web UI address; give the environment URL, e.g. {_EXAMPLES}"
        )
    if lowered[:1] == ["e"] and len(segments) != 2:
        raise ConfigurationError(
            f"the Dynatrace URL {shown} has /e/ without exactly one environment id after it; "
            "write https://<host>/e/<env-id>"
        )
    return segments


def _shown(text: str) -> str:
    """The URL as it may appear in a message: credentials cut out, length bounded."""
    scheme, separator, rest = text.partition("://")
    if separator and "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    shown = f"{scheme}{separator}{rest}"
    return repr(shown if len(shown) <= 200 else shown[:200] + "...")
