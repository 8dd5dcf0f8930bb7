"""Bad input in the chat UI, in headless Chromium (Debian ``chromium``) on the real app.

An empty Send shows nothing and writes nothing; a message over RAGLOOP_MAX_MESSAGE_CHARS shows
its error in the conversation, stays in the question box and creates no conversation (no
history entry), while the chat log keeps its ``rejected`` row; the feedback thanks line leaves
with its conversation. The model is the instant OpenAI-compatible server (these tests are
about the UI). Screenshots: ``bench/results/ui/input_*.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import chatlog as cl
from chatbot._auth import ANON_COOKIE, anonymous_id
from tests.chatbot.browser import chromium, wait_for
from tests.chatbot.test_ui_browser import BOT, BUTTONS, PIECES, ask

pytestmark = [pytest.mark.browser]

SHOTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "ui"
LIMIT = 4000
COOKIE = "input-guest-0123456789abcdef"


@pytest.fixture()
def app(app_factory: Callable[..., Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    from monitoring._instant_llm import Behaviour, InstantLLM

    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with InstantLLM(Behaviour(pieces=PIECES, token_delay_s=0.01)) as llm:
        with app_factory(
            openai_base_url=llm.base_url, database_url=db, gate_enabled=False, max_message_chars=LIMIT
        ) as base:
            log = cl.ChatLog(db)
            try:
                yield {"url": base, "log": log}
            finally:
                log.close()


def _count(log: cl.ChatLog, table: Any) -> int:
    with log.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_bad_input_loses_nothing_and_creates_nothing(app: dict[str, Any]) -> None:
    log, owner = app["log"], anonymous_id(COOKIE)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": ANON_COOKIE, "value": COOKIE, "url": app["url"]}])
        page = context.new_page()
        page.goto(app["url"] + "/")
        box = page.locator("#question textarea")
        box.wait_for(timeout=60_000)
        users = page.locator("#chat .message-row.user-row")

        # An empty Send: no bubble, no row, no conversation.
        page.locator("#send").click()
        box.press("Enter")
        page.wait_for_timeout(2000)
        assert users.count() == 0, "an empty Send shows no question bubble"
        assert "(empty message)" not in page.locator("#chat").inner_text()
        assert _count(log, cl.turns) == 0 and _count(log, cl.conversations) == 0

        # Too long: the error in the conversation, the text still in the box, no conversation.
        text = "a" * (LIMIT + 500)
        box.fill(text)
        box.press("Enter")
        wait_for(lambda: "limit is 4000" in page.locator("#chat").inner_text(), 30, "the error shown")
        page.wait_for_timeout(1000)  # the history refresh after a send
        assert box.input_value() == text, "the refused text stays in the box"
        assert log.list_conversations(owner) == [], "a refused message creates no conversation"
        assert _count(log, cl.conversations) == 0
        assert page.locator("#history-list label").count() == 0, "no history entry"
        rows = list(log.iter_turns())
        assert [(r["status"], r["error_type"], r["conversation_id"]) for r in rows] == [
            ("rejected", "message_too_long", None)
        ], "the chat log keeps the rejected request"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "input_too_long.png"), full_page=True)

        # A good question then goes through as usual; the error note is not kept.
        turn = ask(page, log, "How do I sort a list?")
        assert turn["status"] == cl.STATUS_OK
        assert "limit is 4000" not in page.locator("#chat").inner_text()
        assert users.count() == 1
        assert [c["title"] for c in log.list_conversations(owner)] == ["How do I sort a list?"]

        # A long title without blanks stays inside the sidebar.
        page.locator("#new-conversation").click()
        wait_for(lambda: page.locator(BOT).count() == 0, 30, "an empty chat")
        ask(page, log, "b" * 300)
        entry = wait_for(
            lambda: page.locator("#history-list label").filter(has_text="bbbb").first, 30, "the long entry"
        )
        entry.wait_for(timeout=30_000)
        side = page.locator("#history-list").bounding_box()
        box_ = entry.bounding_box()
        assert side and box_ and box_["x"] + box_["width"] <= side["x"] + side["width"] + 1, (box_, side)
        page.screenshot(path=str(SHOTS / "input_long_title.png"), full_page=True)

        # The thanks line goes with its conversation.
        page.locator(BUTTONS).last.locator('button[aria-label="Dislike"]').click()
        status = page.locator("#feedback-status")
        wait_for(lambda: "thumbs down recorded" in status.inner_text(), 30, "the thanks line")
        page.locator("#new-conversation").click()
        wait_for(lambda: page.locator(BOT).count() == 0, 30, "an empty chat")
        wait_for(lambda: "Thanks" not in status.inner_text(), 10, "the thanks line cleared")
        page.screenshot(path=str(SHOTS / "input_new_conversation.png"), full_page=True)
