"""The one WebEngage client: pacing, retries, classification and concurrency live here and nowhere else."""

from __future__ import annotations

import itertools
import logging
import math
import queue
import random
import threading
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import httpx

from etl.errors import TerminalAPIError
from etl.webengage.auth import BearerAuth
from etl.webengage.clock import Clock, SystemClock
from etl.webengage.models import (
    BULK_ENDPOINTS,
    ENDPOINTS,
    ClientStats,
    Endpoint,
    Fetched,
    K,
    Outcome,
    SendRequest,
    SendResult,
)
from etl.webengage.options import ClientOptions
from etl.webengage.ratelimit import RateBudgets
from etl.webengage.retry import RetryPolicy, Verdict
from etl.webengage.shared_budget import BudgetStore

log = logging.getLogger(__name__)


class WebEngageClient:
    """Sends :class:`SendRequest` objects to one WebEngage account, thread-safely.

    Every attempt first takes a token from the endpoint's rate budget; answers are classified by
    :class:`RetryPolicy`; ``X-RateLimit-*`` headers re-sync the budget. Terminal failures raise
    :class:`~etl.errors.TerminalAPIError` after one request. Logs and errors carry endpoint, status,
    request id and counts only: never the key, never a body.
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        budget_store: BudgetStore | None = None,
    ) -> None:
        settings = options
        self._settings = options
        self._clock: Clock = clock or SystemClock()
        self._policy = RetryPolicy(settings, rng)
        # A shared budget store (the engine passes one when shared_budget_url is set) paces every worker together.
        self._budgets = RateBudgets(settings, self._clock, store=budget_store)
        # Requests submitted by send_many and not finished, per endpoint (read by the overflow lane).
        self._in_flight: dict[Endpoint, int] = dict.fromkeys(ENDPOINTS, 0)
        self._in_flight_lock = threading.Lock()
        # primary endpoint -> the endpoint an OverflowLane mixes into its streams.
        self._overflow: dict[Endpoint, Endpoint] = {}
        self._stats = ClientStats()
        # Endpoints whose path is a setting (WebEngage's GDPR path is unconfirmed); the rest are their name.
        self._paths: dict[Endpoint, str] = {"opengdpr_requests": settings.gdpr_path.strip("/")}
        self._auth = BearerAuth(settings.api_key)
        # Until the host has answered once, a refused connection means a wrong host (terminal).
        self._had_response = False
        # Until the API has judged one request's content (accepted or rejected it), host, license and key
        # are unproven: send_many keeps one request in flight. Any answer is not enough: a 401/403/404
        # arrives as a response too, and a burst sent before its verdict is read would be a retry storm.
        self._verified = False
        pool = max(self.concurrency_for(endpoint) for endpoint in ENDPOINTS)
        if settings.overflow_lane:  # a bulk stream may carry the single lane's requests too
            pool += self.concurrency_for("users")
        self._http = httpx.Client(
            base_url=settings.account_url,
            auth=self._auth,
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,  # a redirect means a wrong host; never re-send data elsewhere
        )

    # -- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> WebEngageClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._budgets.close()

    def __repr__(self) -> str:
        host = httpx.URL(self._settings.base_url).host
        return f"WebEngageClient(host={host!r}, license_code={self._settings.license_code!r})"

    # -- introspection -------------------------------------------------------------------------------
    @property
    def account_url(self) -> str:
        return self._settings.account_url

    @property
    def stats(self) -> ClientStats:
        return self._stats

    @property
    def budgets(self) -> RateBudgets:
        return self._budgets

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    def concurrency_for(self, endpoint: Endpoint) -> int:
        """Requests to keep in flight for ``endpoint``.

        Enough to spend the whole budget when each call takes ``expected_latency_s`` (rate × latency,
        +50 % and one spare), never more: the token bucket sets the rate, this only stops latency from
        starving it. ``settings.concurrency`` > 0 overrides; ``max_in_flight`` caps both.
        """
        s = self._settings
        if s.concurrency > 0:
            wanted = s.concurrency
        else:
            wanted = math.ceil(self._budgets.rate_per_s(endpoint) * s.expected_latency_s * 1.5) + 1
        return max(1, min(wanted, s.max_in_flight))

    def stream_width(self, endpoint: Endpoint) -> int:
        """Default width of a :meth:`send_many` stream whose first request goes to ``endpoint``: its
        :meth:`concurrency_for`, plus the overflow endpoint's while an overflow lane feeds that stream."""
        width = self.concurrency_for(endpoint)
        overflow = self._overflow.get(endpoint)
        return width + self.concurrency_for(overflow) if overflow is not None else width

    def in_flight(self, endpoint: Endpoint) -> int:
        """Requests to ``endpoint`` submitted by :meth:`send_many` and not finished (waiting for a token
        counts). Exact on the thread that iterates send_many: it is updated before each result is yielded."""
        with self._in_flight_lock:
            return self._in_flight[endpoint]

    def attach_overflow(self, primary: Endpoint, overflow: Endpoint) -> None:
        """Let streams starting with ``primary`` also carry ``overflow`` requests (see :mod:`.overflow`)."""
        self._overflow[primary] = overflow

    def detach_overflow(self, primary: Endpoint) -> None:
        self._overflow.pop(primary, None)

    def path_of(self, endpoint: Endpoint) -> str:
        """The endpoint's path under the account URL."""
        return self._paths.get(endpoint, endpoint)

    def _track(self, endpoint: Endpoint, delta: int) -> None:
        with self._in_flight_lock:
            self._in_flight[endpoint] += delta

    # -- sending -------------------------------------------------------------------------------------
    def check_credentials(self) -> tuple[int | None, Verdict]:
        """One call that carries no data and proves host, license code and key: ``POST …/users`` with an empty
        object, which WebEngage refuses ("userId and anonymousId cannot be empty", a 400) after it has found the
        account and accepted the key, so nothing is ingested. Returns the verdict: ``rejected`` or ``accepted``
        = the API judged the body (credentials good); ``terminal`` = refused (401/403/404, wrong host; with the
        fix); ``transient``/``throttled`` = could not tell. Never retried; paced on the ``users`` budget.
        Returns the HTTP status (None without an answer) and the verdict."""
        status: int | None = None
        self._budgets["users"].acquire()
        self._stats.add(credential_checks=1)
        try:
            response = self._http.post("users", content=b"{}")
        except httpx.TransportError as exc:
            self._stats.count_status("transport_error")
            verdict = self._policy.classify_error(exc, first_contact=not self._had_response, verified=False)
        else:
            self._had_response = True
            status = response.status_code
            self._stats.count_status(status)
            verdict = self._policy.classify(status, response.content, verified=False)
        message = self._auth.scrub(verdict.message) if verdict.message else verdict.message
        log.debug("webengage credential check: HTTP %s, %s (%s)", status, verdict.kind, message)
        return status, Verdict(verdict.kind, message, verdict.hint)

    def send(self, request: SendRequest[K]) -> SendResult[K]:
        """Send one request with pacing and retries; returns its outcome or raises TerminalAPIError."""
        return self._send(request, None)

    def send_many(
        self, requests: Iterable[SendRequest[K]], *, concurrency: int | None = None
    ) -> Generator[SendResult[K], None, None]:
        """Send ``requests`` with up to ``concurrency`` in flight; yield results in completion order.

        The iterable is pulled lazily (at most ``concurrency`` requests ahead of the results yielded),
        and results are yielded on the caller's thread so it can checkpoint each one there. The default
        width is :meth:`stream_width` of the first request's endpoint. On TerminalAPIError (or an error
        from the iterable) nothing more is submitted; requests in flight finish and are yielded, then the
        error is raised. Closing the generator early stops further attempts and joins the worker threads;
        results still in flight then are dropped (their batches stay unsent and are re-driven next run).
        """
        source = iter(requests)
        first = next(source, None)
        if first is None:
            return
        width = max(1, concurrency) if concurrency else self.stream_width(first.endpoint)
        pending = itertools.chain((first,), source)
        # Workers post their own future here when done, so results come out in true completion order.
        finished: queue.SimpleQueue[Future[SendResult[K]]] = queue.SimpleQueue()
        cancel = threading.Event()
        failure: BaseException | None = None
        exhausted = False
        in_flight = 0
        # A request counts as in flight for its endpoint until its result is taken here, not merely finished:
        # the overflow lane reads the count, and a finished but unsettled batch is still accepted-but-not-
        # checkpointed (what a crash would re-send), so it must keep its lane's slot.
        endpoints: dict[Future[SendResult[K]], Endpoint] = {}
        executor = ThreadPoolExecutor(max_workers=width, thread_name_prefix="webengage-send")
        try:
            while True:
                # Until the API has accepted or rejected one request, send one at a time: a wrong key, host
                # or license then costs exactly one request, not a burst of `width` doomed ones.
                while not exhausted and failure is None and in_flight < (width if self._verified else 1):
                    try:
                        request = next(pending, None)
                    except Exception as exc:  # the caller's iterable failed: drain, then re-raise it
                        failure = exc
                        break
                    if request is None:
                        exhausted = True
                        break
                    self._track(request.endpoint, 1)
                    future = executor.submit(self._send, request, cancel)
                    endpoints[future] = request.endpoint
                    future.add_done_callback(finished.put)
                    in_flight += 1
                if in_flight == 0:
                    break
                done = finished.get()
                in_flight -= 1
                self._track(endpoints.pop(done), -1)  # before the caller sees the result: never a stale count
                error = done.exception()
                if error is not None:
                    failure = failure or error  # the first failure is raised; later ones are the same story
                    continue
                yield done.result()
            if failure is not None:
                raise failure
        finally:
            cancel.set()
            executor.shutdown(wait=True, cancel_futures=True)
            for endpoint in endpoints.values():  # closed early: results never taken
                self._track(endpoint, -1)

    def fetch(self, endpoint: Endpoint, suffix: str) -> Fetched:
        """``GET <endpoint path>/<suffix>`` on the endpoint's budget (status checks): 429s are waited out,
        5xx and transport failures retried; 401/403 raise TerminalAPIError. Returns the last answer's status
        (None: no answer) and its JSON object (None: not one); the caller reads it."""
        s = self._settings
        bucket = self._budgets[endpoint]
        path = f"{self.path_of(endpoint)}/{suffix}"
        attempts = 0
        throttle_wait = 0.0
        while True:
            bucket.acquire()
            self._stats.add(requests=1)
            try:
                response = self._http.get(path)
            except httpx.TransportError as exc:
                self._stats.count_status("transport_error")
                verdict = self._policy.classify_error(exc, first_contact=not self._had_response)
                if verdict.kind == "terminal":
                    raise TerminalAPIError(
                        verdict.message or "no answer",
                        status_code=None,
                        endpoint=f"GET {s.account_url}/{path}",
                        hint=verdict.hint,
                    ) from None
                attempts += 1
                if attempts > s.max_retries:
                    return Fetched(None, None)
                self._clock.sleep(self._policy.backoff(attempts - 1))
                continue
            self._had_response = True
            self._stats.count_status(response.status_code)
            status = response.status_code
            if status == 429:
                self._stats.add(throttled=1)
                delay = self._policy.throttle_delay(response.headers.get("retry-after"), self._clock.time())
                bucket.pause_for(delay)
                throttle_wait += delay
                if throttle_wait > s.max_throttle_wait_s:
                    return Fetched(status, None)
                continue
            if status in (401, 403):
                verdict = self._policy.classify(status, response.content)
                raise TerminalAPIError(
                    self._auth.scrub(verdict.message or f"HTTP {status}"),
                    status_code=status,
                    endpoint=f"GET {s.account_url}/{self.path_of(endpoint)}",
                    hint=verdict.hint,
                )
            if status >= 500 and attempts < s.max_retries:
                attempts += 1
                self._stats.add(retries=1)
                self._clock.sleep(self._policy.backoff(attempts - 1))
                continue
            try:
                data = response.json()
            except ValueError:
                data = None
            return Fetched(status, data if isinstance(data, dict) else None)

    def _send(self, request: SendRequest[K], cancel: threading.Event | None) -> SendResult[K]:
        s = self._settings
        started = self._clock.monotonic()
        attempts = throttled = 0
        throttle_wait = 0.0
        status: int | None = None

        def finish(outcome: Outcome, message: str | None) -> SendResult[K]:
            result = SendResult[Any](
                request=request,
                outcome=outcome,
                status_code=status,
                message=self._auth.scrub(message) if message else None,
                attempts=attempts,
                throttled=throttled,
                elapsed_s=self._clock.monotonic() - started,
            )
            self._stats.add(**{outcome: 1}, items_accepted=request.items if outcome == "accepted" else 0)
            level = logging.DEBUG if outcome == "accepted" else logging.WARNING
            log.log(
                level,
                "webengage %s %s: request_id=%s items=%d status=%s attempts=%d throttled=%d",
                request.endpoint,
                outcome,
                request.request_id,
                request.items,
                status,
                attempts,
                throttled,
            )
            return result

        if len(request.body) > s.max_batch_bytes:
            # The batcher should never build this; reject it rather than let WebEngage truncate or 413 it.
            return finish("rejected", f"request body of {len(request.body)} bytes exceeds max_batch_bytes")

        bucket = self._budgets[request.endpoint]
        headers = {}
        if request.request_id and (request.endpoint not in BULK_ENDPOINTS or s.request_id_on_bulk):
            headers["x-request-id"] = request.request_id
        self._stats.add(items_sent=request.items)
        while True:
            if cancel is not None and cancel.is_set():
                return finish("transient", "cancelled before sending")
            bucket.acquire()
            response, verdict = self._attempt(request, headers)
            status = response.status_code if response is not None else None
            if verdict.kind == "throttled":
                throttled += 1
                self._stats.add(throttled=1)
                retry_after = response.headers.get("retry-after") if response is not None else None
                delay = self._policy.throttle_delay(retry_after, self._clock.time())
                bucket.pause_for(delay)  # every thread of this budget waits, not only this one
                if throttle_wait + delay > s.max_throttle_wait_s:
                    return finish("transient", f"still throttled (429) after {throttle_wait:.0f}s of waiting")
                throttle_wait += delay
                continue  # the wait happens in the next acquire(); a 429 is not an attempt
            attempts += 1
            if verdict.kind == "accepted":
                self._verified = True
                return finish("accepted", None)
            if verdict.kind == "rejected":
                self._verified = True
                return finish("rejected", verdict.message)
            if verdict.kind == "terminal":
                raise self._terminal(request, status, verdict)
            if attempts > s.max_retries:
                return finish("transient", verdict.message)
            delay = self._policy.backoff(attempts - 1)
            self._stats.add(retries=1)
            log.warning(
                "webengage %s transient failure, retrying in %.2fs: request_id=%s items=%d status=%s attempt=%d/%d",
                request.endpoint,
                delay,
                request.request_id,
                request.items,
                status,
                attempts,
                s.max_retries + 1,
            )
            self._clock.sleep(delay)

    def _attempt(self, request: SendRequest[Any], headers: dict[str, str]) -> tuple[httpx.Response | None, Verdict]:
        """One HTTP call, counted and classified; a transport error becomes a verdict, not an exception."""
        self._stats.add(requests=1, bytes_sent=len(request.body))
        try:
            response = self._http.post(self.path_of(request.endpoint), content=request.body, headers=headers)
        except httpx.TransportError as exc:
            self._stats.count_status("transport_error")
            verdict = self._policy.classify_error(exc, first_contact=not self._had_response, verified=self._verified)
            log.debug(
                "webengage %s transport error %s: request_id=%s items=%d",
                request.endpoint,
                type(exc).__name__,
                request.request_id,
                request.items,
            )
            return None, verdict
        self._had_response = True
        self._stats.count_status(response.status_code)
        # A 429 sets its own pause in _send (Retry-After, else the minute boundary), so its Remaining
        # (always 0) must not add a second, longer one; the limit is still recorded.
        throttled = response.status_code == 429
        self._budgets[request.endpoint].observe(
            _header_number(response, "x-ratelimit-limit"),
            None if throttled else _header_number(response, "x-ratelimit-remaining"),
            self._clock.time(),
        )
        log.debug(
            "webengage %s -> %d: request_id=%s items=%d bytes=%d",
            request.endpoint,
            response.status_code,
            request.request_id,
            request.items,
            len(request.body),
        )
        return response, self._policy.classify(response.status_code, response.content, verified=self._verified)

    def _terminal(self, request: SendRequest[Any], status: int | None, verdict: Verdict) -> TerminalAPIError:
        self._stats.add(terminal=1)
        shown = f"HTTP {status}" if status is not None else "no answer"
        hint = verdict.hint
        if request.endpoint in self._paths and status == 404:  # a configurable path may be the wrong one
            hint = f"{hint}; or the path of this endpoint ({self.path_of(request.endpoint)}: WEBENGAGE_GDPR_PATH)"
        message = self._auth.scrub(
            f"{shown} (request_id={request.request_id}, items={request.items}): {verdict.message}"
        )
        log.error("webengage %s terminal failure: %s", request.endpoint, message)
        return TerminalAPIError(
            message,
            status_code=status,
            endpoint=f"POST {self._settings.account_url}/{self.path_of(request.endpoint)}",
            hint=hint,
        )


def _header_number(response: httpx.Response, name: str) -> float | None:
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
