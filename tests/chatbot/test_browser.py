"""End to end in headless Chromium (Debian ``chromium``): ask, watch the answer stream, rate it.

Runs the real app (real LLM, embeddings, Chroma, SQLite chat log) over HTTP and drives the Gradio
UI with Playwright. Assertions are about the page's structure and the chat-log rows, never about
the model's words.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import chatlog as cl
from tests.chatbot.browser import chromium, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.llm]

QUESTION = "How do I sort a list?"
BOT = "#chat .message-row.bot-row"  # Gradio 6 chat rows; the last one is the newest answer
BUTTONS = "#chat .message-buttons-left"  # the copy/like/dislike bar of each answer


@pytest.fixture()
def browser_page() -> Iterator[Any]:
    with chromium() as browser:
        yield browser.new_page()


@pytest.fixture()
def app(llm_server: str, app_factory, tmp_path: Path) -> Iterator[dict[str, Any]]:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with app_factory(openai_base_url=llm_server, database_url=db) as base:
        log = cl.ChatLog(db)
        try:
            yield {"url": base, "log": log}
        finally:
            log.close()


def _bot_texts(page: Any) -> list[str]:
    return [t.strip() for t in page.locator(BOT).all_inner_texts()]


def test_ask_stream_rate_and_find_feedback_in_the_log(app: dict[str, Any], browser_page: Any) -> None:
    page, log = browser_page, app["log"]
    page.goto(app["url"] + "/")
    question = page.locator("#question textarea")
    question.wait_for(timeout=30_000)

    # An empty Send does nothing: no bubble, no turn (refused messages: test_ui_input_browser.py).
    page.locator("#send").click()
    time.sleep(1.5)
    assert _bot_texts(page) == [] and list(log.iter_turns()) == []

    question.fill(QUESTION)
    question.press("Enter")
    seen: list[str] = []

    def answered() -> bool:
        texts = _bot_texts(page)
        if texts and texts[-1] not in ("", "…", "...") and texts[-1] not in seen:
            seen.append(texts[-1])
        return any(True for _ in log.iter_turns(statuses=[cl.STATUS_OK]))

    wait_for(answered, 240, "an answered turn in the chat log", interval=0.05)
    time.sleep(1.0)  # the last streamed update may still be on its way to the page
    answered()
    assert len(seen) >= 2, "the answer should appear in several steps (streaming)"
    turn = next(log.iter_turns(statuses=[cl.STATUS_OK]))
    # Each answer has its own collapsible sources block (chatbot/_ui_render.py): its summary shows,
    # the passages are in the page, folded.
    assert "Sources:" in page.locator("#chat").inner_text()
    folded = page.locator("#chat").inner_html()
    assert "[1]" in folded and "lists.md" in folded

    # Gradio renders a message's thumbs in a button bar right after the message row.
    page.locator(BUTTONS).last.locator('button[aria-label="Dislike"]').click()
    rows = wait_for(lambda: log.feedback_for(turn["turn_id"]), 30, "the feedback row")
    assert [(r["value"], r["source"]) for r in rows] == [(-1, "ui")]
    wait_for(lambda: "recorded" in page.locator("#feedback-status").inner_text(), 10, "the thanks")

    # A comment goes with the last thumbs, to the same turn (in a folded accordion: open it).
    page.get_by_text("Comment on the answer you rated").click()
    page.locator("#comment textarea").fill("missing an example")
    page.locator("#send-comment").click()
    rows = wait_for(
        lambda: [r for r in log.feedback_for(turn["turn_id"]) if r["comment"]], 30, "the comment on the row"
    )
    # The session's one row got the comment (one row per rater: no second row).
    assert [(r["value"], r["comment"]) for r in log.feedback_for(turn["turn_id"])] == [
        (-1, "missing an example")
    ]

    page.locator("#new-conversation").click()
    wait_for(lambda: not _bot_texts(page), 10, "an empty chat after 'New conversation'")
