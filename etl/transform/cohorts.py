"""Cohorts: the pure membership logic (screening ids, the diff against the accepted snapshot, the
blast-radius guard) and the payloads. The config model and its loading are in :mod:`etl.mappings.cohorts`.

A cohort reaches WebEngage as one custom boolean user attribute (``true`` for members, ``false`` for users
who left).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from etl.errors import GuardStop

if TYPE_CHECKING:
    import pandas as pd

Transition = Literal["entered", "exited"]

MAX_ID_LENGTH: Final = 100
ENTERED_EVENT: Final = "Cohort Entered"
EXITED_EVENT: Final = "Cohort Exited"
EVENT_NAMES: Final[dict[Transition, str]] = {"entered": ENTERED_EVENT, "exited": EXITED_EVENT}


class GuardError(GuardStop):
    """A sync would flip too many members to ``false`` at once; nothing was sent."""

    def __init__(self, cohort: str, reason: str) -> None:
        self.cohort = cohort
        self.reason = reason
        super().__init__(
            f"cohort {cohort}: stopped before sending: {reason}. If this is intended, re-run with override_guard "
            "(CLI --override-guard, DAG param override_guard)"
        )


# -- membership ---------------------------------------------------------------------------------------
def screen_ids(values: pd.Series, *, null_tokens: Iterable[str] | None = None) -> tuple[pd.Series, Counter[str]]:
    """Usable user ids (stripped strings) and the count of excluded rows by reason.

    Only identified users are exported: a NULL id (anonymous-only row) is ``anonymous``; a blank one
    ``empty_user_id``; one over 100 characters ``user_id_too_long`` (WebEngage's userId limit); a null-like
    token (``"null"``, ``"None"``, ``"nan"``: the ``null_tokens`` setting) ``null_like_id``; one with a
    control character ``control_character_in_id`` (as the profile and event syncs refuse them)."""
    import pandas as pd

    from etl.transform.formats import garbage  # pandas: imported when used (DAG files import this module)

    tokens = garbage.null_tokens(garbage.DEFAULT_NULL_TOKENS if null_tokens is None else null_tokens)

    raw = values
    if pd.api.types.is_float_dtype(raw.dtype):
        whole = raw.dropna()
        if (whole == whole.round()).all():
            raw = raw.astype("Int64")  # 42.0 -> "42", as the profile sync keys it
    missing = raw.isna()
    text = raw.astype("string").str.strip()
    empty = ~missing & (text == "")
    control = ~missing & garbage.control_mask(text)
    null_like = ~missing & ~control & garbage.null_like_mask(text, tokens)
    too_long = ~missing & ~control & ~null_like & (text.str.len() > MAX_ID_LENGTH)
    excluded: Counter[str] = Counter()
    for reason, mask in (
        ("anonymous", missing),
        ("empty_user_id", empty),
        ("user_id_too_long", too_long),
        (garbage.NULL_LIKE_ID, null_like),
        (garbage.CONTROL_CHARACTER_IN_ID, control),
    ):
        count = int(mask.sum())
        if count:
            excluded[reason] = count
    keep = ~(missing | empty | too_long | null_like | control)
    return text[keep].astype(str), excluded


@dataclass(frozen=True, kw_only=True)
class MembershipDiff:
    """What a sync sends. ``entered``/``exited`` are membership changes against the accepted snapshot;
    ``resend_true``/``resend_false`` repair users whose last flip was sent but never confirmed."""

    entered: list[str]
    exited: list[str]
    unchanged: int
    resend_true: list[str]
    resend_false: list[str]

    @property
    def flips(self) -> int:
        return len(self.entered) + len(self.exited) + len(self.resend_true) + len(self.resend_false)


def diff_members(current: Sequence[str], *, members: Sequence[str], in_doubt: Sequence[str] = ()) -> MembershipDiff:
    """Compare the current (deduplicated) members with the snapshot WebEngage accepted.

    ``in_doubt``: users with a flip sent but unconfirmed (a crash mid-send); their WebEngage value is
    unknown, so each gets its current value again: members ``true``, the others ``false``."""
    now, before, doubt = set(current), set(members), set(in_doubt)
    entered = sorted(now - before)
    exited = sorted(before - now)
    stay = now & before
    resend_true = sorted(stay & doubt)
    resend_false = sorted(doubt - now - before)
    return MembershipDiff(
        entered=entered,
        exited=exited,
        unchanged=len(stay) - len(resend_true),
        resend_true=resend_true,
        resend_false=resend_false,
    )


def guard_problem(*, cohort: str, previous: int, members: int, exited: int, max_exit_share: float) -> str | None:
    """Why the blast-radius guard stops this sync, or None."""
    if previous == 0:
        return None
    if members == 0:
        return f"the query returned no members, but {previous:,} users are in cohort {cohort} in WebEngage"
    share = exited / previous
    if share > max_exit_share:
        return (
            f"{exited:,} of {previous:,} members ({share:.0%}) would leave cohort {cohort}, more than its "
            f"max_exit_share of {max_exit_share:.0%}"
        )
    return None


def attribute_payload(user_id: str, attribute: str, value: bool) -> dict[str, Any]:
    """One /bulk-users item: only this attribute is written; the rest of the profile is left alone."""
    return {"userId": user_id, "attributes": {attribute: value}}


def event_payload(user_id: str, cohort: str, transition: Transition, event_time: str) -> dict[str, Any]:
    """One /bulk-events item (``Cohort Entered`` / ``Cohort Exited``) carrying the cohort's name."""
    return {
        "userId": user_id,
        "eventName": EVENT_NAMES[transition],
        "eventTime": event_time,
        "eventData": {"cohort": cohort},
    }
