"""Users deleted in a built demo warehouse, for the erasure demo and tests: ``delete_users`` picks regular users
(deterministically, by seed), lists all of them in ``main.deleted_users`` (user_id, deleted_at) and removes
the rows of every other one from ``main.users``, so both detection rules (absent from the source, listed in a
deletions table) find some. All-or-nothing; the file lock is released on return."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from etl.instants import as_utc
from webengage_dev.demo import _sql
from webengage_dev.demo.warehouse import VALID_USER_ID

_PICK = """
SELECT user_id FROM (SELECT DISTINCT user_id FROM main.users WHERE regexp_matches(user_id, $valid))
ORDER BY hash(user_id, 'delete', $seed), user_id LIMIT $k
"""


def delete_users(path: Path | str, *, count: int, seed: int, as_of: datetime) -> list[str]:
    """Delete ``count`` regular users as of ``as_of``; returns their ids (sorted)."""
    if count < 0:
        raise ValueError("count must not be negative")
    with _sql.session(path) as con:
        con.begin()
        picked = sorted(r[0] for r in con.execute(_PICK, {"valid": VALID_USER_ID, "seed": seed, "k": count}).fetchall())
        con.execute("CREATE TABLE IF NOT EXISTS main.deleted_users (user_id VARCHAR, deleted_at TIMESTAMPTZ)")
        con.execute("INSERT INTO main.deleted_users SELECT unnest(?), ?", [picked, as_utc(as_of)])
        con.execute("DELETE FROM main.users WHERE user_id IN (SELECT unnest(?))", [picked[::2]])
        con.commit()
    return picked
