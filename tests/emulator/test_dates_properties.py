"""Properties of dynatrace.dates, which parses every expirationDate/from/to the emulator receives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from apitoken_operator.dynatrace.dates import format_date, parse_date

NOW = datetime(2024, 5, 17, 13, 45, 12, 345000, tzinfo=UTC)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9000, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
units = st.sampled_from("mhdwMy")


@given(moments)
def test_format_then_parse_is_the_identity(moment: datetime) -> None:
    text = format_date(moment)
    assert parse_date(text, now=NOW) == moment
    assert format_date(parse_date(text, now=NOW)) == text


@given(st.text(alphabet="0123456789-:T .Z+nowmhdwMy/", max_size=30))
def test_parse_output_is_a_fixed_point_of_format_parse(text: str) -> None:
    try:
        moment = parse_date(text, now=NOW)
    except ValueError:
        return
    assert parse_date(format_date(moment), now=NOW) == moment


@given(moments, offsets, st.booleans(), st.sampled_from(["seconds", "minutes", "milliseconds"]))
def test_every_documented_absolute_format_is_accepted(
    moment: datetime, zone: timezone, space: bool, precision: str
) -> None:
    local = moment.astimezone(zone)
    separator = " " if space else "T"
    timespec = {"seconds": "seconds", "minutes": "minutes", "milliseconds": "milliseconds"}[precision]
    text = (
        local.replace(tzinfo=None).isoformat(sep=separator, timespec=timespec)
        + local.strftime("%z")[:3]
        + ":"
        + local.strftime("%z")[3:]
    )
    expected = moment
    if precision == "seconds":
        expected = moment.replace(microsecond=0)
    elif precision == "minutes":
        expected = moment.replace(second=0, microsecond=0)
    assert parse_date(text, now=NOW) == expected


def _millis(moment: datetime) -> str:
    return str((moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))


@given(moments)
def test_no_zone_means_utc(moment: datetime) -> None:
    naive = moment.replace(tzinfo=None).isoformat(timespec="milliseconds")
    assert parse_date(naive, now=NOW) == moment


@given(moments)
def test_utc_milliseconds_are_exact_in_the_whole_range(moment: datetime) -> None:
    assert parse_date(_millis(moment), now=NOW) == moment


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=0, max_value=500), units)
def test_relative_offsets_are_monotonic(first: int, second: int, unit: str) -> None:
    low, high = sorted((first, second))
    assert parse_date(f"now+{low}{unit}", now=NOW) <= parse_date(f"now+{high}{unit}", now=NOW)
    assert parse_date(f"now-{high}{unit}", now=NOW) <= parse_date(f"now-{low}{unit}", now=NOW)
    assert parse_date(f"now-{low}{unit}", now=NOW) <= NOW <= parse_date(f"now+{low}{unit}", now=NOW)


@given(st.integers(min_value=0, max_value=100), units, units)
def test_alignment_rounds_down(amount: int, unit: str, align: str) -> None:
    aligned = parse_date(f"now-{amount}{unit}/{align}", now=NOW)
    assert aligned <= parse_date(f"now-{amount}{unit}", now=NOW)
