"""Sync state in a database: what WebEngage accepted, attribute types, rejects and run history."""

from etl.state.store import RejectRow, StateStore, ensure_schema

__all__ = ["RejectRow", "StateStore", "ensure_schema"]
