"""A zero-latency OpenAI-compatible chat endpoint, to expose the fixed cost of instrumentation.

It is a real HTTP server (FastAPI under uvicorn in a thread) speaking the OpenAI chat-completions
protocol, streaming included (token usage in the last chunk, as with ``stream_options``). It
answers at once with a fixed text, so a turn's time is the app's own work: the benchmark and the
high-volume tests (hundreds of turns with the collector down) use it where the real local model
would take hours.

Options for the chat service's tests and benchmarks: a longer answer streamed with a delay between
tokens, no token usage at all (as some OpenAI-compatible servers do), and a failure mode that
answers every chat request with a given HTTP status, body and headers (429 with ``Retry-After``,
401, 400 context-length, 5xx), switchable while the server runs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ragloop._fastapi import new_app
from ragloop.process import ThreadedServer

#: The answer, cut into streamed pieces; it cites source [1] like a real answer would.
ANSWER_PIECES = ("Use ", "the ", "documented ", "function ", "[1]", ".")


def _chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


@dataclass
class Behaviour:
    """How the server answers; change the fields of a running server's ``behaviour`` at will.

    Attributes:
        pieces: the answer, as the streamed pieces (one piece = one token for usage).
        token_delay_s: seconds between streamed pieces (0: all at once).
        usage: send token usage (the last streamed chunk, the ``usage`` field); False sends none, a
            dict is sent as it is (an endpoint's partial usage, e.g. ``{"total_tokens": 9}``).
        fail_status: answer every chat request with this HTTP status instead (None: answer).
        fail_body: the JSON body of a failure (default: an OpenAI-style error object).
        fail_headers: headers of a failure, e.g. ``{"Retry-After": "7"}``.
        finish_reason: why the answer ended (``"length"``: as an endpoint cut at ``max_tokens``).
    """

    pieces: Sequence[str] = ANSWER_PIECES
    token_delay_s: float = 0.0
    usage: bool | dict[str, int] = True
    fail_status: int | None = None
    fail_body: dict[str, Any] | None = None
    fail_headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"


def _usage(messages: list[dict[str, Any]], how: Behaviour) -> dict[str, int]:
    if isinstance(how.usage, dict):
        return dict(how.usage)
    pieces = how.pieces
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
    return {"prompt_tokens": prompt, "completion_tokens": len(pieces), "total_tokens": prompt + len(pieces)}


async def _stream(model: str, messages: list[dict[str, Any]], how: Behaviour) -> AsyncIterator[str]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    yield _chunk(cid, model, {"role": "assistant", "content": ""})
    for piece in how.pieces:
        if how.token_delay_s > 0:
            await asyncio.sleep(how.token_delay_s)
        yield _chunk(cid, model, {"content": piece})
    yield _chunk(cid, model, {}, finish=how.finish_reason)
    if how.usage:
        last = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        yield f"data: {json.dumps({**last, 'choices': [], 'usage': _usage(messages, how)})}\n\n"
    yield "data: [DONE]\n\n"


def _failure(how: Behaviour) -> JSONResponse:
    status = int(how.fail_status or 500)
    message = f"instant LLM failing with HTTP {status}"
    body = how.fail_body or {"error": {"message": message, "type": "instant_failure", "code": status}}
    return JSONResponse(body, status_code=status, headers=dict(how.fail_headers))


def build_app(behaviour: Behaviour | None = None, counter: _Counter | None = None) -> FastAPI:
    """The FastAPI app: ``GET /v1/models`` and ``POST /v1/chat/completions``.

    Args:
        behaviour: how to answer (read on every request); the defaults answer at once.
        counter: counts chat requests (tests check that a failure was not retried).
    """
    how = behaviour or Behaviour()
    app = new_app()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "instant", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        if counter is not None:
            counter.add()
        body = await request.json()
        if how.fail_status is not None:
            return _failure(how)
        model, messages = str(body.get("model", "instant")), list(body.get("messages", []))
        if body.get("stream"):
            return StreamingResponse(_stream(model, messages, how), media_type="text/event-stream")
        reply: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(how.pieces)},
                    "finish_reason": how.finish_reason,
                }
            ],
        }
        if how.usage:
            reply["usage"] = _usage(messages, how)
        return JSONResponse(reply)

    return app


class _Counter:
    """A thread-safe request counter (the server runs in its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


class InstantLLM:
    """Serve :func:`build_app` on a free 127.0.0.1 port in a thread; ``base_url`` ends in ``/v1``."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        """Pick a port; :meth:`start` serves. ``behaviour`` may be changed while serving."""
        self.behaviour = behaviour or Behaviour()
        self._counter = _Counter()
        app = build_app(self.behaviour, self._counter)
        self._server = ThreadedServer(app, "/v1/models", name="instant-llm", timeout_s=30)
        self.port = self._server.port
        self.base_url = f"{self._server.base}/v1"

    def start(self) -> InstantLLM:
        """Start and wait until ``/v1/models`` answers."""
        self._server.start()
        return self

    @property
    def chat_requests(self) -> int:
        """Chat-completion requests received so far."""
        return self._counter.value

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop(timeout_s=10)

    def __enter__(self) -> InstantLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
