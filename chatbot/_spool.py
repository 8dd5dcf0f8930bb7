"""The chat log down: refuse what was not accepted, keep what was (issue 12, "Faults").

Policy (docs/architecture.md, "The chat log down"):

- A turn is *accepted* once its ``in_progress`` row is in the chat log (the client then gets the
  ``started`` event). Before that, a chat-log failure refuses the turn with HTTP 503
  ``chatlog_unavailable`` and ``Retry-After``: nothing was stored and the user is told so.
  Feedback, new conversations and every other write are refused the same way.
- An accepted turn whose final write fails (the database went away while the model answered)
  still gets its answer; the write goes to a :class:`ChatlogSpool`, which retries it with
  backoff until the database is back. The spool is bounded (``max_items``) and lives in the app
  process: a crash of the app during the outage loses the spooled outcomes, and the turn's row
  stays ``in_progress`` until ``close_interrupted_turns`` marks it at the next start.

``/readyz`` shows the spool (``chatlog_spool``: pending, written, dropped).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

#: Errors that mean "the database cannot be reached right now" (not a bad row): connection
#: refused or dropped, server gone, pool exhausted. Integrity errors are not among them.
DB_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
#: Seconds a client is told to wait (Retry-After) while the chat log is down.
CHATLOG_RETRY_AFTER_S = 5
CHATLOG_UNAVAILABLE = "chatlog_unavailable"
CHATLOG_MESSAGE = (
    "The chat history store is unavailable right now, so this was not saved. "
    f"Please try again in {CHATLOG_RETRY_AFTER_S} s."
)


def is_db_outage(exc: BaseException | None) -> bool:
    """True for an error that says the chat-log database is unreachable (see :data:`DB_UNAVAILABLE`)."""
    return isinstance(exc, DB_UNAVAILABLE)


class ChatlogSpool:
    """Chat-log writes of accepted turns, retried in a daemon thread until they land.

    Each item is a callable that performs one write (``chatlog.finish_turn(turn_id, **row)``).
    Writes are retried in order with exponential backoff (``initial_s`` doubling up to ``max_s``)
    while they fail with :data:`DB_UNAVAILABLE`; any other error is logged with the turn id and
    the item dropped (it can never succeed). At most ``max_items`` wait: past that a new item is
    dropped and logged at ERROR level, never silently.
    """

    def __init__(self, *, max_items: int = 10_000, initial_s: float = 0.2, max_s: float = 5.0) -> None:
        """Args: max_items bound on waiting writes; initial_s, max_s the retry backoff, seconds."""
        self.max_items = max_items
        self.initial_s = initial_s
        self.max_s = max_s
        self._items: deque[tuple[str, Callable[[], None]]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0  # spooled writes that landed
        self.dropped = 0  # writes given up (spool full, or a non-outage error)

    def put(self, key: str, write: Callable[[], None]) -> bool:
        """Keep ``write`` (named ``key``, a turn id) until it lands; False when the spool is full."""
        with self._lock:
            if len(self._items) >= self.max_items:
                self.dropped += 1
                log.error(
                    "chat-log spool full (%d writes): the outcome of turn %s is lost", self.max_items, key
                )
                return False
            self._items.append((key, write))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="chatlog-spool", daemon=True)
                self._thread.start()
        log.warning("chat log unavailable: turn %s kept in the spool until it is back", key)
        self._wake.set()
        return True

    @property
    def pending(self) -> int:
        """Writes waiting for the database."""
        return len(self._items)

    def snapshot(self) -> dict[str, Any]:
        """``{"pending", "written", "dropped"}`` for ``/readyz``."""
        return {"pending": self.pending, "written": self.written, "dropped": self.dropped}

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait up to ``timeout_s`` for every spooled write to land; True when none is left."""
        deadline = time.monotonic() + timeout_s
        while self._items and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        return not self._items

    def _run(self) -> None:
        wait = self.initial_s
        while True:
            with self._lock:
                if not self._items:
                    self._thread = None
                    return
                key, write = self._items[0]
            try:
                write()
            except DB_UNAVAILABLE as exc:
                log.info(
                    "chat log still unavailable (%s); retrying turn %s in %.1f s",
                    type(exc).__name__,
                    key,
                    wait,
                )
                self._wake.wait(wait)
                self._wake.clear()
                wait = min(wait * 2, self.max_s)
                continue
            except Exception:  # noqa: BLE001 - a write that can never land is reported, not retried
                log.exception("chat-log spool: the write of turn %s failed for good; dropped", key)
                self.dropped += 1
            else:
                self.written += 1
                log.info("chat log back: the spooled outcome of turn %s is written", key)
            with self._lock:
                self._items.popleft()
            wait = self.initial_s
