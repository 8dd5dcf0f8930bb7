"""Feedback is one row per (turn, rater) (fault 3), through the real HTTP app and the UI's handlers.

Before the fix a 👎 followed by "Send comment" wrote two rows and each toggle another, so counters
and LangSmith counted clicks. Now a rater's repeat clicks, toggles and comments update one row, the
observer learns the rater's previous value (telemetry counts raters), and one outbox item per
(turn, rater) is kept up to date for the sinks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import pytest

import chatlog as cl
from chatbot import TurnObserver, build_service, create_app
from chatbot._auth import User
from chatbot._ui import _Session, ui_rater
from chatlog import outbox as ob
from ragloop.process import ThreadedServer
from tests.chatbot.conftest import _app_settings


class RecordingObserver(TurnObserver):
    """The observer interface, recording each feedback call."""

    def __init__(self) -> None:
        self.feedback: list[tuple[str, int, str | None, int | None]] = []

    def on_feedback(
        self, turn: dict[str, Any], value: int, comment: str | None, previous_value: int | None = None
    ) -> None:
        self.feedback.append((str(turn["turn_id"]), value, comment, previous_value))


@pytest.fixture
def served(indexed_dir: Path, db_url: str) -> Iterator[dict[str, Any]]:
    """The real app (FastAPI + Gradio) on loopback, a turn to rate, the observer and the service."""
    settings = _app_settings(indexed_dir, database_url=db_url, openai_base_url="http://127.0.0.1:9/v1")
    observer = RecordingObserver()
    service = build_service(settings, observer=observer)
    service.chatlog.set_routes({"feedback": ["langsmith"]})
    turn_id = service.chatlog.start_turn(conversation_id="c", user_message="How do I sort?")
    service.chatlog.finish_turn(turn_id, cl.STATUS_OK, answer="Use sorted() [1].")
    app = create_app(settings, service=service, observer=observer)
    with ThreadedServer(app, "/healthz", name="feedback-app", timeout_graceful_shutdown=2) as server:
        yield {"url": server.base, "turn_id": turn_id, "observer": observer, "service": service}
    service.chatlog.close()


def _rows(service: Any, turn_id: str) -> list[tuple[str, int, str | None]]:
    return [(r["rater"], r["value"], r["comment"]) for r in service.chatlog.feedback_for(turn_id)]


def test_api_a_rater_has_one_row_per_turn_updated_in_place(served: dict[str, Any]) -> None:
    turn_id, service = served["turn_id"], served["service"]
    with httpx.Client(base_url=served["url"], timeout=30) as client:

        def rate(**body: Any) -> dict[str, Any]:
            res = client.post("/api/feedback", json={"turn_id": turn_id, **body})
            assert res.status_code == 201, res.text
            return dict(res.json())

        first = rate(value="down")
        with_comment = rate(value="down", comment="too vague")  # the UI's "Send comment" after 👎
        toggled = rate(value="up")
        other = rate(value=-1, rater="alice")
        again = rate(value=-1, rater="alice")
        bad = client.post("/api/feedback", json={"turn_id": turn_id, "value": 1, "rater": ""})
    assert bad.status_code == 422

    assert [r["created"] for r in (first, with_comment, toggled, other, again)] == [
        True,
        False,
        False,
        True,
        False,
    ]
    assert [r["previous_value"] for r in (first, with_comment, toggled, other, again)] == [
        None,
        -1,
        -1,
        None,
        -1,
    ]
    assert (
        first["feedback_id"] == with_comment["feedback_id"] == toggled["feedback_id"] != other["feedback_id"]
    )
    assert first["rater"] == "anonymous" and other["rater"] == "alice"
    # Two raters, two rows; the comment stays with the anonymous rater's row through the toggle.
    assert _rows(service, turn_id) == [("anonymous", 1, "too vague"), ("alice", -1, None)]
    # The observer hears every call with the previous value: telemetry counts raters from it.
    assert [(v, prev) for _, v, _, prev in served["observer"].feedback] == [
        (-1, None),
        (-1, -1),
        (1, -1),
        (-1, None),
        (-1, -1),
    ]
    # One outbox item per (turn, rater), holding the latest state.
    items = {i["key"]: i for i in ob.items(service.chatlog.engine) if i["kind"] == "feedback"}
    assert set(items) == {f"{turn_id}:anonymous", f"{turn_id}:alice"}
    latest = items[f"{turn_id}:anonymous"]
    assert (latest["payload"]["value"], latest["payload"]["comment"], latest["version"]) == (
        1,
        "too vague",
        3,
    )


def test_ui_thumbs_then_comment_then_toggle_is_one_row_per_session(served: dict[str, Any]) -> None:
    turn_id, service = served["turn_id"], served["service"]
    session = _Session(service)
    turns = {1: turn_id}
    # Two browsers as the auth middleware leaves them: each request carries its (anonymous) user.
    browser_a = SimpleNamespace(scope={"state": {"ragloop_user": User("anon:browser-a")}})
    browser_b = SimpleNamespace(scope={"state": {"ragloop_user": User("anon:browser-b")}})

    def like(liked: bool, request: gr.Request, comment: str = "") -> tuple[str, Any, str]:
        data = gr.LikeData(None, {"index": 1, "value": "Use sorted() [1].", "liked": liked})
        return asyncio.run(session.like(data, turns, comment, request))

    status, last, _ = like(False, browser_a)
    assert "recorded" in status and last == {"turn_id": turn_id, "value": -1}
    status, box = asyncio.run(session.comment("missing an example", last, browser_a))
    assert "comment recorded" in status and box == ""
    like(True, browser_a)  # changes their mind
    like(False, browser_b, comment="wrong")  # another browser session, comment typed first
    rater_a, rater_b = ui_rater(browser_a), ui_rater(browser_b)
    assert rater_a == "anon:browser-a" and rater_b == "anon:browser-b"
    assert _rows(service, turn_id) == [(rater_a, 1, "missing an example"), (rater_b, -1, "wrong")]
    assert {r["source"] for r in service.chatlog.feedback_for(turn_id)} == {"ui"}
    assert ui_rater(None) == "anonymous"
