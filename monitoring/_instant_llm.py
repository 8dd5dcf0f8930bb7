"""A zero-latency OpenAI-compatible chat endpoint, to expose the fixed cost of instrumentation.

It is a real HTTP server (FastAPI under uvicorn in a thread) speaking the OpenAI chat-completions
protocol, streaming included (token usage in the last chunk, as with ``stream_options``). It
answers at once with a fixed text, so a turn's time is the app's own work: the benchmark and the
high-volume tests (hundreds of turns with the collector down) use it where the real local model
would take hours.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
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


def _usage(messages: list[dict[str, Any]]) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(ANSWER_PIECES),
        "total_tokens": prompt + len(ANSWER_PIECES),
    }


def _stream(model: str, messages: list[dict[str, Any]]) -> Iterator[str]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    yield _chunk(cid, model, {"role": "assistant", "content": ""})
    for piece in ANSWER_PIECES:
        yield _chunk(cid, model, {"content": piece})
    yield _chunk(cid, model, {}, finish="stop")
    last = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    yield f"data: {json.dumps({**last, 'choices': [], 'usage': _usage(messages)})}\n\n"
    yield "data: [DONE]\n\n"


def build_app() -> FastAPI:
    """The FastAPI app: ``GET /v1/models`` and ``POST /v1/chat/completions``."""
    app = new_app()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "instant", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        model, messages = str(body.get("model", "instant")), list(body.get("messages", []))
        if body.get("stream"):
            return StreamingResponse(_stream(model, messages), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(ANSWER_PIECES)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(messages),
            }
        )

    return app


class InstantLLM:
    """Serve :func:`build_app` on a free 127.0.0.1 port in a thread; ``base_url`` ends in ``/v1``."""

    def __init__(self) -> None:
        """Pick a port; :meth:`start` serves."""
        self._server = ThreadedServer(build_app(), "/v1/models", name="instant-llm", timeout_s=30)
        self.port = self._server.port
        self.base_url = f"{self._server.base}/v1"

    def start(self) -> InstantLLM:
        """Start and wait until ``/v1/models`` answers."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop(timeout_s=10)

    def __enter__(self) -> InstantLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
