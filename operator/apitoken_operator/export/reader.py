"""Read an environment's tokens page by page and sort them into exported and skipped.

`read_tokens` walks the list (one call per page, the fields the manifests need, the selector applied
by Dynatrace) and reports progress; `select` decides, token by token, what becomes a manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.dates import DateFormatError, parse_date
from apitoken_operator.dynatrace.models import ApiToken, ListField
from apitoken_operator.dynatrace.selector import Selector
from apitoken_operator.export.manifests import Manifest, Unexportable, build_manifests, check_token

__all__ = ["LIST_FIELDS", "ExportOptions", "ExportResult", "read_tokens", "select"]

#: Added to the list's default fields (id, name, enabled, owner, creationDate).
LIST_FIELDS: tuple[ListField, ...] = (
    ListField.SCOPES,
    ListField.EXPIRATION_DATE,
    ListField.PERSONAL_ACCESS_TOKEN,
)


@dataclass(frozen=True)
class ExportOptions:
    namespace: str | None = None
    deletion_policy: str = "Orphan"
    #: spec.connectionSecretRef.name of every manifest, when given.
    connection_secret: str | None = None
    selector: Selector = field(default_factory=Selector)
    include_expired: bool = False
    #: Also export the token the export authenticates with.
    include_self: bool = False


@dataclass
class ExportResult:
    manifests: list[Manifest]
    #: Tokens read from Dynatrace (after removing any the server listed twice).
    read: int = 0
    expired: list[str] = field(default_factory=list)
    calling_token: list[str] = field(default_factory=list)
    #: Tokens the server returned although they do not match the selector.
    unmatched: list[str] = field(default_factory=list)
    #: (id, why) of tokens an ApiToken cannot declare faithfully.
    unexportable: list[tuple[str, str]] = field(default_factory=list)


async def read_tokens(
    client: DynatraceClient,
    *,
    selector: Selector,
    page_size: int,
    progress: Callable[[int], object] | None = None,
) -> list[ApiToken]:
    """Every token matching `selector`, each once; `progress(count)` after every `page_size` tokens."""
    tokens: dict[str, ApiToken] = {}
    count = 0
    async for token in client.list_tokens(
        fields=LIST_FIELDS, selector=None if selector.is_empty() else selector, page_size=page_size
    ):
        count += 1
        tokens.setdefault(token.id or f"<no id #{count}>", token)
        if progress is not None and count % page_size == 0:
            progress(count)
    return list(tokens.values())


def is_expired(token: ApiToken, *, now: datetime) -> bool:
    if token.expiration_date is None:
        return False
    try:
        return parse_date(token.expiration_date, now=now) <= now
    except DateFormatError:
        return False  # `check_token` reports it


def select(
    tokens: Sequence[ApiToken],
    *,
    options: ExportOptions,
    calling_token_id: str,
    now: datetime,
    source: str,
) -> ExportResult:
    """Sort tokens into manifests and the reasons others were left out."""
    result = ExportResult(manifests=[], read=len(tokens))
    kept: list[ApiToken] = []
    for token in tokens:
        token_id = token.id or "(no id)"
        if not options.selector.matches(token):
            result.unmatched.append(token_id)
        elif token.id == calling_token_id and not options.include_self:
            result.calling_token.append(token_id)
        elif is_expired(token, now=now) and not options.include_expired:
            result.expired.append(token_id)
        else:
            try:
                check_token(token)
            except Unexportable as error:
                result.unexportable.append((token_id, str(error)))
            else:
                kept.append(token)
    result.manifests = build_manifests(
        kept,
        source=source,
        namespace=options.namespace,
        deletion_policy=options.deletion_policy,
        connection_secret=options.connection_secret,
    )
    return result
