"""The web app: a FastAPI JSON/SSE API and the Gradio UI mounted at ``/``.

Routes (every one async; model calls are awaited, blocking chat-log and index calls run in threads):
    POST /api/chat: one turn; JSON ``TurnResult`` or server-sent events when streaming.
    POST /api/feedback: thumbs up/down (+1/-1, also "up"/"down") and a comment for a turn.
    POST /api/conversations, DELETE /api/conversations/{id}: start or delete a conversation.
    GET /healthz: liveness plus index size and model, and background indexing progress ("indexing").
    GET /documents/{root}/{path}: an indexed document, read-only (chatbot._documents); 404 otherwise.
    GET /readyz (also /healthz?ready=1): readiness, naming each dependency that is down (503 when a
        required one is: LLM, chat log, Chroma); see ``chatbot._readiness``.

Every error, including request-validation errors, has one JSON shape:
``{"error": {"code", "message", "turn_id"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, StrictBool
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatbot._auth import api_check_owner, api_check_turn, api_conversation
from chatbot._documents import add_document_routes
from chatbot._observer import TurnObserver, dont_throw
from chatbot._ratelimit import check_turn
from chatbot._readiness import readiness_from
from chatbot._service import ERROR_STATUS, ChatError, ChatService, TurnEvent, chatlog_unavailable
from chatbot._spool import DB_UNAVAILABLE
from ragloop._fastapi import native_telemetry_off, new_app
from ragloop.settings import Settings

log = logging.getLogger(__name__)

_ID_MAX = 64  # the chat log's id columns are VARCHAR(64)


class ChatRequest(BaseModel):
    """Body of ``POST /api/chat``; ``message`` is validated by the service so rejections get logged."""

    message: Any = None
    conversation_id: str | None = Field(None, max_length=_ID_MAX)
    stream: StrictBool = False  # true or false, not "yes" or 1


class FeedbackRequest(BaseModel):
    """Body of ``POST /api/feedback``."""

    turn_id: str = Field(..., min_length=1, max_length=_ID_MAX)
    value: Any
    comment: str | None = None
    # One feedback row per (turn, rater): the same rater rating again updates it.
    rater: str = Field("anonymous", min_length=1, max_length=200)


def parse_feedback_value(value: Any) -> int:
    """Map ``1``/``-1``/``"up"``/``"down"`` (and a few spellings) to +1/-1.

    Raises:
        ChatError: 422 ``bad_feedback`` for anything else.
    """
    if isinstance(value, bool):
        value = None  # true/false is ambiguous for a thumbs value: refuse it
    if isinstance(value, str):
        value = {"up": 1, "+1": 1, "1": 1, "down": -1, "-1": -1}.get(value.strip().lower())
    if isinstance(value, int | float) and value in (1, -1):
        return int(value)
    raise ChatError(422, "bad_feedback", 'Feedback value must be 1 or -1 ("up" or "down").')


def sse_event(kind: str, data: dict[str, Any]) -> bytes:
    """Encode one server-sent event with a JSON payload."""
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _event_payload(event: TurnEvent) -> dict[str, Any]:
    if event.kind == "done":
        return {"result": event.data["result"].to_dict()}
    return event.data


def _error_response(status: int, code: str, message: str, turn_id: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "turn_id": turn_id}}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)


def _wrong_method(app: FastAPI, request: Request) -> JSONResponse | None:
    """405 with ``Allow`` when the app has the path under other methods (``GET /api/chat``), else None.

    Routes are matched in order and the Gradio UI mounted at "/" takes whatever no route of the
    app took, so a wrong method on an app path must be answered by a catch-all route.
    """
    from starlette.routing import Match, Route

    allowed: set[str] = set()
    for route in app.routes:
        if isinstance(route, Route) and route.name not in _CATCH_ALLS and route.methods:
            match, _ = route.matches({**request.scope, "method": next(iter(route.methods))})
            if match is Match.FULL:
                allowed |= route.methods
    allowed.discard("HEAD")
    if not allowed or request.method in allowed:
        return None
    methods = ", ".join(sorted(allowed))
    response = _error_response(405, "method_not_allowed", f"{request.url.path} takes {methods}.")
    response.headers["allow"] = methods
    return response


#: The routes that answer what no other route took (their methods are not "allowed" methods).
_CATCH_ALLS = ("unknown_api_route", "probe_wrong_method")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChatError)
    async def _chat_error(_request: Request, exc: ChatError) -> JSONResponse:
        # Each failure has its own status and code; a rate limit also says when to come back.
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, "http_error", str(exc.detail))

    async def _chatlog_down(_request: Request, _exc: Exception) -> JSONResponse:
        # Any route whose chat-log read or write met a dead database: 503 + Retry-After, not a 500.
        err = chatlog_unavailable()
        return JSONResponse(err.to_dict(), status_code=err.status_code, headers=err.headers())

    for kind in DB_UNAVAILABLE:
        app.add_exception_handler(kind, _chatlog_down)


async def _pull_until_answer(events: AsyncIterator[TurnEvent]) -> list[TurnEvent]:
    """Buffer events up to the first token (or the end): a failure before it raises ChatError here."""
    buffered: list[TurnEvent] = []
    while not buffered or buffered[-1].kind in ("started", "sources"):
        try:
            buffered.append(await anext(events))
        except StopAsyncIteration:
            break
    return buffered


def _stream_response(buffered: list[TurnEvent], events: AsyncIterator[TurnEvent]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for event in buffered:
            yield sse_event(event.kind, _event_payload(event))
        async for event in events:
            yield sse_event(event.kind, _event_payload(event))

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


def _add_chat_routes(app: FastAPI, service: ChatService) -> None:
    @app.post("/api/chat", response_model=None)
    async def chat(req: ChatRequest, request: Request) -> Response:
        """Run one turn; stream server-sent events if asked to."""
        await check_turn(service, request)  # per-user and per-IP rate limits: 429 rate_limited
        wants_sse = req.stream or "text/event-stream" in request.headers.get("accept", "")
        if not wants_sse:
            result = await service.run_turn(req.message, await api_conversation(service, req, request))
            # A failure after some tokens: the partial result, with the failure's own status.
            status = ERROR_STATUS.get(result.error_type or "", 500) if result.error_type else 200
            return JSONResponse(result.to_dict(), status_code=status)
        events = aiter(service.stream_turn(req.message, await api_conversation(service, req, request)))
        # Hold the response until the first token: a failure before it becomes a JSON 4xx/5xx
        # (the service raises ChatError then) instead of a 200 event stream that ends in an error.
        buffered = await _pull_until_answer(events)
        return _stream_response(buffered, events)

    @app.post("/api/feedback", status_code=201)
    async def add_feedback(req: FeedbackRequest, request: Request) -> dict[str, Any]:
        """Store thumbs up/down and an optional comment for a turn of the caller's conversation."""
        value = parse_feedback_value(req.value)
        await api_check_turn(service, req.turn_id, request)  # 404 unknown_turn: not the caller's
        result = await asyncio.to_thread(
            functools.partial(service.add_feedback, req.turn_id, value, req.comment, "api", rater=req.rater)
        )
        return {
            "feedback_id": result.feedback_id,
            "turn_id": req.turn_id,
            "rater": req.rater,
            "value": value,
            "created": result.created,
            "previous_value": result.previous_value,
        }

    @app.post("/api/conversations", status_code=201)
    async def new_conversation() -> dict[str, str]:
        """Start a conversation."""
        return {"conversation_id": await asyncio.to_thread(service.new_conversation)}

    @app.delete("/api/conversations/{conversation_id}")
    async def delete_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        """Delete a conversation and its content; ``report`` says what was removed and what is kept where."""
        from chatbot._erasure import deletion_report

        await api_check_owner(service, conversation_id, request)
        counts = await asyncio.to_thread(service.delete_conversation, conversation_id)
        report = deletion_report(counts, service.settings)
        return {"conversation_id": conversation_id, "deleted": True, "report": report.as_dict()}

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unknown_api_route(rest: str, request: Request) -> JSONResponse:
        """Answer unknown API paths here: the UI mounted at "/" would reply with an HTML-ish 404."""
        return _wrong_method(app, request) or _error_response(
            404, "not_found", f"No API route {request.method} /api/{rest}."
        )

    readiness = readiness_from(service.settings, service)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: each dependency's state (cached probes) and the admission queue."""
        ready = await readiness.check()
        ready["admission"] = service.admission.snapshot()
        ready["chatlog_spool"] = service.spool.snapshot()  # accepted turns waiting for the chat log
        return JSONResponse(ready, status_code=503 if ready["status"] == "not_ready" else 200)

    @app.get("/healthz")
    async def healthz(ready: bool = False) -> JSONResponse:
        """Liveness, index size and model; ``?ready=1`` answers like ``/readyz``."""
        if ready:
            return await readyz()
        health = await asyncio.to_thread(service.health)
        health["indexing"] = _indexing_progress()  # background indexing (issue 11: first answer)
        return JSONResponse(health, status_code=200 if health.get("status") == "ok" else 503)

    @app.api_route("/healthz", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    @app.api_route("/readyz", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def probe_wrong_method(request: Request) -> JSONResponse:
        """405 in the API's error shape (the UI mounted at "/" would answer its own 404)."""
        return _wrong_method(app, request) or _error_response(404, "not_found", "Not found.")


def _indexing_progress() -> dict[str, Any]:
    from retrieval import index_progress

    return index_progress()


def _warm_up(service: ChatService) -> None:
    """Load the embedding model at start-up so the first question is not the slow one."""
    embedder = getattr(service.retriever, "embedder", None)
    if embedder is not None and hasattr(embedder, "embed_query"):
        embedder.embed_query("warm-up")


def create_app(
    settings: Settings,
    service: ChatService | None = None,
    observer: TurnObserver | None = None,
    *,
    extra_lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """Build the FastAPI app with the API routes and the Gradio UI mounted at ``/``.

    Args:
        settings: configuration (LLM endpoint, index, chat log, limits).
        service: a ready chat service; built from ``settings`` when omitted.
        observer: telemetry; ``monitoring.setup_telemetry(settings)`` when omitted. If it has an
            ``instrument_app(app)`` method, it is called (HTTP spans, ``/metrics``).
        extra_lifespan: the composition root's lifespan (``ragloop.app.create_asgi_app``), entered
            after the warm-up; it then owns shutting down the observer and the chat log. Without
            it the app shuts down the observer, and the chat log of a service it built itself.

    The application users run is ``ragloop.app.create_asgi_app`` (online evaluator, outbox worker,
    sinks); calling this directly gives the bare chat app, for tests and benchmarks.

    Returns:
        The app, ready for uvicorn.
    """
    import gradio as gr

    from chatbot._auth import install_auth
    from chatbot._ui import build_ui, ui_mount_kwargs

    owns_service = service is None
    if observer is None:
        observer = service.observer if service is not None else _default_observer(settings)
    if service is None:
        from chatbot._factory import build_service

        service = build_service(settings, observer=observer)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(dont_throw(_warm_up), service)
        if extra_lifespan is not None:
            async with extra_lifespan(_app):
                log.info("ragloop app ready (model %s at %s)", settings.llm_model, settings.llm_base_url)
                yield
            return
        log.info("ragloop app ready (model %s at %s)", settings.llm_model, settings.llm_base_url)
        yield
        dont_throw(observer.shutdown)()
        if owns_service:
            service.chatlog.close()

    app = new_app(title="ragloop", version="0.1.0", lifespan=lifespan)
    app.state.service = service
    app.state.settings = settings
    _install_error_handlers(app)
    install_auth(app, settings)  # /login, /logout and who each request is (chatbot/_auth.py)
    _add_chat_routes(app, service)
    add_document_routes(app, service.settings)  # GET /documents/{root}/{path}: indexed files, read-only
    instrument = getattr(observer, "instrument_app", None)
    if callable(instrument):
        dont_throw(instrument)(app)
    # Mounted last: a mount at "/" would shadow any route added after it.
    return gr.mount_gradio_app(
        app,
        build_ui(service),
        path="/",
        footer_links=[],
        app_kwargs=native_telemetry_off(),
        **ui_mount_kwargs(app),
    )


def _default_observer(settings: Settings) -> TurnObserver:
    import monitoring
    from chatbot._prompts import PROMPT_VERSION

    # monitoring.Telemetry implements the observer's methods structurally (it may not import chatbot).
    return cast(TurnObserver, monitoring.setup_telemetry(settings, prompt_version=PROMPT_VERSION))
