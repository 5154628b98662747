"""Which replicas kopf's peering object shows alive: what lets a dead replica's create be settled early."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apitoken_operator.controller.peers import live_identities

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def seen(ago: float, lifetime: int = 60) -> dict[str, object]:
    return {"priority": 7, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=ago)).isoformat()}


def test_a_peer_is_alive_until_its_lifetime_has_passed_since_it_was_last_seen() -> None:
    status = {"fresh": seen(10), "stale": seen(61), "long-lived": seen(61, lifetime=120), "edge": seen(60)}
    assert live_identities(status, now=NOW) == {"fresh", "long-lived"}


def test_kopfs_own_formats_are_read() -> None:
    status = {
        "utc-offset": {"lifetime": 60, "lastseen": "2026-11-28T11:59:30.123456+00:00"},
        "naive": {"lifetime": 60, "lastseen": "2026-11-28T11:59:30"},  # taken as UTC
        "zulu": {"lifetime": 60, "lastseen": "2026-11-28T11:58:00Z"},
    }
    assert live_identities(status, now=NOW) == {"utc-offset", "naive"}


def test_an_unreadable_entry_counts_as_alive_so_nothing_is_settled_too_early() -> None:
    status = {"no-date": {"lifetime": 60}, "bad-date": {"lastseen": "yesterday"}, "not-a-map": "x"}
    assert live_identities(status, now=NOW) == {"no-date", "bad-date"}
