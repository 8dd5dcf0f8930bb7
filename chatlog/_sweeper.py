"""Close the turns a dead app process left ``in_progress``, while the surviving processes run.

At start-up :func:`ragloop.app.build_application` closes the leftovers of an earlier process. When
several processes share one chat log and one of them dies, its turns would otherwise stay in
progress until some process starts again; the sweeper closes them, every ``interval_s``, once they
are older than the longest a live turn can take. A turn closed too early heals itself: finishing
it (:meth:`ChatLog.finish_turn`) overwrites the status.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatlog._store import ChatLog

log = logging.getLogger(__name__)


class TurnSweeper:
    """A daemon thread calling :meth:`ChatLog.close_interrupted_turns` every ``interval_s``.

    Args:
        chatlog: the shared chat log.
        older_than_s: seconds past which an ``in_progress`` turn belongs to no live process (the
            longest a turn can take: queue wait, condense and answer).
        interval_s: seconds between sweeps (> 0).

    Raises:
        ValueError: ``interval_s`` is not positive, or ``older_than_s`` is negative.
    """

    def __init__(self, chatlog: ChatLog, older_than_s: float, interval_s: float) -> None:
        if interval_s <= 0 or older_than_s < 0:
            raise ValueError(f"need interval_s > 0 and older_than_s >= 0, got {interval_s}, {older_than_s}")
        self.chatlog = chatlog
        self.older_than_s = older_than_s
        self.interval_s = interval_s
        self.closed = 0  # turns closed by this sweeper so far
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """One sweep; returns how many turns it closed (0 when the chat log is unreachable)."""
        try:
            n = self.chatlog.close_interrupted_turns(self.older_than_s)
        except Exception:  # noqa: BLE001 - the database may be down: the next sweep tries again
            log.warning("sweeping interrupted turns failed", exc_info=True)
            return 0
        if n:
            log.info("closed %d turn(s) left in progress by a process that is gone", n)
        self.closed += n
        return n

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sweep()

    def start(self) -> TurnSweeper:
        """Start sweeping (the first sweep after ``interval_s``); returns self."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="turn-sweeper", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sweeping; waits up to ``timeout`` s for a sweep in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
