"""One rule for instants: naive is UTC; databases get naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from etl.instants import as_utc, naive_utc, parse_instant

IST = timezone(timedelta(hours=5, minutes=30))


def test_naive_is_utc_and_offsets_convert() -> None:
    assert as_utc(datetime(2031, 1, 1, 12)) == datetime(2031, 1, 1, 12, tzinfo=UTC)
    assert as_utc(datetime(2031, 1, 1, 17, 30, tzinfo=IST)) == datetime(2031, 1, 1, 12, tzinfo=UTC)
    assert naive_utc(datetime(2031, 1, 1, 17, 30, tzinfo=IST)) == datetime(2031, 1, 1, 12)
    assert naive_utc(datetime(2031, 1, 1, 12)) == datetime(2031, 1, 1, 12)


def test_parse_instant() -> None:
    assert parse_instant(" 2031-01-01T17:30:00+05:30 ") == datetime(2031, 1, 1, 12, tzinfo=UTC)
    assert (
        parse_instant("2031-01-01T12:00:00Z")
        == parse_instant("2031-01-01 12:00")
        == datetime(2031, 1, 1, 12, tzinfo=UTC)
    )
    with pytest.raises(ValueError):
        parse_instant("yesterday")
