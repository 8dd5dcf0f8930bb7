"""The event-driven path: a thumbs-down outbox item runs the loop for that one turn.

A :class:`LoopSink` takes ``feedback`` items; for a thumbs-down it makes, judges and saves the
turn's pair, which enqueues it for the labeling backends, so a thumbs-down reaches the labeling UI
within the outbox's poll interval plus one candidate and one judge call. It is idempotent by turn
(a turn that already has a pair is done) and never raises: a failure returns False and the outbox
retries it with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from chatlog import ChatLog
from labeling._loop import LabelingLoop

log = logging.getLogger(__name__)


class LoopSink:
    """A :class:`chatlog.outbox.Sink` that pairs thumbs-down turns as their feedback arrives."""

    name = "loop"
    kinds = frozenset({"feedback"})
    #: Its sends take seconds (a candidate answer and two judge calls): it gets an outbox worker of
    #: its own (see ``ragloop.app``), so it never delays the other sinks' deliveries.
    dedicated_worker = True

    def __init__(self, loop: LabelingLoop, lease_s: float = 600.0) -> None:
        """Wrap a configured loop.

        Args:
            loop: the labeling loop that pairs a turn.
            lease_s: the outbox lease of one item: longer than one candidate plus both judge calls.
        """
        self.loop = loop
        self.lease_s = lease_s

    def send(self, items: Sequence[Any]) -> Sequence[bool]:
        """One outcome per item: thumbs-ups and unknown kinds are done at once; thumbs-downs are paired."""
        out = []
        for item in items:
            try:
                out.append(self._one(item))
            except Exception as exc:  # noqa: BLE001 - a sink never raises into the worker
                log.warning("loop sink: %s %s failed: %s", item.kind, item.key, exc)
                out.append(False)
        return out

    def _one(self, item: Any) -> bool:
        payload = item.payload or {}
        if item.kind != "feedback":
            return True
        turn_id = payload.get("turn_id")
        if not turn_id:
            log.warning("loop sink: feedback item %s has no turn_id; dropped", item.key)
            return True
        rater = _rater(item, str(turn_id))
        if int(payload.get("value", 0)) >= 0:
            # A thumbs-up: if it withdrew the thumbs-down a pair was made for, flag that pair.
            self.loop.rating_changed(str(turn_id), rater)
            return True
        # The item may be older than the rating: run_for_turn reads the rater's current value.
        self.loop.run_for_turn(str(turn_id), rater)
        return True

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Nothing to flush: every pair is saved before ``send`` returns."""


def _rater(item: Any, turn_id: str) -> str | None:
    """Who rated: the payload's ``rater``, else the item key's ``<turn_id>:<rater>`` suffix."""
    rater = (item.payload or {}).get("rater")
    if rater:
        return str(rater)
    key = str(item.key or "")
    return key[len(turn_id) + 1 :] or None if key.startswith(f"{turn_id}:") else None


def from_settings(settings: Any, chatlog: ChatLog) -> LoopSink | None:
    """The loop sink for the composition root (``labeling._sink:from_settings``); None when disabled."""
    if not settings.loop_event_driven:
        return None
    # One pair: the candidate answer and the judge's two orders (plus a follow-up each), each
    # bounded by the LLM timeout, and a minute of slack.
    lease_s = 5 * float(getattr(settings, "llm_timeout_s", 60.0)) + 60.0
    return LoopSink(LabelingLoop.from_settings(settings, chatlog), lease_s=lease_s)
