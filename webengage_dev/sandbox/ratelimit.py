"""Sliding 60-second request windows, one per budget key, as WebEngage's per-minute limits behave."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

WINDOW_S = 60.0


class Decision(NamedTuple):
    """Outcome of one :meth:`SlidingWindowLimiter.check`; ``limit`` 0 means unlimited."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float


class SlidingWindowLimiter:
    """Counts admitted requests per key over the last 60 s. Refused requests do not count."""

    def __init__(self, limits: Mapping[str, int | None]) -> None:
        self._lock = threading.Lock()
        self._limits: dict[str, int] = {}
        self._admitted: dict[str, deque[float]] = {}
        self.set_limits(limits)

    def set_limits(self, limits: Mapping[str, int | None]) -> None:
        """Change limits at runtime; requests already admitted stay in their windows."""
        with self._lock:
            self._limits = {key: int(value or 0) for key, value in limits.items()}

    def check(self, key: str, now: float) -> Decision:
        """Admit (and count) one request for ``key`` at monotonic time ``now``, or refuse it."""
        with self._lock:
            limit = self._limits.get(key, 0)
            if limit <= 0:
                return Decision(True, 0, 0, 0.0)
            window = self._admitted.setdefault(key, deque())
            while window and now - window[0] >= WINDOW_S:
                window.popleft()
            if len(window) >= limit:
                # Capacity frees when the oldest admitted request leaves the window.
                return Decision(False, limit, 0, max(window[0] + WINDOW_S - now, 0.0))
            window.append(now)
            return Decision(True, limit, limit - len(window), 0.0)

    def refund(self, key: str) -> None:
        """Un-count the latest admitted request of ``key`` (it was answered 429 after all)."""
        with self._lock:
            window = self._admitted.get(key)
            if window:
                window.pop()

    def reset(self) -> None:
        with self._lock:
            self._admitted.clear()
