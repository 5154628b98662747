"""Does the token's expiry match the declaration? Relative values never equal what is read back."""

from __future__ import annotations

from datetime import datetime, timedelta

from apitoken_operator.dynatrace.dates import DateFormatError, is_relative, parse_date

#: Dynatrace keeps milliseconds; allow for rounding on its side.
TOLERANCE = timedelta(seconds=1)


def expiry_mismatch(
    *, desired: str | None, requested: str | None, observed: str | None, now: datetime
) -> str | None:
    """Why the token must be replaced to honour `desired`, or None when it already does.

    `requested` is the spec value the current token was created from (recorded in the status).
    """
    if desired is None:
        return (
            None if observed is None else f"spec.expirationDate was removed but the token expires {observed}"
        )
    if is_relative(desired):
        if requested is None:  # e.g. recovered or adopted: any expiry is taken as the one asked for
            return None if observed is not None else f"the token never expires but spec asks {desired}"
        return None if requested == desired else f"spec.expirationDate changed from {requested} to {desired}"
    if observed is None:
        return f"the token never expires but spec.expirationDate is {desired}"
    try:
        wanted = parse_date(desired, now=now)
        actual = parse_date(observed, now=now)
    except DateFormatError:
        return None if requested == desired else f"spec.expirationDate changed to {desired}"
    if abs(wanted - actual) <= TOLERANCE:
        return None
    return f"the token expires {observed} but spec.expirationDate is {desired}"
