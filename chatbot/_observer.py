"""Hook points the chat service calls so monitoring can watch a turn without being imported here.

:class:`TurnObserver` does nothing; ``monitoring`` provides the real one (spans, metrics, LangSmith).
Every hook is called inside a guard: an exception in an observer is logged and never reaches the
user's turn.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def dont_throw(func: F) -> F:
    """Log and swallow exceptions of a telemetry hook: telemetry never breaks a chat turn."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:  # noqa: BLE001 - by design
            log.warning("observer hook %s failed", func.__qualname__, exc_info=True)
            return None

    return wrapper  # type: ignore[return-value]


class TurnObserver:
    """No-op observer. Subclasses override what they need; the service guards every call."""

    @contextlib.contextmanager
    def turn_scope(self, turn: dict[str, Any]) -> Iterator[None]:
        """Wraps a whole turn (the root span of the chain); ``turn`` holds turn_id, conversation_id."""
        yield

    @contextlib.contextmanager
    def chatlog_scope(self, operation: str) -> Iterator[None]:
        """Wraps a chat-log write (``start_turn`` / ``finish_turn``)."""
        yield

    def langchain_config(self, turn: dict[str, Any]) -> dict[str, Any]:
        """Extra LangChain ``RunnableConfig`` (callbacks, metadata, tags) for this turn's chain run."""
        return {}

    def trace_ids(self) -> tuple[str, str] | None:
        """(trace_id, span_id) of the current turn as hex, to store with the chat-log row."""
        return None

    def annotate_retrieval(self, retrieval: Any) -> None:
        """Inside the chain's retrieve step (its run is current): chunk ids and scores are known."""

    def on_retrieval(self, turn: dict[str, Any], retrieval: Any) -> None:
        """Retrieval finished: chunk ids and scores are known."""

    def on_first_token(self, turn: dict[str, Any], ttft_ms: float) -> None:
        """The first answer token arrived."""

    def on_turn_end(self, record: dict[str, Any]) -> None:
        """The turn finished (any status); ``record`` is the chat-log row as written."""

    def on_feedback(
        self, turn: dict[str, Any], value: int, comment: str | None, previous_value: int | None = None
    ) -> None:
        """A rater's feedback was stored for ``turn`` (its chat-log row, with trace_id).

        ``previous_value`` is that rater's value before (None: a first rating), so counters count
        raters, not clicks.
        """

    def shutdown(self) -> None:
        """Flush and stop exporters."""
