"""Backpressure in front of the LLM: a bounded admission queue with a wait limit.

At most ``concurrency`` turns run their chain (and so call the model) at once. Further turns wait
in a FIFO queue of at most ``depth`` turns, each for at most ``max_wait_s`` seconds. Beyond that
a turn is refused at once, before its chat-log row is accepted, with an error that says when to
come back:

==========================  ======  ==================  =========================================
what                        status  code                when
==========================  ======  ==================  =========================================
queue full                  429     ``server_busy``     ``depth`` turns are already waiting
waited too long             503     ``queue_timeout``   no slot freed within ``max_wait_s``
shutting down               503     ``shutting_down``   the server stops; queued turns are refused
==========================  ======  ==================  =========================================

Each carries ``Retry-After`` (seconds): the queue ahead of the client times the recent mean turn
time, divided by the concurrency, clamped to [1, :data:`MAX_RETRY_AFTER_S`]. Waiting costs no
thread: a queued turn is one future on the event loop.

The admission state lives on one event loop (the server's); a service used from several loops
must not share one :class:`Admission`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field

#: Error codes of a refused turn; a UI retries these after ``retry_after_s``.
BUSY_CODES = frozenset({"server_busy", "queue_timeout", "shutting_down"})
#: HTTP status of each refusal.
BUSY_STATUS = {"server_busy": 429, "queue_timeout": 503, "shutting_down": 503}
#: Upper bound (s) of the ``Retry-After`` a refused client is given.
MAX_RETRY_AFTER_S = 60
#: Mean turn time (s) assumed before any turn has finished.
_INITIAL_TURN_S = 5.0
#: Weight of the newest turn in the moving mean of turn times.
_ALPHA = 0.2


class Refused(Exception):
    """A turn was not admitted: ``code`` is one of :data:`BUSY_CODES`."""

    def __init__(self, code: str, message: str, retry_after_s: int, waited_s: float = 0.0) -> None:
        """Describe the refusal; ``retry_after_s`` is whole seconds, ``waited_s`` the time queued."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = BUSY_STATUS[code]
        self.retry_after_s = retry_after_s
        self.waited_s = waited_s


@dataclass
class AdmissionStats:
    """Counters since start: turns admitted and refused by reason, and the queue right now."""

    admitted: int = 0
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(sorted(BUSY_CODES), 0))
    running: int = 0
    waiting: int = 0
    mean_turn_s: float = _INITIAL_TURN_S


def retry_after(waiting: int, concurrency: int, mean_turn_s: float) -> int:
    """Seconds a refused client should wait: the queue ahead drained at ``concurrency`` turns at a time.

    Args:
        waiting: turns queued ahead of the client.
        concurrency: turns that run at once.
        mean_turn_s: recent mean time of one turn, seconds.

    Returns:
        Whole seconds in [1, :data:`MAX_RETRY_AFTER_S`].
    """
    rounds = (waiting + 1) / max(1, concurrency)
    seconds = rounds * max(0.0, mean_turn_s)
    if not math.isfinite(seconds):
        return MAX_RETRY_AFTER_S
    return int(min(MAX_RETRY_AFTER_S, max(1, math.ceil(seconds))))


class Admission:
    """A bounded FIFO admission queue: ``concurrency`` slots, ``depth`` waiters, ``max_wait_s`` each."""

    def __init__(self, concurrency: int, depth: int, max_wait_s: float) -> None:
        """Args: concurrency >= 1 turns at once; depth >= 0 turns queued; max_wait_s > 0 per turn."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if depth < 0:
            raise ValueError("queue depth must be 0 or more")
        self.concurrency = concurrency
        self.depth = depth
        self.max_wait_s = max_wait_s
        self.stats = AdmissionStats()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def _retry_after(self) -> int:
        return retry_after(len(self._waiters), self.concurrency, self.stats.mean_turn_s)

    def _refuse(self, code: str, message: str, waited_s: float = 0.0) -> Refused:
        self.stats.refused[code] = self.stats.refused.get(code, 0) + 1
        wait = self._retry_after()
        return Refused(code, message.format(wait=wait), wait, waited_s)

    async def acquire(self) -> float:
        """Wait for a slot; returns the seconds spent queued.

        Raises:
            Refused: the queue is full, the wait exceeded ``max_wait_s``, or the queue is closed.
            asyncio.CancelledError: the caller was cancelled while queued (its place is given up).
        """
        if self._closed:
            raise self._refuse("shutting_down", "The server is shutting down: please try again in {wait} s.")
        if self.stats.running < self.concurrency and not self._waiters:
            self.stats.running += 1
            self.stats.admitted += 1
            return 0.0
        if len(self._waiters) >= self.depth:
            raise self._refuse(
                "server_busy",
                "The assistant is busy answering other questions (the queue is full): "
                "please try again in {wait} s.",
            )
        started = time.perf_counter()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self.stats.waiting = len(self._waiters)
        try:
            done, _ = await asyncio.wait({fut}, timeout=self.max_wait_s)
        except asyncio.CancelledError:
            self._abandon(fut)
            raise
        waited = time.perf_counter() - started
        if not done:
            self._abandon(fut)
            raise self._refuse(
                "queue_timeout",
                f"The assistant is busy: no answer slot freed up within {self.max_wait_s:g} s. "
                "Please try again in {wait} s.",
                waited,
            )
        if fut.exception() is not None:  # closed while queued
            raise self._refuse(
                "shutting_down", "The server is shutting down: please try again in {wait} s.", waited
            )
        self.stats.admitted += 1
        return waited

    def _abandon(self, fut: asyncio.Future[None]) -> None:
        """A waiter leaves: give back a slot handed to it meanwhile, else drop it from the queue."""
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self.release(None)
            return
        fut.cancel()
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass
        self.stats.waiting = len(self._waiters)

    def release(self, turn_s: float | None) -> None:
        """Free a slot (hand it to the next waiter); ``turn_s`` updates the mean turn time."""
        if turn_s is not None and turn_s >= 0:
            self.stats.mean_turn_s = (1 - _ALPHA) * self.stats.mean_turn_s + _ALPHA * turn_s
        while self._waiters:
            fut = self._waiters.popleft()
            self.stats.waiting = len(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the slot passes on: ``running`` stays the same
                return
        self.stats.running = max(0, self.stats.running - 1)

    def close(self) -> int:
        """Refuse queued and new turns (at shutdown); returns how many queued turns were refused."""
        self._closed = True
        refused = 0
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("closed"))
                refused += 1
        self.stats.waiting = 0
        return refused

    def snapshot(self) -> dict[str, object]:
        """The settings and counters, for the readiness view and the load benchmark."""
        s = self.stats
        return {
            "concurrency": self.concurrency,
            "depth": self.depth,
            "max_wait_s": self.max_wait_s,
            "running": s.running,
            "waiting": len(self._waiters),
            "admitted": s.admitted,
            "refused": dict(s.refused),
            "mean_turn_s": round(s.mean_turn_s, 3),
        }
