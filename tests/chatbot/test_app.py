"""The app over real HTTP: real LLM, real embeddings, real Chroma, chat log on SQLite and PostgreSQL.

Assertions are about status codes, JSON shapes, event order, citations and chat-log rows, never
about the exact words the model generates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import chatlog as cl
from chatbot._app import parse_feedback_value, sse_event
from chatbot._service import ChatError
from chatbot._ui import render_sources
from ragloop.process import free_port

QUESTION = "How do I copy a file in Python?"


def _client(base: str, timeout: float = 120.0) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=timeout)


def _sse(resp: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse a server-sent event stream into (event, data) pairs."""
    events, kind = [], None
    for line in resp.iter_lines():
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[len("data: ") :])))
    return events


def _assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == code and err["message"]
    return err


def _logged(chatlog_for: Callable[[str], cl.ChatLog], db: str, turn_id: str) -> dict[str, Any]:
    row = chatlog_for(db).get_turn(turn_id)
    assert row is not None, f"turn {turn_id} is not in the chat log"
    return row


# --- pure helpers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1), (-1, -1), ("up", 1), ("DOWN", -1), ("-1", -1), (1.0, 1)]
)
def test_feedback_values_are_normalised(value: Any, expected: int) -> None:
    assert parse_feedback_value(value) == expected


@pytest.mark.parametrize("value", [0, 2, True, False, None, "meh", [1]])
def test_other_feedback_values_are_refused(value: Any) -> None:
    with pytest.raises(ChatError) as info:
        parse_feedback_value(value)
    assert info.value.status_code == 422 and info.value.code == "bad_feedback"


def test_sse_event_encoding() -> None:
    assert sse_event("token", {"text": "hi"}) == b'event: token\ndata: {"text": "hi"}\n\n'


def test_sources_panel_marks_cited_passages() -> None:
    md = render_sources(
        [
            {
                "index": 1,
                "title": "Files",
                "source": "a.md",
                "score": 0.61,
                "text": "x " * 400,
                "cited": True,
            },
            {"index": 2, "title": "", "source": "b.md", "score": 0.3, "text": "short", "cited": False},
        ]
    )
    assert "**[1] Files**" in md and "**CITED**" in md and "**[2] b.md**" in md and "not cited" in md
    assert "(/documents/a.md)" in md  # the passage links to its document, never a cache path
    assert "✅" not in md  # no colour-emoji font needed
    assert "x..." in md and md.count("x ") < 200  # long passages are cut (the full one opens by link)
    assert "No relevant passage" in render_sources([])


# --- a live app per chat-log backend -----------------------------------------------------------
@pytest.fixture(scope="module")
def answered(live_app: dict) -> dict[str, Any]:
    """One real answered turn (JSON API), shared by the tests of a backend."""
    with _client(live_app["url"]) as client:
        resp = client.post("/api/chat", json={"message": QUESTION})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.llm
def test_healthz_reports_the_index(live_app: dict) -> None:
    with _client(live_app["url"]) as client:
        health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["chunks"] > 0


@pytest.mark.llm
def test_json_turn_has_ids_sources_and_is_logged(live_app: dict, answered: dict, chatlog_for) -> None:
    assert answered["status"] == cl.STATUS_OK and answered["answer"].strip()
    assert answered["turn_id"] and answered["conversation_id"]
    assert answered["sources"], "a question the corpus answers must come with sources"
    assert answered["sources"][0]["source"].endswith("files.md")
    # Sources are named by their document id (root/path), never by the server's file path.
    assert all(s["source"] == s["doc_id"] and not s["source"].startswith("/") for s in answered["sources"])
    assert [s["index"] for s in answered["sources"]] == list(range(1, len(answered["sources"]) + 1))
    row = _logged(chatlog_for, live_app["db"], answered["turn_id"])
    assert row["status"] == cl.STATUS_OK and row["answer"] == answered["answer"]
    assert row["conversation_id"] == answered["conversation_id"]
    assert row["retrieved"] and row["query_embedding"] is not None and row["completed_at"] is not None
    assert row["cited"] == [s["index"] for s in answered["sources"] if s["cited"]]


@pytest.mark.llm
def test_streamed_follow_up_in_the_same_conversation(live_app: dict, answered: dict, chatlog_for) -> None:
    body = {"message": "And how do I delete one?", "conversation_id": answered["conversation_id"]}
    with (
        _client(live_app["url"]) as client,
        client.stream("POST", "/api/chat", json=body, headers={"Accept": "text/event-stream"}) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = _sse(resp)
    kinds = [k for k, _ in events]
    assert kinds[0] == "started" and kinds[1] == "sources" and kinds[-1] == "done"
    assert "token" in kinds and "error" not in kinds
    started, result = events[0][1], events[-1][1]["result"]
    assert started["conversation_id"] == answered["conversation_id"] == result["conversation_id"]
    streamed = "".join(d["text"] for k, d in events if k == "token")
    finals = [d for k, d in events if k == "final"]
    # The grounding gate may replace the streamed draft: a "final" event carries what is shown.
    shown = finals[-1]["answer"] if finals else streamed
    assert shown == result["answer"] and result["standalone_question"]
    row = _logged(chatlog_for, live_app["db"], started["turn_id"])
    assert row["status"] == cl.STATUS_OK and row["answer"] == shown


@pytest.mark.llm
def test_feedback_is_stored_for_the_turn(live_app: dict, answered: dict, chatlog_for) -> None:
    turn_id = answered["turn_id"]
    with _client(live_app["url"]) as client:
        down = client.post(
            "/api/feedback", json={"turn_id": turn_id, "value": "down", "comment": "too vague"}
        )
        up = client.post("/api/feedback", json={"turn_id": turn_id, "value": 1})
        unknown = client.post("/api/feedback", json={"turn_id": "no-such-turn", "value": -1})
        bad = client.post("/api/feedback", json={"turn_id": turn_id, "value": 5})
    assert down.status_code == 201 and down.json()["value"] == -1
    assert up.status_code == 201
    _assert_error(unknown, 404, "unknown_turn")
    _assert_error(bad, 422, "bad_feedback")
    rows = chatlog_for(live_app["db"]).feedback_for(turn_id)
    # One rater (anonymous): one row, updated in place; the comment stays (tests/chatbot/test_feedback.py).
    assert [(r["value"], r["comment"], r["source"], r["rater"]) for r in rows] == [
        (1, "too vague", "api", "anonymous")
    ]


@pytest.mark.llm
@pytest.mark.parametrize(
    ("message", "status", "code"),
    [
        ("", 422, "empty_message"),
        ("  \n\t ", 422, "empty_message"),
        (None, 422, "empty_message"),
        (42, 422, "invalid_message"),
        ("x" * 501, 413, "message_too_long"),
        ("hello\x00world", 422, "control_characters"),
        ("bell\x07", 422, "control_characters"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_messages_get_a_json_error_and_a_logged_turn(
    live_app: dict, chatlog_for, message: Any, status: int, code: str, stream: bool
) -> None:
    with _client(live_app["url"]) as client:
        resp = client.post("/api/chat", json={"message": message, "stream": stream})
    err = _assert_error(resp, status, code)
    row = _logged(chatlog_for, live_app["db"], err["turn_id"])
    assert row["status"] == cl.STATUS_REJECTED and row["error_type"] == code and row["error"]


@pytest.mark.llm
def test_unknown_and_deleted_conversations(live_app: dict, chatlog_for) -> None:
    with _client(live_app["url"]) as client:
        unknown = client.post(
            "/api/chat", json={"message": QUESTION, "conversation_id": "not-a-conversation"}
        )
        created = client.post("/api/conversations")
        cid = created.json()["conversation_id"]
        deleted = client.delete(f"/api/conversations/{cid}")
        again = client.delete(f"/api/conversations/{cid}")
        after = client.post("/api/chat", json={"message": QUESTION, "conversation_id": cid, "stream": True})
    for resp in (unknown, after):
        err = _assert_error(resp, 404, "unknown_conversation")
        row = _logged(chatlog_for, live_app["db"], err["turn_id"])
        assert row["status"] == cl.STATUS_REJECTED and row["error_type"] == "unknown_conversation"
    assert created.status_code == 201 and deleted.status_code == 200
    _assert_error(again, 404, "unknown_conversation")


@pytest.mark.llm
def test_malformed_requests_use_the_error_shape(live_app: dict) -> None:
    with _client(live_app["url"]) as client:
        not_json = client.post(
            "/api/chat", content=b"{not json", headers={"content-type": "application/json"}
        )
        long_id = client.post("/api/chat", json={"message": "hi", "conversation_id": "c" * 65})
        no_turn = client.post("/api/feedback", json={"value": 1})
        wrong_method = client.get("/api/chat")
        no_route = client.post("/api/nothing-here", json={})
    for resp in (not_json, long_id, no_turn):
        err = _assert_error(resp, 422, "invalid_request")
        assert err["turn_id"] is None
    _assert_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"
    _assert_error(no_route, 404, "not_found")


# --- failure modes: one app each, chat log on both backends ------------------------------------
def _chat_both_ways(base: str) -> list[httpx.Response]:
    with _client(base) as client:
        return [
            client.post("/api/chat", json={"message": QUESTION}),
            client.post("/api/chat", json={"message": QUESTION, "stream": True}),
        ]


def _assert_logged_errors(
    responses: list[httpx.Response], status: int, code: str, chatlog_for, db: str
) -> None:
    for resp in responses:
        err = _assert_error(resp, status, code)
        row = _logged(chatlog_for, db, err["turn_id"])
        assert row["status"] == cl.STATUS_ERROR and row["error_type"] == code and row["error"]
        assert row["user_message"] == QUESTION and row["completed_at"] is not None


def test_llm_down_is_a_503(app_factory, db_url: str, chatlog_for) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with app_factory(openai_base_url=closed, database_url=db_url) as base:
        responses = _chat_both_ways(base)
    _assert_logged_errors(responses, 503, "llm_unavailable", chatlog_for, db_url)


def test_llm_timeout_is_a_504(app_factory, db_url: str, chatlog_for, silent_port: int) -> None:
    hanging = f"http://127.0.0.1:{silent_port}/v1"
    with app_factory(openai_base_url=hanging, database_url=db_url, llm_timeout_s=0.5) as base:
        responses = _chat_both_ways(base)
    _assert_logged_errors(responses, 504, "llm_timeout", chatlog_for, db_url)


def test_empty_index_is_a_503(app_factory, db_url: str, chatlog_for, tmp_path) -> None:
    # A fresh collection in the same store: nothing indexed. The LLM is never reached.
    closed = f"http://127.0.0.1:{free_port()}/v1"
    settings = {"openai_base_url": closed, "database_url": db_url, "collection": f"empty-{tmp_path.name}"}
    with app_factory(**settings) as base:
        responses = _chat_both_ways(base)
    _assert_logged_errors(responses, 503, "empty_index", chatlog_for, db_url)
