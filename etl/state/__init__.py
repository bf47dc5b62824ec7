"""Sync state in a database: what WebEngage accepted, attribute types, rejects and run history."""

from etl.engine.rejects import RejectRow
from etl.state.store import StateStore, ensure_schema

__all__ = ["RejectRow", "StateStore", "ensure_schema"]
