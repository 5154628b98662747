"""The ApiToken's status as a small value: observed fields plus kstatus conditions.

kstatus (Argo CD, Flux) reads `Ready`, `Reconciling` and `Stalled` with `observedGeneration`:
Current = Ready True and nothing in progress; InProgress = Reconciling True; Failed = Stalled True.
A condition's `lastTransitionTime` only moves when its status flips.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from apitoken_operator.api import v1alpha1
from apitoken_operator.api.v1alpha1 import ApiTokenStatus, Condition
from apitoken_operator.dynatrace.dates import DateFormatError, format_date, parse_date
from apitoken_operator.dynatrace.models import ApiToken
from apitoken_operator.reconcile.reasons import Reason


class Health(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


@dataclass(frozen=True)
class Outcome:
    health: Health
    reason: Reason
    message: str


#: what the status reports of the observed token (the same names on both sides, snake_case)
TOKEN_FIELDS = (
    "owner",
    "creation_date",
    "modified_date",
    "last_used_date",
    "last_used_ip_address",
    "expiration_date",
)
#: fields that move whenever a consumer uses the token, without any change to it
LAST_USE_FIELDS = ("last_used_date", "last_used_ip_address")


def token_fields(
    token: ApiToken | None, *, reported: Mapping[str, Any] | None = None, last_used_interval: float = 0.0
) -> dict[str, Any]:
    """Observed token fields as a status merge patch; absent ones are cleared (null).

    With `reported` (the status as it is), the last use is left as reported until it is
    `last_used_interval` seconds older than the observed one: tokens in use would otherwise rewrite
    their ApiToken at every look, loading the API server for a figure nobody needs by the second.
    """
    if token is None:
        return v1alpha1.status_patch(ApiTokenStatus(id=None, **dict.fromkeys(TOKEN_FIELDS)))
    fields = {name: getattr(token, name) for name in TOKEN_FIELDS}
    if reported is not None and not last_use_due(
        reported, observed=token.last_used_date, token_id=token.id, interval=last_used_interval
    ):
        for name in LAST_USE_FIELDS:
            fields.pop(name)
    return v1alpha1.status_patch(ApiTokenStatus(id=token.id, **fields))


def last_use_due(
    reported: Mapping[str, Any], *, observed: str | None, token_id: str | None, interval: float
) -> bool:
    """Whether the observed last use should replace the reported one now: when it falls in another
    `last_used_period` (so at most once a period; periods are staggered per token)."""
    before = reported.get("lastUsedDate")
    if reported.get("id") != token_id:
        return True  # another token: its own use, or none
    if not isinstance(before, str) or not before or not observed:
        return bool(before != observed)  # a first use, or a use no longer known
    was = last_used_period(before, interval=interval, token_id=token_id)
    now = last_used_period(observed, interval=interval, token_id=token_id)
    return was is None or now is None or was != now


def last_used_period(last_used: str | None, *, interval: float, token_id: str | None) -> int | None:
    """Which `interval`-long period a last-use date falls in (None: no date, or unreadable).

    Each token's periods start at an offset taken from its id, so that thousands of tokens in constant
    use do not all come due in the same drift check at the top of the hour.
    """
    if not last_used:
        return None
    try:
        seconds = parse_date(last_used, now=datetime.now(UTC)).timestamp()
    except DateFormatError:
        return None
    if interval <= 0:
        return int(seconds * 1000)
    offset = zlib.crc32((token_id or "").encode()) % max(int(interval), 1)
    return int((seconds + offset) // interval)


def conditions(
    outcome: Outcome, *, generation: int | None, previous: Sequence[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """The three kstatus conditions an outcome means; a condition's transition time moves only when
    its status flips."""
    wanted = {
        "Ready": _flag(outcome.health is Health.READY),
        "Reconciling": _flag(outcome.health is Health.RECONCILING),
        "Stalled": _flag(outcome.health is Health.STALLED),
    }
    before = {c.get("type"): c for c in previous}
    stamp = format_date(now)
    result = []
    for kind, status in wanted.items():
        old = before.get(kind, {})
        if kind == "Ready" or status == "True":
            reason, message = outcome.reason.value, outcome.message
        else:
            reason, message = f"No{kind}", ""
        condition = Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message,
            observed_generation=generation,
            last_transition_time=old.get("lastTransitionTime") if old.get("status") == status else stamp,
        )
        result.append(condition.model_dump(mode="json", by_alias=True))
    return result


def _flag(on: bool) -> Literal["True", "False"]:
    return "True" if on else "False"


def same_conditions(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    """Equal but for lastTransitionTime; used to skip status writes that would change nothing."""

    def key(items: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
            for c in items
        )

    return key(a) == key(b)
