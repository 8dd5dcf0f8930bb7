"""Backpressure as users see it, in headless Chromium: "busy, retrying in N s", then the answer.

The real app (one turn at a time, no queue: ``RAGLOOP_LLM_CONCURRENCY=1``,
``RAGLOOP_QUEUE_DEPTH=0``) in front of a real OpenAI-compatible server that streams slowly (the
instant server with a delay between tokens). Two browsers ask at once: the second is refused
(``server_busy``, 429 with ``Retry-After``), its conversation says it is busy and counts down,
and it gets its answer by itself once the first is done. Asserted on the page and the chat-log
rows (the refused row, the retry linked to it), never on the model's words. Screenshot:
``bench/results/ui/busy.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import chatlog as cl
from tests.chatbot.browser import wait_for
from tests.chatbot.test_ui_browser import BOT, new_page, shot

pytestmark = [pytest.mark.browser]
#: A ~6.4 s answer: long enough for the second question to arrive while it streams, however slowly
#: a busy machine gets it from the second page through Gradio (at ~3 s the first could be over).
PIECES = ["Use ", "`sorted(items)` ", "[1]", ". "] * 8
TOKEN_DELAY_S = 0.2
FIRST, SECOND = "How do I sort a list?", "How do I copy a file?"


@pytest.fixture(scope="module")
def app(
    app_factory: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from monitoring._instant_llm import Behaviour, InstantLLM

    db = f"sqlite:///{tmp_path_factory.mktemp('busy') / 'chatlog.db'}"
    with InstantLLM(Behaviour(pieces=PIECES, token_delay_s=TOKEN_DELAY_S)) as llm:
        overrides = {
            "openai_base_url": llm.base_url,
            "database_url": db,
            "gate_enabled": False,
            "llm_concurrency": 1,  # one turn at a time ...
            "queue_depth": 0,  # ... and none may wait: the second is refused at once
            "queue_max_wait_s": 1.0,
        }
        with app_factory(**overrides) as base:
            log = cl.ChatLog(db)
            try:
                yield {"url": base, "log": log}
            finally:
                log.close()


def _send(page: Any, text: str) -> None:
    box = page.locator("#question textarea")
    box.fill(text)
    box.press("Enter")


def test_a_refused_question_says_busy_counts_down_and_is_answered(app: dict[str, Any], browser: Any) -> None:
    log = app["log"]
    first, second = new_page(browser, app["url"]), new_page(browser, app["url"])
    _send(first, FIRST)
    wait_for(
        lambda: any(t["status"] == "in_progress" for t in log.iter_turns()), 60, "the first turn running"
    )
    _send(second, SECOND)

    # The second conversation says it is busy and when it retries.
    busy = wait_for(
        lambda: re.search(r"Busy, retrying in (\d+) s", second.locator(BOT).last.inner_text()),
        30,
        "the busy message",
        interval=0.05,
    )
    assert 1 <= int(busy.group(1)) <= 60
    shot(second, "busy")
    refused = [t for t in log.iter_turns() if t["status"] == cl.STATUS_REJECTED]
    assert [(t["error_type"], t["user_message"]) for t in refused] == [("server_busy", SECOND)], refused
    # It counts down (the number on the page changes).
    wait_for(
        lambda: (
            (m := re.search(r"retrying in (\d+) s", second.locator(BOT).last.inner_text()))
            and int(m.group(1)) < int(busy.group(1))
        ),
        10,
        "the countdown",
    )

    # Then it is answered by itself: an accepted turn whose retry_of chain is the refused rows.
    def answered() -> dict[str, Any] | None:
        done = [t for t in log.iter_turns() if t["user_message"] == SECOND and t["status"] == cl.STATUS_OK]
        return done[0] if done else None

    turn = wait_for(answered, 120, "the retried turn's answer")
    rows = {t["turn_id"]: t for t in log.iter_turns()}
    refused = [t for t in rows.values() if t["status"] == cl.STATUS_REJECTED]
    chain, link = [], turn["retry_of"]
    while link:
        chain.append(link)
        link = rows[link]["retry_of"]
    assert chain and set(chain) == {t["turn_id"] for t in refused}, "each refusal gave way to the retry"
    assert all(t["error_type"] == "server_busy" and t["user_message"] == SECOND for t in refused)
    wait_for(lambda: "tokens" in second.locator(BOT).last.inner_text(), 30, "the answer's small print")
    shown = second.locator("#chat").inner_text()
    assert "Busy" not in shown and "Error" not in shown, shown
    assert second.locator("#chat .message-row.user-row").count() == 1  # asked once, answered once
    # Both questions answered; the chat log's accepted turns are exactly the two that ran.
    wait_for(lambda: "tokens" in first.locator(BOT).last.inner_text(), 30, "the first answer")
    accepted = [t for t in log.iter_turns() if t["status"] != cl.STATUS_REJECTED]
    assert sorted(t["user_message"] for t in accepted) == sorted([FIRST, SECOND])
    assert all(t["status"] == cl.STATUS_OK for t in accepted)
    # Reopened from the history, the conversation shows the answer, not the refusal.
    conv = turn["conversation_id"]
    assert refused[0]["conversation_id"] == conv
    second.reload()
    second.locator("#history-list label").first.wait_for(timeout=30_000)
    second.locator("#history-list label").first.click()
    wait_for(lambda: "tokens" in second.locator("#chat").inner_text(), 30, "the reopened conversation")
    assert "Busy" not in second.locator("#chat").inner_text()
    assert second.locator("#chat .message-row.user-row").count() == 1
