"""The chat UI's answer to backpressure: "busy, retrying in N s", then the retry itself.

When the app refuses a turn because it is saturated (the admission queue's ``server_busy`` 429 and
``queue_timeout`` 503, a rate limit's 429, an overloaded model's 503: any refusal that says when to
come back, ``Retry-After``), the UI does not leave the user with a dead error. The conversation
shows the wait counting down, and the question is sent again when it reaches zero, up to
:data:`MAX_AUTO_RETRIES` times. After that the conversation says so, and "Retry last answer"
sends it again. A turn never ends silently.

Pure functions (which errors are retried, the message) and one async countdown.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

#: HTTP statuses of a refusal worth retrying by itself (with a ``Retry-After``).
RETRY_STATUS = frozenset({429, 503})
#: Automatic retries of one question before the UI stops and tells the user.
MAX_AUTO_RETRIES = 5
#: Longest wait (s) the UI counts down before one retry, whatever the server said.
MAX_WAIT_S = 60

_REASONS = {
    "server_busy": "the assistant is answering other questions and its queue is full",
    "queue_timeout": "no answer slot freed up in time",
    "shutting_down": "the server is restarting",
    "llm_rate_limited": "the language model is rate limited",
    "llm_unavailable": "the language model is overloaded",
}


def should_retry(err: Any, attempts: int) -> bool:
    """Whether the UI retries a refused turn by itself.

    Args:
        err: the :class:`chatbot.ChatError` (``status_code``, ``retry_after_s``).
        attempts: automatic retries already made for this question.
    """
    wait = getattr(err, "retry_after_s", None)
    return (
        wait is not None and getattr(err, "status_code", None) in RETRY_STATUS and attempts < MAX_AUTO_RETRIES
    )


def wait_seconds(err: Any) -> int:
    """The wait before the retry: the server's ``Retry-After``, clamped to [1, :data:`MAX_WAIT_S`]."""
    return int(min(MAX_WAIT_S, max(1, math.ceil(float(err.retry_after_s or 1)))))


def busy_markdown(code: str, seconds_left: int, attempt: int) -> str:
    """The conversation's note while waiting, e.g. ``Busy, retrying in 4 s (attempt 1 of 5)``.

    Args:
        code: the refusal's error code (names the reason).
        seconds_left: whole seconds until the retry.
        attempt: this retry's number, from 1.
    """
    reason = _REASONS.get(code, "the server is busy")
    return (
        f"**Busy, retrying in {seconds_left} s** ({reason}; automatic retry {attempt} of "
        f"{MAX_AUTO_RETRIES}). Your question is kept; press Stop to cancel."
    )


def gave_up_markdown(code: str, message: str) -> str:
    """The note after the last automatic retry was refused too."""
    reason = _REASONS.get(code, "the server is busy")
    return (
        f"**Still busy after {MAX_AUTO_RETRIES} automatic retries** ({reason}): {message} "
        "Press *Retry last answer* to send the question again."
    )


async def countdown(seconds: int) -> AsyncIterator[int]:
    """Yield the whole seconds left, ``seconds`` down to 1, one a second (wall clock, no drift)."""
    end = time.monotonic() + seconds
    left = seconds
    while left > 0:
        yield left
        await asyncio.sleep(max(0.0, end - time.monotonic() - (left - 1)))
        left = math.ceil(end - time.monotonic() - 1e-6)
