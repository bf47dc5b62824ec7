"""Instants, one rule everywhere: a datetime without an offset is UTC (the warehouse's and WebEngage's zone);
databases get naive UTC. Standard library only (the DAG files import it at parse time)."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def naive_utc(value: datetime) -> datetime:
    """The database's form of an instant: naive UTC."""
    return as_utc(value).replace(tzinfo=None)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date or date-time (``Z`` or an offset allowed) as aware UTC; raises ValueError."""
    return as_utc(datetime.fromisoformat(text.strip()))
