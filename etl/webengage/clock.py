"""Injected time: the client never calls ``time`` directly, so tests run on a fake clock in no wall time."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for pacing, wall time for minute boundaries, and a sleep."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock whose ``sleep`` advances time instantly and is recorded in :attr:`sleeps`. Thread-safe.

    ``start`` is the wall time (epoch seconds); the default is exactly on a minute boundary. Time is
    shared: sleeps from several threads add up, so pace-timing tests should send from one thread.
    """

    def __init__(self, *, start: float = 1_800_000_000.0, monotonic_start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._mono = monotonic_start
        self._wall_offset = start - monotonic_start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def time(self) -> float:
        with self._lock:
            return self._mono + self._wall_offset

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        with self._lock:
            self.sleeps.append(seconds)
            self._mono += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep (time passing elsewhere)."""
        with self._lock:
            self._mono += seconds

    @property
    def slept(self) -> float:
        with self._lock:
            return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self.monotonic():.3f})"


def seconds_to_next_minute(wall: float) -> float:
    """Seconds from ``wall`` to the next minute boundary; a full minute when exactly on one.

    Strictly the *next* boundary: WebEngage's window semantics are unconfirmed, so never assume a
    window that may have just started is fresh.
    """
    return (math.floor(wall / 60.0) + 1) * 60.0 - wall
