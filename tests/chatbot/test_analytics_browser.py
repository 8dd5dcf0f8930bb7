"""The analytics tab in headless Chromium (Debian ``chromium``), on a seeded real SQLite chat log.

The real chat app serves the tab (its UI mounts it) over real HTTP; with authentication on it
goes through the app's sign-in. Assertions are on the
numbers the page shows, which the seeded rows fix. A screenshot of the loaded tab goes to
``bench/results/ui/analytics.png``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

import chatlog as cl
from chatbot._auth import ANON_COOKIE, anonymous_id
from eval import EvalResult, EvaluationStore
from labeling import PairStore
from monitoring import semconv as sc
from monitoring.drift._store import save_run
from ragloop.settings import Settings
from tests.chatbot.browser import chromium, wait_for

pytestmark = [pytest.mark.browser]

SHOTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "ui"
#: The guest's anonymous-id cookie: with authentication off a guest sees only their own free text.
COOKIE = "analytics-guest-0123456789abcdef"
OWNER = anonymous_id(COOKIE)


def seed(log: cl.ChatLog) -> None:
    """Six turns yesterday and today with fixed latency, tokens, feedback, scores, drift and pairs."""
    at = cl.now() - timedelta(days=3)
    conv = log.create_conversation(user_id=OWNER, title="question 0")
    ids = []
    for k, total in enumerate((100.0, 200.0, 300.0, 400.0)):  # over three days: lines in the plots
        when = at + timedelta(days=k // 2 + k % 2 * 2)
        tid = log.start_turn(conversation_id=conv, created_at=when, user_message=f"question {k}", model="m1")
        log.finish_turn(tid, "ok", total_ms=total, ttft_ms=total / 10, input_tokens=1000, output_tokens=100)
        ids.append(tid)
    for k in range(2):
        tid = log.start_turn(
            conversation_id=conv, created_at=at + timedelta(days=1 + k), user_message="How do I fly?"
        )
        log.finish_turn(tid, "no_context")
    for tid in ids[:3]:
        log.add_feedback(tid, 1, rater=OWNER, source="ui")
    log.add_feedback(ids[3], -1, "too vague", rater=OWNER, source="ui")
    scores = EvaluationStore(log)
    for tid, score in zip(ids, (0.2, 0.6, 0.8, 0.9), strict=True):
        scores.record(tid, sc.SCORE_FAITHFULNESS_LOCAL, EvalResult(score=score))
    cluster = {"rank": 1, "size": 2, "current_share": 0.4, "reference_share": 0.1, "excess": 0.3}
    run = {"run_id": "r1", "created_at": cl.now(), "alarm": True, "n_reference": 50, "n_current": 60}
    save_run(log.engine, run, [{**cluster, "examples": ["how do i fly?"], "turn_ids": ids[:2]}])
    pairs = PairStore(log)
    for tid in ids[:3]:
        pair = {"pair_id": tid, "question": "q", "response_a": "a", "response_b": "b"}
        pairs.save_pair({**pair, "a_is_original": True, "strategy": "strict"})
    pairs.record_label(ids[0], backend="argilla", annotator="ann", choice="A")


@contextlib.contextmanager
def serve_app(app_factory: Callable[..., Any], db: str, **overrides: Any) -> Iterator[str]:
    """The real chat app (its UI mounts the analytics tab) on a seeded log; no LLM call is made."""
    with app_factory(
        database_url=db,
        openai_base_url="http://127.0.0.1:9/v1",  # never reached: nothing here asks the model
        prices="m1=1:2,*=0:0",
        faithfulness_threshold=0.5,
        **overrides,
    ) as base:
        yield base


@pytest.fixture()
def page() -> Iterator[Any]:
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 900})


@pytest.fixture()
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'chatlog.db'}"
    log = cl.ChatLog(url)
    try:
        seed(log)
    finally:
        log.close()
    return url


def test_the_tab_loads_when_opened_and_shows_the_logs_numbers(
    app_factory: Callable[..., Any], db: str, page: Any
) -> None:
    reads: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "drift_clusters" in statement:  # only the analytics load reads the drift clusters
            reads.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        with serve_app(app_factory, db) as base:
            _check_the_tab(page, base, reads)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


def _check_the_tab(page: Any, base: str, reads: list[str]) -> None:
    page.context.add_cookies([{"name": ANON_COOKIE, "value": COOKIE, "url": base}])
    page.goto(base + "/")
    tab = page.get_by_role("tab", name="Analytics")
    tab.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    assert reads == [], "nothing is read before the tab is opened"
    tab.click()
    summary = page.locator("#analytics-summary")
    wait_for(lambda: "Turns" in summary.inner_text(), 30, "the summary")
    text = " ".join(summary.inner_text().split())
    assert "Turns 6" in text
    assert "3 / 1 (75.0% up)" in text  # thumbs
    assert "25.0% of 4 scored" in text  # one local score of four below 0.5
    assert "Refusals 2 (33.3%" in text
    assert "200 ms / 400 ms" in text  # nearest-rank p50 / p95 of 100..400 ms
    assert "20 ms / 40 ms" in text  # time to first token
    assert "$0.0048" in text  # 4 x (1000 x 1 + 100 x 2) / 1e6
    assert "Drift alarm" in text
    assert "2 pairs waiting for a label (1 labeled)" in text
    # The other panels are rendered by the same load event, each in its own component: wait for
    # each to show its text rather than read it at once.
    panels = {"#analytics-comments": "too vague", "#analytics-refused": "how do i fly?"}
    # A guest's drift examples are their own questions among the cluster's member turns.
    panels["#analytics-clusters"] = "question 0"
    for panel, expected in panels.items():

        def shows(panel: str = panel, expected: str = expected) -> bool:
            return expected in page.locator(panel).inner_text()

        wait_for(shows, 30, f"{expected!r} in {panel}")
    wait_for(lambda: page.locator("#analytics-turns canvas, #analytics-turns svg").count(), 30, "a plot")
    page.wait_for_timeout(1000)  # let the plots finish drawing
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "analytics.png"), full_page=True)
    before = len(reads)
    page.locator("#analytics-refresh").click()
    wait_for(lambda: len(reads) > before, 30, "a reload on Refresh")


def test_with_authentication_only_admins_see_the_tab(
    app_factory: Callable[..., Any], db: str, page: Any
) -> None:
    auth = {"auth_users": "alice:wonderland,bob:builder", "admin_users": "alice"}
    with serve_app(app_factory, db, **auth) as base:
        for user, password, admin in (("bob", "builder", False), ("alice", "wonderland", True)):
            page.context.clear_cookies()
            page.goto(base + "/login")
            page.locator("#username").fill(user)
            page.locator("#password").fill(password)
            page.locator("#sign-in").click()
            page.locator("#question textarea").wait_for(timeout=30_000)
            tabs = page.get_by_role("tab", name="Analytics")
            if admin:  # the page-load event shows the tab to admins: wait for it (a busy machine is slow)
                wait_for(lambda: page.get_by_role("tab", name="Analytics").count() == 1, 30, f"{user}'s tab")
            else:
                page.wait_for_timeout(1500)  # the page-load event has had its time: still no tab
                assert tabs.count() == 0, user
        page.get_by_role("tab", name="Analytics").click()
        wait_for(lambda: "Turns" in page.locator("#analytics-summary").inner_text(), 30, "alice's summary")


def test_the_handler_refuses_a_non_admin_even_when_called_directly(db: str, tmp_path: Path) -> None:
    import gradio as gr

    from chatbot._analytics import REFUSED, build_analytics_tab

    log, settings = cl.ChatLog(db), Settings(data_dir=tmp_path / "data")
    try:
        with gr.Blocks(), gr.Tabs():
            tab = build_analytics_tab(log, settings, is_admin=lambda request: False)
        values = tab.load(30, None)
        assert values[0] == REFUSED and values[1] == "" and all(v is None for v in values[2:10])
        with gr.Blocks(), gr.Tabs():
            broken = build_analytics_tab(log, settings, is_admin=lambda request: 1 / 0)
        assert broken.load(30, None)[0] == REFUSED  # a failing check shows nothing
        with gr.Blocks(), gr.Tabs():
            admin = build_analytics_tab(log, settings, is_admin=lambda request: True)
        assert "Turns" in admin.load(30, None)[1]
    finally:
        log.close()
