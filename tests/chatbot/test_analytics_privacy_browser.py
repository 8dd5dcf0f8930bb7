"""The analytics tab with authentication off: two guests at once never see each other's text.

Two browser contexts are two guests (two anonymous-id cookies, as two browsers would hold). Each
has, in the real SQLite chat log, a conversation with a refused question, a rated answer with a
comment, and a turn in the newest drift run's top cluster. Each guest's Analytics tab shows the
global figures (every turn counted) but only their own comment, refused question and drift
example question. Also: rejected requests are not counted as turns, and the date of a refused
question is shown in full. Screenshots go to ``bench/results/ui/analytics_guest_*.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import chatlog as cl
from chatbot._auth import ANON_COOKIE, anonymous_id
from monitoring.drift._store import save_run
from tests.chatbot.browser import chromium, wait_for

pytestmark = [pytest.mark.browser]

SHOTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "ui"
COOKIES = {"a": "guest-a-cookie-0123456789abcdef", "b": "guest-b-cookie-0123456789abcdef"}


def _guest_text(who: str) -> dict[str, str]:
    return {
        "refused": f"where does guest {who} keep the spare key?",
        "comment": f"guest {who} private remark",
        "asked": f"guest {who} asks about pickling",
    }


def seed(log: cl.ChatLog) -> list[str]:
    """Per guest: a refused question, a commented answer, a rejected request; one drift run."""
    at = cl.now() - timedelta(hours=2)
    members = []
    for who, cookie in COOKIES.items():
        owner, text = anonymous_id(cookie), _guest_text(who)
        conv = log.create_conversation(user_id=owner, title=text["asked"])
        tid = log.start_turn(conversation_id=conv, created_at=at, user_message=text["asked"], model="m1")
        log.finish_turn(tid, "ok", total_ms=300.0, ttft_ms=30.0, input_tokens=100, output_tokens=10)
        log.add_feedback(tid, -1, text["comment"], rater=owner, source="ui")
        members.append(tid)
        ref = log.start_turn(conversation_id=conv, created_at=at, user_message=text["refused"])
        log.finish_turn(ref, "no_context")
        bad = log.start_turn(conversation_id=conv, created_at=at, user_message="x" * 50)
        log.finish_turn(bad, "rejected", error_type="message_too_long")
    cluster = {"rank": 1, "size": 2, "current_share": 0.5, "reference_share": 0.1, "excess": 0.4}
    run = {"run_id": "r1", "created_at": cl.now(), "alarm": True, "n_reference": 50, "n_current": 60}
    examples = [_guest_text(w)["asked"] for w in COOKIES]
    save_run(log.engine, run, [{**cluster, "examples": examples, "turn_ids": members}])
    return members


def test_two_guests_see_the_same_figures_but_only_their_own_text(
    app_factory: Callable[..., Any], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    log = cl.ChatLog(db)
    try:
        seed(log)
    finally:
        log.close()
    with app_factory(database_url=db, openai_base_url="http://127.0.0.1:9/v1") as base, chromium() as browser:
        pages = {}
        for who, cookie in COOKIES.items():  # both open at once, as two browsers would be
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([{"name": ANON_COOKIE, "value": cookie, "url": base}])
            page = context.new_page()
            page.goto(base + "/")
            page.get_by_role("tab", name="Analytics").click()
            pages[who] = page
        for who, page in pages.items():
            other = "b" if who == "a" else "a"
            summary = page.locator("#analytics-summary")
            wait_for(
                lambda p=page: "Turns" in p.locator("#analytics-summary").inner_text(), 60, "the summary"
            )
            text = " ".join(summary.inner_text().split())
            # Figures stay global: both guests' turns, rejected requests shown apart.
            assert "Turns 4" in text, text
            assert "Rejected requests (bad input) 2" in text, text
            assert "Refusals 2" in text, text
            assert "0 / 2" in text  # thumbs up / down
            page.wait_for_timeout(500)
            body = page.locator("#analytics-tab").inner_text()
            mine, theirs = _guest_text(who), _guest_text(other)
            assert mine["comment"] in page.locator("#analytics-comments").inner_text()
            assert mine["refused"] in page.locator("#analytics-refused").inner_text()
            assert mine["asked"] in page.locator("#analytics-clusters").inner_text()
            for key, value in theirs.items():
                assert value not in body, f"guest {who} sees guest {other}'s {key}: {value!r}"
            day = f"{cl.now() - timedelta(hours=2):%Y-%m-%d}"
            assert day in page.locator("#analytics-refused").inner_text()
            cell = page.locator("#analytics-refused").get_by_text(day).first
            clipped = cell.evaluate("e => e.scrollWidth > e.clientWidth + 1")
            assert not clipped, "the refused question's date is shown in full"
            # One day of latency data is drawn (a line of one point drew nothing).
            wait_for(lambda p=page: _marks(p, "#analytics-latency") > 10, 30, "the latency marks")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"analytics_guest_{who}.png"), full_page=True)


def _marks(page: Any, plot: str) -> int:
    """Coloured pixels in a plot's drawing area (above its legend): the marks; grid and text are grey."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(page.locator(plot).screenshot())).convert("RGB")
    width, height = image.size
    area = image.crop((0, 0, width, int(height * 0.8)))
    return sum(1 for r, g, b in area.getdata() if max(r, g, b) - min(r, g, b) > 40)


def test_the_summary_counts_rejected_requests_apart_and_says_pair_or_pairs() -> None:
    from chatbot._analytics import summary_markdown
    from monitoring._analytics import Analytics, Window

    day = {"day": "2026-11-30", "ok": 2, "refused": 0, "errors": 0, "cancelled": 0}
    a = Analytics(window=Window.last_days(1), turns_per_day=[{**day, "turns": 2, "rejected": 7}])
    a.feedback = {"up": 0, "down": 0, "up_share": None}
    a.labeling = {"pending": 1, "labeled": 0}
    text = summary_markdown(a)
    assert "| Turns | 2 |" in text and "| Rejected requests (bad input) | 7 |" in text
    assert "1 pair waiting" in text
    a.labeling = {"pending": 2, "labeled": 0}
    assert "2 pairs waiting" in summary_markdown(a)
