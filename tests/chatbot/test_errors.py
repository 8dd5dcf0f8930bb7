"""LLM failures map to their own status, error code, Retry-After and message, by exception type and status.

The mapping is a pure function (known-value tests on the OpenAI client's real exception types).
End to end, a real loopback OpenAI-compatible server answers with each failure status, the real
ChatOpenAI client calls it, and the real app answers the JSON and the streaming API; the context
overflow also comes from the real local LLM given an oversized prompt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest

import chatlog as cl
from chatbot._service import ChatError, EmptyIndexError, _to_chat_error, retry_after_seconds
from chatbot._ui import error_text
from monitoring._instant_llm import InstantLLM

URL = "http://127.0.0.1:9/v1/chat/completions"
LLAMA_CPP_OVERFLOW = {
    "error": {
        "code": 400,
        "message": "request (9030 tokens) exceeds the available context size (4096 tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 9030,
        "n_ctx": 4096,
    }
}
OPENAI_OVERFLOW = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in "
        "9000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


def _status_error(
    cls: type[openai.APIStatusError], status: int, body: Any = None, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    """A real OpenAI client status error, as the client builds it from a response."""
    request = httpx2.Request("POST", URL)
    response = httpx2.Response(status, headers=headers or {}, json=body, request=request)
    message = (body or {}).get("error", {}).get("message", "") if isinstance(body, dict) else ""
    return cls(f"Error code: {status} - {message}", response=response, body=body)


def _request() -> httpx2.Request:
    return httpx2.Request("POST", URL)


# (exception, expected status, expected code, expected retry_after_s)
CASES: list[tuple[str, BaseException, int, str, int | None]] = [
    ("429 with Retry-After", _status_error(openai.RateLimitError, 429, None, {"Retry-After": "7"}), 503,
     "llm_rate_limited", 7),
    ("429 with retry-after-ms", _status_error(openai.RateLimitError, 429, None, {"retry-after-ms": "1500"}),
     503, "llm_rate_limited", 2),
    ("429 without a header", _status_error(openai.RateLimitError, 429), 503, "llm_rate_limited", 10),
    ("429 as a plain status error", _status_error(openai.APIStatusError, 429, None, {"Retry-After": "3"}),
     503, "llm_rate_limited", 3),
    ("401", _status_error(openai.AuthenticationError, 401), 502, "llm_auth_failed", None),
    ("403", _status_error(openai.PermissionDeniedError, 403), 502, "llm_auth_failed", None),
    ("llama.cpp context overflow", _status_error(openai.BadRequestError, 400, LLAMA_CPP_OVERFLOW), 413,
     "context_too_long", None),
    ("OpenAI context overflow", _status_error(openai.BadRequestError, 400, OPENAI_OVERFLOW), 413,
     "context_too_long", None),
    ("413 from the endpoint", _status_error(openai.APIStatusError, 413), 413, "context_too_long", None),
    ("other 400", _status_error(openai.BadRequestError, 400, {"error": {"message": "unknown model"}}), 502,
     "llm_error", None),
    ("404 model not found", _status_error(openai.NotFoundError, 404), 502, "llm_error", None),
    ("timeout", openai.APITimeoutError(_request()), 504, "llm_timeout", None),
    ("read timeout mid-stream (httpx)", httpx.ReadTimeout("timed out"), 504, "llm_timeout", None),
    ("read timeout mid-stream (httpx2)", httpx2.ReadTimeout("timed out"), 504, "llm_timeout", None),
    ("connection refused", openai.APIConnectionError(request=_request()), 503, "llm_unavailable", None),
    ("connection dropped mid-stream", httpx.RemoteProtocolError("peer closed"), 503, "llm_unavailable",
     None),
    ("503 from the endpoint", _status_error(openai.InternalServerError, 503, None, {"Retry-After": "4"}), 503,
     "llm_unavailable", 4),
    ("500", _status_error(openai.InternalServerError, 500), 502, "llm_error", None),
    ("502", _status_error(openai.InternalServerError, 502), 502, "llm_error", None),
    ("error event mid-stream", openai.APIError("overloaded", _request(), body=None), 502, "llm_error", None),
    ("empty index", EmptyIndexError("no documents"), 503, "empty_index", None),
    ("a bug", ValueError("boom"), 500, "internal_error", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry_after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_llm_failures_map_by_type_and_status(
    exc: BaseException, status: int, code: str, retry_after: int | None
) -> None:
    err = _to_chat_error(exc, "t1")
    assert (err.status_code, err.code, err.retry_after_s) == (status, code, retry_after)
    assert err.turn_id == "t1" and err.message
    assert ("Retry-After" in err.headers()) == (retry_after is not None)


def test_langchain_wrapped_errors_map_like_the_client_errors() -> None:
    from langchain_openai.chat_models.base import OpenAIContextOverflowError, OpenAIRateLimitError

    overflow = _status_error(OpenAIContextOverflowError, 400, OPENAI_OVERFLOW)  # type: ignore[type-abstract]
    limited = _status_error(OpenAIRateLimitError, 429, None, {"Retry-After": "9"})
    assert _to_chat_error(overflow, "t").code == "context_too_long"
    assert (_to_chat_error(limited, "t").code, _to_chat_error(limited, "t").retry_after_s) == (
        "llm_rate_limited",
        9,
    )


def test_messages_say_what_happened() -> None:
    auth = _to_chat_error(_status_error(openai.AuthenticationError, 401), "t")
    assert "credentials" in auth.message and "OPENAI_API_KEY" in auth.message
    assert (
        "too long"
        in _to_chat_error(_status_error(openai.BadRequestError, 400, LLAMA_CPP_OVERFLOW), "t").message
    )
    limited = _to_chat_error(_status_error(openai.RateLimitError, 429, None, {"Retry-After": "7"}), "t")
    assert "7 s" in limited.message
    assert ChatError(400, "x", "m").to_dict() == {"error": {"code": "x", "message": "m", "turn_id": None}}
    assert limited.to_dict()["error"]["retry_after_s"] == 7


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "12"}, now=now) == 12
    assert retry_after_seconds({"retry-after": "0.2"}, now=now) == 1
    assert retry_after_seconds({"retry-after-ms": "2500"}, now=now) == 3
    assert retry_after_seconds({"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, now=now) == 30
    assert retry_after_seconds({"retry-after": "soon"}, now=now) is None
    assert retry_after_seconds({}, now=now) is None


def test_the_ui_shows_each_failure_its_own_way() -> None:
    codes = ["llm_rate_limited", "llm_auth_failed", "context_too_long", "llm_timeout", "llm_unavailable",
             "llm_error", "empty_index", "turn_cancelled", "internal_error"]  # fmt: skip
    texts = [error_text(ChatError(500, code, "Same message.")) for code in codes]
    assert len(set(texts)) == len(codes), texts
    assert all("Same message." in t for t in texts)


# --- end to end: a real loopback endpoint that fails, the real client, the real app -------------
@pytest.fixture(scope="module")
def failing() -> Iterator[InstantLLM]:
    """The instant OpenAI-compatible server; tests set its failure mode."""
    with InstantLLM() as server:
        yield server


@pytest.fixture(scope="module")
def app(
    failing: InstantLLM,
    app_factory: Callable[..., contextlib.AbstractContextManager[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """One real app (JSON + SSE API) whose LLM is the failing server."""
    db = f"sqlite:///{tmp_path_factory.mktemp('errors') / 'chatlog.db'}"
    with app_factory(openai_base_url=failing.base_url, database_url=db) as base:
        yield {"url": base, "db": db}


E2E = [
    ("rate limited", 429, None, {"Retry-After": "17"}, 503, "llm_rate_limited", "17"),
    ("rate limited, no header", 429, None, {}, 503, "llm_rate_limited", "10"),
    ("bad key", 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, {},
     502, "llm_auth_failed", None),
    ("forbidden", 403, None, {}, 502, "llm_auth_failed", None),
    ("context too long", 400, LLAMA_CPP_OVERFLOW, {}, 413, "context_too_long", None),
    ("server error", 500, None, {}, 502, "llm_error", None),
    ("bad gateway", 502, None, {}, 502, "llm_error", None),
    ("overloaded", 503, None, {"Retry-After": "5"}, 503, "llm_unavailable", "5"),
]  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("upstream", "body", "headers", "status", "code", "retry_after"), [c[1:] for c in E2E],
                         ids=[c[0] for c in E2E])  # fmt: skip
def test_the_app_answers_each_llm_failure_with_its_status_code_and_header(
    app: dict[str, str],
    failing: InstantLLM,
    chatlog_for: Callable[[str], cl.ChatLog],
    stream: bool,
    upstream: int,
    body: Any,
    headers: dict[str, str],
    status: int,
    code: str,
    retry_after: str | None,
) -> None:
    failing.behaviour.fail_status, failing.behaviour.fail_body = upstream, body
    failing.behaviour.fail_headers = headers
    before = failing.chat_requests
    try:
        with httpx.Client(base_url=app["url"], timeout=60) as client:
            resp = client.post("/api/chat", json={"message": "How do I copy a file?", "stream": stream})
    finally:
        failing.behaviour.fail_status = None
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == code and err["message"]
    assert resp.headers.get("Retry-After") == retry_after
    assert failing.chat_requests - before == 1, "the client must not retry silently"
    row = chatlog_for(app["db"]).get_turn(err["turn_id"])
    assert row is not None and row["status"] == cl.STATUS_ERROR and row["error_type"] == code


@pytest.mark.llm
def test_an_oversized_prompt_to_the_real_llm_is_a_413(
    app_factory: Callable[..., contextlib.AbstractContextManager[str]], llm_server: str, tmp_path: Path
) -> None:
    message = "How do I copy a file? " + "Please explain every detail of copying files. " * 1200
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with (
        # Threshold 0: the passages always go in, so the oversized prompt reaches the LLM (a 0.40
        # threshold refuses this repetitive question before any call).
        app_factory(
            openai_base_url=llm_server, database_url=db, max_message_chars=len(message), score_threshold=0.0
        ) as base,
        httpx.Client(base_url=base, timeout=120) as client,
    ):
        resp = client.post("/api/chat", json={"message": message})
        streamed = client.post("/api/chat", json={"message": message, "stream": True})
    for r in (resp, streamed):
        assert r.status_code == 413, r.text
        err = r.json()["error"]
        assert err["code"] == "context_too_long" and "too long" in err["message"]
