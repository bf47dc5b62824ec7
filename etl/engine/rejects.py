"""The reject policy, once for every sync: the kinds, the reasons the engine itself assigns, and how a
send result becomes a reject.

* ``data``: the row is wrong (fix it in the warehouse; it goes out by itself once fixed). Never re-driven
  and never dead.
* ``api``: WebEngage refused it (HTTP 400 on a single item after bisection). Re-driven by later runs.
* ``transient``: no verdict (timeouts, 5xx after retries). Re-driven by later runs.

API and transient rejects that have been re-driven ``max_reject_attempts`` times become ``dead`` and are
skipped until ``webengage-sync rejects retry`` (the state store applies the rule, for every pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # the policy is plain data at run time: transforms import it without the client
    from etl.webengage.models import SendResult

#: Whole-row rejects use this column name.
ROW: Final = "*"


@dataclass(frozen=True, kw_only=True)
class RejectRow:
    """One rejected row or value (never its data): row key, column (:data:`ROW` for the whole row), reason,
    a detail for humans, and its :class:`RejectKind`."""

    row_key: str
    column: str
    reason: str
    detail: str = ""
    kind: str = "data"


class RejectKind(StrEnum):
    DATA = "data"
    API = "api"
    TRANSIENT = "transient"


class Reason(StrEnum):
    """Reasons the engine assigns (transforms add their own, e.g. ``invalid_phone``)."""

    TRANSIENT_FAILURE = "transient_failure"
    API_REJECTED = "api_rejected"
    #: One item alone is over ``max_batch_bytes``: the row's data is too big, whichever sync sent it.
    PAYLOAD_TOO_LARGE = "payload_too_large"
    DEAD_AFTER_RETRIES = "dead_after_retries"


#: Kinds a later run sends again (and that can become dead).
REDRIVEN: Final = frozenset({RejectKind.API.value, RejectKind.TRANSIENT.value})


#: (reason, kind, detail) as plain strings: they go into counters, JSON summaries and the rejects table.
Verdict = tuple[str, str, str]


def classify(result: SendResult[Any]) -> Verdict:
    """The reject a failed send result stands for: reason, kind and a detail without payload data."""
    detail = f"HTTP {result.status_code}: {result.message or ''}"[:500]
    if result.outcome == "transient":
        return Reason.TRANSIENT_FAILURE.value, RejectKind.TRANSIENT.value, detail
    return Reason.API_REJECTED.value, RejectKind.API.value, detail


def too_large(max_batch_bytes: int, what: str = "item") -> Verdict:
    """The reject of an item that alone is over the byte cap (a data problem: resending cannot help)."""
    detail = f"one {what} is over max_batch_bytes={max_batch_bytes}"
    return Reason.PAYLOAD_TOO_LARGE.value, RejectKind.DATA.value, detail
