"""The chat UI in headless Chromium (Debian ``chromium``): per-answer sources, stop/retry/edit,
feedback, history per user, and the small things users notice.

The real app runs over HTTP (real embeddings, Chroma, SQLite chat log, Chromium). The model is
the instant OpenAI-compatible server (``monitoring._instant_llm``): these tests are about the UI,
need answers that stream slowly enough to stop, and the local LLM took more than 180 s to start on
this shared 2-core machine. Assertions are about what the page shows and the chat-log rows, never
about the model's words. Each test saves screenshots of the views it drives under
``bench/results/ui/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import chatlog as cl
from tests.chatbot.browser import wait_for

pytestmark = [pytest.mark.browser]
#: A streamed answer that cites its passages.
PIECES = [
    "Use ",
    "`sorted(items)` ",
    "for a new list ",
    "[1]",
    ", or ",
    "`items.sort()` ",
    "in place ",
    "[2]",
    ". ",
]

SHOTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "ui"
BOT = "#chat .message-row.bot-row"
BUTTONS = "#chat .message-buttons-left"
# Colour-emoji code points (pictographs, dingbats with emoji presentation, VS16): none on any label.
EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def app(
    app_factory: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from monitoring._instant_llm import Behaviour, InstantLLM

    db = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'chatlog.db'}"
    with InstantLLM(Behaviour(pieces=PIECES, token_delay_s=0.05)) as llm:
        # The grounding gate has its own tests; here it would only add a model load per answer.
        with app_factory(openai_base_url=llm.base_url, database_url=db, gate_enabled=False) as base:
            log = cl.ChatLog(db)
            try:
                yield {"url": base, "log": log, "llm": llm}
            finally:
                log.close()


def new_page(browser: Any, base: str) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(base + "/")
    page.locator("#question textarea").wait_for(timeout=60_000)
    return page


def ask(page: Any, log: cl.ChatLog, text: str, timeout: float = 300) -> dict[str, Any]:
    """Type a question, press Enter, wait for its finished turn in the log and on the page."""
    before = {t["turn_id"] for t in log.iter_turns()}
    box = page.locator("#question textarea")
    box.fill(text)
    box.press("Enter")

    def finished() -> dict[str, Any] | None:
        new = [t for t in log.iter_turns() if t["turn_id"] not in before and t["status"] != "in_progress"]
        return new[-1] if new else None

    turn = wait_for(finished, timeout, f"the turn for {text!r}")
    wait_for(
        lambda: (
            "tokens" in page.locator(BOT).last.inner_text() or "Error" in page.locator(BOT).last.inner_text()
        ),
        30,
        "the small print",
    )
    return turn


def test_each_answer_keeps_its_own_sources_with_links_to_full_passages(
    app: dict[str, Any], browser: Any
) -> None:
    page, log = new_page(browser, app["url"]), app["log"]
    first = ask(page, log, "How do I sort a list?")
    second = ask(page, log, "How do I copy a file?")
    assert first["status"] == second["status"] == cl.STATUS_OK
    # One collapsible sources block per answer, each titled with its own counts.
    shot(page, "chat")
    titles = page.locator("#chat").get_by_text(re.compile(r"^Sources: \d+ passages?, \d+ cited"))
    wait_for(lambda: titles.count() >= 2, 10, "two sources blocks")
    # Scrolling back: open the first answer's block; it shows the first answer's passages.
    titles.first.click()
    titles.nth(1).click()  # both blocks open: their links are on the page
    block = page.locator("#chat").inner_text()
    assert "lists.md" in block, "the first answer's sources (lists.md) are shown under it"
    assert "/.cache/" not in block and "/tmp/" not in block, "sources are named by relative path"
    shot(page, "chat_sources")
    # Every "Open passage" link goes to the passage page of its own turn.
    links = page.locator("#chat a", has_text="Open passage")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert any(first["turn_id"] in h for h in hrefs) and any(second["turn_id"] in h for h in hrefs)
    n_first = len(first["retrieved"])
    assert sum(first["turn_id"] in h for h in hrefs) == n_first
    # Inline [n] markers (when the model cites) link to the same pages.
    for turn in (first, second):
        for n in turn["cited"] or []:
            assert page.locator(f'#chat a[href="/ui/passage/{turn["turn_id"]}/{n}"]').count() >= 1
    # The passage opens in full, with a link to the document.
    passage = page.context.new_page()
    passage.goto(app["url"] + f"/ui/passage/{first['turn_id']}/1")
    full = first["retrieved"][0]["text"]
    assert " ".join(full.split())[:200] in " ".join(passage.locator("#passage-text").inner_text().split())
    href = passage.locator("#document-link").get_attribute("href")
    assert href.startswith("/documents/") and href.endswith(".md") and "cache" not in href
    shot(passage, "passage")
    # Another browser (another user) cannot open that passage.
    stranger = browser.new_context().new_page()
    assert stranger.goto(app["url"] + f"/ui/passage/{first['turn_id']}/1").status == 404


def _turn_rows(log: cl.ChatLog, conv_id: str) -> list[dict[str, Any]]:
    return log.conversation_turns(conv_id)


def test_stop_retry_edit_feedback_and_small_print(app: dict[str, Any], browser: Any) -> None:
    page, log = new_page(browser, app["url"]), app["log"]
    first = ask(page, log, "How do I sort a list?")
    conv = first["conversation_id"]
    # Small print: latency, tokens, model under the answer.
    small = page.locator(BOT).first.inner_text()
    assert re.search(r"\d+\.\d s", small) and "tokens" in small and first["model"] in small

    # Thumbs down, then a comment, then thumbs up: one row for this user, updated each time.
    page.locator(BUTTONS).last.locator('button[aria-label="Dislike"]').click()
    wait_for(lambda: log.feedback_for(first["turn_id"]), 30, "the feedback row")
    page.get_by_text("Comment on the answer you rated").click()
    page.locator("#comment textarea").fill("needs an example")
    page.locator("#send-comment").click()
    wait_for(lambda: log.feedback_for(first["turn_id"])[0]["comment"], 30, "the comment")
    page.locator(BUTTONS).last.locator('button[aria-label="Like"]').click()
    wait_for(lambda: log.feedback_for(first["turn_id"])[0]["value"] == 1, 30, "the changed thumbs")
    rows = log.feedback_for(first["turn_id"])
    assert [(r["value"], r["comment"]) for r in rows] == [(1, "needs an example")]

    # Retry: a new turn linked to the old one; the old one keeps its feedback.
    before = {t["turn_id"] for t in _turn_rows(log, conv)}
    page.locator("#retry").click()
    retried = wait_for(
        lambda: [
            t for t in _turn_rows(log, conv) if t["turn_id"] not in before and t["status"] != "in_progress"
        ],
        300,
        "the retried turn",
    )[-1]
    assert retried["retry_of"] == first["turn_id"] and retried["user_message"] == first["user_message"]
    assert [(r["value"], r["comment"]) for r in log.feedback_for(first["turn_id"])] == [
        (1, "needs an example")
    ]
    wait_for(
        lambda: page.locator("#chat .message-row.user-row").count() == 1, 30, "one question shown after retry"
    )
    shot(page, "controls_retry")

    # Edit the last question: the edited text is re-asked as a new turn linked to the last one.
    before = {t["turn_id"] for t in _turn_rows(log, conv)}
    page.locator("#chat .message-row.user-row").last.hover()
    page.locator('#chat button[aria-label="Edit"]').last.click()
    editor = page.locator("#chat textarea").last
    editor.fill("How do I sort a list in reverse order?")
    page.locator('#chat button[aria-label="Submit"]').last.click()
    edited = wait_for(
        lambda: [
            t for t in _turn_rows(log, conv) if t["turn_id"] not in before and t["status"] != "in_progress"
        ],
        300,
        "the edited turn",
    )[-1]
    assert (
        edited["user_message"] == "How do I sort a list in reverse order?"
        and edited["retry_of"] == retried["turn_id"]
    )
    wait_for(
        lambda: "reverse order" in page.locator("#chat .message-row.user-row").last.inner_text(),
        30,
        "the edit shown",
    )

    # Stop: the turn is recorded as cancelled, with the part of the answer that had streamed.
    before = {t["turn_id"] for t in _turn_rows(log, conv)}
    app["llm"].behaviour.pieces = PIECES * 40
    app["llm"].behaviour.token_delay_s = 0.25  # a long, slow answer to stop
    box = page.locator("#question textarea")
    previous = page.locator(BOT).last.inner_text().strip()
    n_rows = page.locator(BOT).count()
    box.fill("Explain in detail every way to remove duplicates from a list, with examples.")
    box.press("Enter")
    # The new answer's own text, not the previous answer still shown as the last row.
    wait_for(
        lambda: (
            any(t["turn_id"] not in before for t in _turn_rows(log, conv))
            and page.locator(BOT).count() > n_rows
            and len(page.locator(BOT).last.inner_text().strip()) > 20
            and page.locator(BOT).last.inner_text().strip() != previous
        ),
        300,
        "the first tokens",
        interval=0.05,
    )
    page.locator("#stop").click()
    stopped = wait_for(
        lambda: [
            t for t in _turn_rows(log, conv) if t["turn_id"] not in before and t["status"] != "in_progress"
        ],
        60,
        "the stopped turn",
    )[-1]
    app["llm"].behaviour.pieces, app["llm"].behaviour.token_delay_s = PIECES, 0.05
    assert stopped["status"] == cl.STATUS_CANCELLED and stopped["answer"], stopped["status"]
    wait_for(lambda: "Stopped" in page.locator("#chat").inner_text(), 30, "the stopped note")
    # What the user sees: the note itself, and no "Error" badge over the chat or the question box
    # (Gradio marks a cancelled event's outputs as failed).
    assert page.locator("#chat").get_by_text("Stopped", exact=False).last.is_visible()
    wait_for(
        lambda: (
            not page.get_by_text("Error", exact=True).first.is_visible()
            if page.get_by_text("Error", exact=True).count()
            else True
        ),
        15,
        "no Error badge after Stop",
    )
    shown = " ".join(page.locator(BOT).last.inner_text().split())
    assert " ".join(stopped["answer"].replace("`", "").split())[:30] in shown  # rendered: no backticks
    shot(page, "controls_stopped")


def _history_titles(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#history-list label").all_inner_texts()]


def test_history_is_per_user_reopen_search_rename_and_delete_everywhere(
    app: dict[str, Any], browser: Any
) -> None:
    log = app["log"]
    alice, bob = new_page(browser, app["url"]), new_page(browser, app["url"])  # two browsers at once
    a_turn = ask(alice, log, "How do I convert a string to a number?")
    b_turn = ask(bob, log, "How do I delete a file?")
    a_conv, b_conv = a_turn["conversation_id"], b_turn["conversation_id"]
    a_owner = log.get_conversation(a_conv)["user_id"]
    assert a_owner and a_owner != log.get_conversation(b_conv)["user_id"]
    wait_for(lambda: any("convert a string" in t for t in _history_titles(alice)), 30, "alice's list")
    wait_for(lambda: any("delete a file" in t for t in _history_titles(bob)), 30, "bob's list")
    assert not any("delete a file" in t for t in _history_titles(alice))
    assert not any("convert a string" in t for t in _history_titles(bob))
    # After a reload each still sees only their own (the cookie id persists).
    bob.reload()
    wait_for(lambda: _history_titles(bob), 60, "bob's list after reload")
    assert all("convert a string" not in t for t in _history_titles(bob))

    # A second conversation for Alice; search finds by text in the answers and questions.
    alice.locator("#new-conversation").click()
    wait_for(lambda: alice.locator(BOT).count() == 0, 10, "an empty chat")
    ask(alice, log, "How do I remove duplicates from a list?")
    wait_for(lambda: len(_history_titles(alice)) == 2, 30, "two conversations listed")
    alice.locator("#history-search textarea, #history-search input").first.fill("convert")
    wait_for(
        lambda: len(_history_titles(alice)) == 1 and "convert" in _history_titles(alice)[0], 30, "search"
    )
    shot(alice, "history_search")
    # Reopen it, continue it, rename it.
    alice.locator("#history-list label").first.click()
    wait_for(
        lambda: "convert a string" in alice.locator("#chat").inner_text(), 30, "the reopened conversation"
    )
    follow = ask(alice, log, "And to a float?")
    assert follow["conversation_id"] == a_conv
    alice.locator("#conversation-title textarea, #conversation-title input").first.fill(
        "Numbers from strings"
    )
    alice.locator("#rename-conversation").click()
    wait_for(lambda: log.get_conversation(a_conv)["title"] == "Numbers from strings", 30, "the new title")
    shot(alice, "history")

    # Delete: every row of its turns is gone, and the page says so.
    turn_ids = [t["turn_id"] for t in log.conversation_turns(a_conv)]
    alice.locator(BUTTONS).first.locator('button[aria-label="Like"]').click()
    wait_for(
        lambda: log.feedback_for(turn_ids[0]) or log.feedback_for(turn_ids[-1]), 30, "feedback to delete"
    )
    # One click only asks; Cancel keeps it; "Delete for good" deletes (it was one click, unasked).
    alice.locator("#delete-conversation").click()
    wait_for(lambda: alice.locator("#delete-confirm").is_visible(), 30, "the confirm step")
    assert "for good?" in alice.locator("#history-status").inner_text()
    shot(alice, "history_delete_confirm")
    alice.locator("#delete-cancel").click()
    wait_for(lambda: "Not deleted" in alice.locator("#history-status").inner_text(), 30, "cancelled")
    assert not alice.locator("#delete-confirm").is_visible() and log.get_conversation(a_conv) is not None
    alice.locator("#delete-conversation").click()
    wait_for(lambda: alice.locator("#delete-confirm").is_visible(), 30, "the confirm step again")
    alice.locator("#delete-confirm").click()
    wait_for(
        lambda: "Conversation deleted" in alice.locator("#history-status").inner_text(), 30, "the message"
    )
    shot(alice, "history_deleted")
    said = alice.locator("#history-status").inner_text()
    assert "Nothing of it is left" not in said  # it was not true: traces and WAL bytes were kept
    assert "overwritten in the chat log's database and WAL files" in said
    assert log.get_conversation(a_conv) is None and log.conversation_turns(a_conv) == []
    assert all(log.get_turn(t) is None and not log.feedback_for(t) for t in turn_ids)
    alice.locator("#history-search textarea, #history-search input").first.fill("")
    wait_for(lambda: len(_history_titles(alice)) == 1, 30, "one conversation left")
    assert log.get_conversation(b_conv) is not None  # Bob's is untouched


def test_small_things_title_favicon_keyboard_errors_and_no_emoji(app: dict[str, Any], browser: Any) -> None:
    page, log = new_page(browser, app["url"]), app["log"]
    assert page.title() == "ragloop"
    icon = page.locator('link[rel~="icon"]').first.get_attribute("href")
    assert icon and page.request.get(app["url"] + "/favicon.svg").ok
    labels = " ".join(page.locator("button, label, h2").all_inner_texts())
    assert not EMOJI.search(labels), EMOJI.findall(labels)
    # Shift+Enter adds a new line and sends nothing; Enter sends.
    n_before = log.count_turns()
    box = page.locator("#question textarea")
    box.click()
    box.type("How do I sort")
    box.press("Shift+Enter")
    box.type("a list?")
    time.sleep(1.0)
    assert box.input_value() == "How do I sort\na list?" and log.count_turns() == n_before
    # A message too long: the error shows in the conversation itself (an empty Send does nothing).
    box.fill("a" * 4500)
    page.locator("#send").click()
    wait_for(lambda: "Error" in page.locator("#chat").inner_text(), 30, "the error in the chat")
    assert "characters" in page.locator(BOT).last.inner_text().lower()
    assert log.count_turns() == n_before + 1  # the refused message is logged, rejected
    shot(page, "error_in_chat")
