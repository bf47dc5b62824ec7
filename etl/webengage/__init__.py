"""The WebEngage REST client: every quirk of the API (pacing, retries, classification) lives here."""

from etl.webengage.auth import BearerAuth
from etl.webengage.client import (
    WebEngageClient,
)
from etl.webengage.clock import Clock, FakeClock, SystemClock, seconds_to_next_minute
from etl.webengage.models import (
    BULK_ENDPOINTS,
    ENDPOINTS,
    ClientStats,
    Endpoint,
    EventPayload,
    Outcome,
    SendRequest,
    SendResult,
    UserPayload,
    deterministic_request_id,
)
from etl.webengage.overflow import OverflowLane
from etl.webengage.ratelimit import Bucket, RateBudgets, TokenBucket
from etl.webengage.retry import Classification, RetryPolicy, Verdict, parse_retry_after
from etl.webengage.shared_budget import (
    BudgetStore,
    MemoryBudgetStore,
    SharedBudgetError,
    SharedTokenBucket,
)

__all__ = [
    "BULK_ENDPOINTS",
    "ENDPOINTS",
    "BearerAuth",
    "Bucket",
    "BudgetStore",
    "Classification",
    "ClientStats",
    "Clock",
    "Endpoint",
    "EventPayload",
    "FakeClock",
    "MemoryBudgetStore",
    "Outcome",
    "OverflowLane",
    "RateBudgets",
    "RetryPolicy",
    "SendRequest",
    "SendResult",
    "SharedBudgetError",
    "SharedTokenBucket",
    "SystemClock",
    "TokenBucket",
    "UserPayload",
    "Verdict",
    "WebEngageClient",
    "deterministic_request_id",
    "parse_retry_after",
    "seconds_to_next_minute",
]
