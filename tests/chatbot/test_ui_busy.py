"""The chat UI's automatic retry of refused turns: which errors, how long, what it says."""

from __future__ import annotations

import asyncio
import time

import pytest

from chatbot import ChatError
from chatbot._ui_busy import (
    MAX_AUTO_RETRIES,
    MAX_WAIT_S,
    busy_markdown,
    countdown,
    gave_up_markdown,
    should_retry,
    wait_seconds,
)


@pytest.mark.parametrize(
    ("err", "retried"),
    [
        (ChatError(429, "server_busy", "busy", retry_after_s=5), True),
        (ChatError(503, "queue_timeout", "busy", retry_after_s=3), True),
        (ChatError(503, "llm_rate_limited", "rate limited", retry_after_s=10), True),
        (ChatError(503, "llm_unavailable", "down", retry_after_s=None), False),  # no Retry-After
        (ChatError(422, "empty_message", "empty"), False),
        (ChatError(502, "llm_auth_failed", "key", retry_after_s=5), False),  # not a busy status
    ],
)
def test_only_refusals_that_say_when_are_retried(err: ChatError, retried: bool) -> None:
    assert should_retry(err, 0) is retried


def test_retries_are_bounded_and_the_wait_clamped() -> None:
    err = ChatError(429, "server_busy", "busy", retry_after_s=500)
    assert should_retry(err, MAX_AUTO_RETRIES - 1) and not should_retry(err, MAX_AUTO_RETRIES)
    assert wait_seconds(err) == MAX_WAIT_S
    assert wait_seconds(ChatError(429, "server_busy", "busy", retry_after_s=0)) == 1


def test_the_messages_say_busy_the_wait_and_what_to_do() -> None:
    text = busy_markdown("server_busy", 4, 2)
    assert "Busy, retrying in 4 s" in text and f"2 of {MAX_AUTO_RETRIES}" in text and "queue" in text
    gave_up = gave_up_markdown("queue_timeout", "No slot freed up.")
    assert "No slot freed up." in gave_up and "Retry last answer" in gave_up


def test_countdown_yields_each_second_down_to_one() -> None:
    async def run() -> tuple[list[int], float]:
        started = time.monotonic()
        seen = [left async for left in countdown(3)]
        return seen, time.monotonic() - started

    seen, took = asyncio.run(run())
    assert seen == [3, 2, 1] and 2.9 <= took < 4.0
