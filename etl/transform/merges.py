"""Anonymous -> known pairs, screened (pure: frames in, pairs and rejects out).

A chunk holds every pair of the anonymous ids it contains (the source is read ordered by anonymous id).
Per anonymous id:

* rows repeating a pair are folded into one (the earliest ``identified_at`` kept): ``extracted`` counts
  distinct pairs, not identify rows;
* ids that are missing, over 100 characters, a null-like token or hold a control character reject the pair
  (keyed by the pair, naming the column);
* an anonymous id merged (or journaled) before stays with that user: a pair naming it is ``unchanged``,
  one naming another user is rejected as ``shared_anonymous_id`` (WebEngage cannot undo a merge);
* otherwise, of several users (a shared device) the policy picks the first identified, the last, or none;
  the others are rejected as ``shared_anonymous_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import pandas as pd

from etl.engine.rejects import RejectRow
from etl.errors import ConfigError
from etl.mappings.events import SharedAnonymous
from etl.transform.formats import garbage
from etl.transform.users import normalise_keys

MAX_ID_LENGTH: Final = 100  # WebEngage userId / anonymousId
SHARED: Final = "shared_anonymous_id"
SAME_ID: Final = "anonymous_id_is_user_id"
_KEY_PART: Final = 120


@dataclass(frozen=True, kw_only=True)
class Candidate:
    anonymous_id: str
    user_id: str
    identified_at: datetime | None


@dataclass
class Screened:
    """One chunk's outcome: pairs to send, pairs already merged, rejects, and counts."""

    send: list[Candidate] = field(default_factory=list)
    unchanged: int = 0
    pairs: int = 0  # distinct pairs in the chunk (the run's "extracted")
    rejects: list[RejectRow] = field(default_factory=list)
    shared_devices: int = 0  # anonymous ids seen with more than one valid user id


def pair_key(anonymous_id: str, user_id: str) -> str:
    """The rejects table's row key of a pair (printable, each id cut to 120 characters)."""
    return f"{_part(anonymous_id)} -> {_part(user_id)}"


def _part(value: str) -> str:
    return garbage.printable(value, _KEY_PART) if value else "(missing)"


def screen_pairs(
    chunk: pd.DataFrame,
    *,
    merged: Mapping[str, str],
    policy: SharedAnonymous,
    null_tokens: frozenset[str],
) -> Screened:
    """Screen one chunk. ``merged``: ``anonymous_id -> user_id`` already merged or journaled (this run's
    choices included, so an anonymous id split over two chunks still merges once)."""
    for column in ("anonymous_id", "user_id"):
        if column not in chunk:
            raise ConfigError("merges source", f"the query must return a column named {column}")
    out = Screened()
    anon = normalise_keys(chunk, "anonymous_id")
    user = normalise_keys(chunk, "user_id")
    when = (
        pd.to_datetime(chunk["identified_at"], utc=True, errors="coerce")
        if "identified_at" in chunk
        else pd.Series(pd.NaT, index=chunk.index, dtype="datetime64[ns, UTC]")
    )
    frame = pd.DataFrame({"a": anon, "u": user, "t": when})
    # One row per pair, its earliest identify first (missing times last), then by user id: a stable order.
    frame = frame.sort_values(["a", "t", "u"], na_position="last", kind="mergesort")
    frame = frame.drop_duplicates(["a", "u"], keep="first")
    out.pairs = len(frame)
    valid: dict[str, list[Candidate]] = {}
    for a, u, t in frame.itertuples(index=False, name=None):
        a_text = "" if pd.isna(a) else str(a)
        u_text = "" if pd.isna(u) else str(u)
        problem = _id_problem(a_text, "anonymous_id", null_tokens) or _id_problem(u_text, "user_id", null_tokens)
        if problem is not None:
            column, reason, detail = problem
            out.rejects.append(RejectRow(row_key=pair_key(a_text, u_text), column=column, reason=reason, detail=detail))
            continue
        if a_text == u_text:
            out.rejects.append(
                RejectRow(
                    row_key=pair_key(a_text, u_text),
                    column="anonymous_id",
                    reason=SAME_ID,
                    detail="the anonymous id is the user id: nothing to merge",
                )
            )
            continue
        stamp = None if pd.isna(t) else t.to_pydatetime()
        valid.setdefault(a_text, []).append(Candidate(anonymous_id=a_text, user_id=u_text, identified_at=stamp))
    for a_text, candidates in valid.items():
        _choose(a_text, candidates, merged.get(a_text), policy, out)
    return out


def _choose(anonymous_id: str, candidates: list[Candidate], before: str | None, policy: str, out: Screened) -> None:
    if len(candidates) > 1:
        out.shared_devices += 1
    if before is not None:
        chosen: Candidate | None = next((c for c in candidates if c.user_id == before), None)
        why = "already merged into another user (WebEngage cannot undo a merge)"
    elif len(candidates) == 1:
        chosen, why = candidates[0], ""
    elif policy == "first":
        chosen, why = candidates[0], "also identified as another user earlier (shared device); merged into the first"
    elif policy == "last":  # the last identified in time (an undated pair only when none is dated)
        dated = [c for c in candidates if c.identified_at is not None]
        chosen = dated[-1] if dated else candidates[-1]
        why = "also identified as another user later (shared device); merged into the last"
    else:
        chosen, why = None, f"identified as {len(candidates)} users (shared device); shared_anonymous_id = none"
    for c in candidates:
        if chosen is not None and c.user_id == chosen.user_id:
            if before is not None:
                out.unchanged += 1
            else:
                out.send.append(c)
            continue
        out.rejects.append(
            RejectRow(row_key=pair_key(anonymous_id, c.user_id), column="anonymous_id", reason=SHARED, detail=why)
        )


def _id_problem(value: str, column: str, tokens: frozenset[str]) -> tuple[str, str, str] | None:
    """(column, reason, detail) of an unusable id, or None."""
    if not value:
        return column, "missing_id", f"no {column}"
    if garbage.has_control(value):
        return column, garbage.CONTROL_CHARACTER_IN_ID, f"{column} holds a control character (an upstream bug?)"
    if garbage.is_null_like(value, tokens):
        return column, garbage.NULL_LIKE_ID, f"{column} {value!r} is a null-like token (str(None), NaN as text?)"
    if len(value) > MAX_ID_LENGTH:
        return column, f"{column}_too_long", f"{len(value)} characters; WebEngage allows {MAX_ID_LENGTH}"
    return None


def payload(candidate: Candidate) -> dict[str, Any]:
    """The /users body of a merge: both ids and nothing else, so no attribute is touched."""
    return {"userId": candidate.user_id, "anonymousId": candidate.anonymous_id}
