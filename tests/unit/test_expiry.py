"""expiry_mismatch: must the token be replaced to honour spec.expirationDate? (table)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apitoken_operator.reconcile.expiry import expiry_mismatch

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
AT = "2031-01-01T00:00:00.000Z"

#: name, desired, requested, observed, mismatch expected, a phrase the reason must contain
CASES = [
    ("no expiry asked, none observed", None, None, None, False, ""),
    ("no expiry asked, the token expires (expiry removed)", None, AT, AT, True, "was removed"),
    ("no expiry asked, none requested, the token expires", None, None, AT, True, "was removed"),
    ("relative unchanged", "now+30d", "now+30d", AT, False, ""),
    ("relative unchanged, resolves to anything", "now+30d", "now+30d", "2099-01-01T00:00:00.000Z", False, ""),
    ("relative unchanged, observed unknown", "now+30d", "now+30d", None, False, ""),
    ("relative changed", "now+60d", "now+30d", AT, True, "changed from now+30d to now+60d"),
    ("relative replacing an absolute", "now+60d", AT, AT, True, "changed"),
    ("relative, requested unknown (recovered): any expiry will do", "now+30d", None, AT, False, ""),
    ("relative, requested unknown, never expires", "now+30d", None, None, True, "never expires"),
    ("absolute, never expires", AT, AT, None, True, "never expires"),
    ("absolute equal", AT, AT, AT, False, ""),
    ("absolute equal, requested unknown", AT, None, AT, False, ""),
    ("absolute within 1 s (later)", "2031-01-01T00:00:01.000Z", None, AT, False, ""),
    ("absolute within 1 s (earlier)", "2030-12-31T23:59:59.000Z", None, AT, False, ""),
    ("absolute within 1 s (fraction)", "2031-01-01T00:00:00.999Z", None, AT, False, ""),
    ("absolute just over 1 s", "2031-01-01T00:00:01.001Z", None, AT, True, "but spec.expirationDate is"),
    ("absolute different", "2032-01-01T00:00:00Z", AT, AT, True, f"expires {AT}"),
    ("same instant, offset notation", "2031-01-01T01:00:00+01:00", None, AT, False, ""),
    ("same instant, compact offset", "2030-12-31T19:00-0500", None, AT, False, ""),
    ("same instant, space and no zone (UTC)", "2031-01-01 00:00", None, AT, False, ""),
    ("same instant, UTC milliseconds", "1924992000000", None, AT, False, ""),
    ("different instant, offset notation", "2031-01-01T00:00:00+01:00", None, AT, True, "but spec"),
    ("unparsable desired, as requested", "2031-13-45T00:00", "2031-13-45T00:00", AT, False, ""),
    ("unparsable desired, changed", "2031-13-45T00:00", AT, AT, True, "changed to 2031-13-45T00:00"),
    ("unparsable observed, as requested", AT, AT, "garbage", False, ""),
    ("unparsable observed, changed", AT, None, "garbage", True, "changed to"),
]


@pytest.mark.parametrize(
    ("desired", "requested", "observed", "mismatch", "phrase"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_expiry_mismatch(
    desired: str | None, requested: str | None, observed: str | None, mismatch: bool, phrase: str
) -> None:
    reason = expiry_mismatch(desired=desired, requested=requested, observed=observed, now=NOW)
    assert (reason is not None) == mismatch, reason
    if mismatch:
        assert reason is not None and phrase in reason


def test_relative_values_never_compare_with_the_clock() -> None:
    """now+30d resolves differently every day; the recorded request decides, not the date read back."""
    later = datetime(2035, 1, 1, tzinfo=UTC)
    assert expiry_mismatch(desired="now+30d", requested="now+30d", observed=AT, now=later) is None
