"""One chat turn, end to end: validate, log, run the chain, stream, log again, notify observers.

The chat log is written first: a turn row exists (``in_progress``) before the model is called, and
it is completed before the last event reaches the client, whatever happened in between. A turn runs
in its own asyncio task that feeds a queue, so a client that disconnects mid-stream does not cut a
turn short, and the tracing context of the turn never leaks into the HTTP server's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.runnables import Runnable

import chatlog as cl
from chatbot import _prompts as prompts
from chatbot._chain import Retrieval
from chatbot._observer import TurnObserver, dont_throw
from ragloop.settings import Settings

log = logging.getLogger(__name__)

# C0/C1 control characters other than tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class ChatError(Exception):
    """A turn that cannot be answered, with an HTTP status, a stable code and a human message."""

    def __init__(self, status_code: int, code: str, message: str, turn_id: str | None = None) -> None:
        """Describe the failure; ``turn_id`` names the chat-log row that records it."""
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.turn_id = turn_id

    def to_dict(self) -> dict[str, Any]:
        """JSON body of an API error."""
        return {"error": {"code": self.code, "message": self.message, "turn_id": self.turn_id}}


@dataclass
class Source:
    """A retrieved passage as shown to users; ``index`` is its number in the prompt."""

    index: int
    chunk_id: str
    text: str
    score: float
    source: str
    title: str
    cited: bool = False


@dataclass
class TurnResult:
    """Everything a client needs about a finished turn."""

    turn_id: str
    conversation_id: str
    status: str
    answer: str = ""
    standalone_question: str | None = None
    sources: list[Source] = field(default_factory=list)
    model: str | None = None
    prompt_version: str = prompts.PROMPT_VERSION
    input_tokens: int | None = None
    output_tokens: int | None = None
    retrieval_ms: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    error_type: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class TurnEvent:
    """One streamed event: ``started``, ``sources``, ``token``, ``done`` or ``error``."""

    kind: str
    data: dict[str, Any]


def validate_message(message: Any, max_chars: int) -> str:
    """Return the message stripped, or raise :class:`ChatError` saying what is wrong with it."""
    if not isinstance(message, str) or not message.strip():
        raise ChatError(422, "empty_message", "Please type a question: the message is empty.")
    if len(message) > max_chars:
        raise ChatError(
            413, "message_too_long", f"The message has {len(message)} characters; the limit is {max_chars}."
        )
    if _CONTROL.search(message):
        raise ChatError(422, "control_characters", "The message contains control characters; remove them.")
    return unicodedata.normalize("NFC", message.strip())


class ChatService:
    """Runs turns against a chain, writing every turn and feedback to the chat log."""

    def __init__(
        self,
        settings: Settings,
        chatlog: cl.ChatLog,
        chain: Runnable,
        retriever: Any,
        observer: TurnObserver | None = None,
    ) -> None:
        """Wire a service; :func:`chatbot.build_service` builds one from settings."""
        self.settings = settings
        self.chatlog = chatlog
        self.chain = chain
        self.retriever = retriever
        self.observer = observer or TurnObserver()
        self.embedding_model = getattr(getattr(retriever, "embedder", None), "model_name", None)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- conversations & feedback ----------------------------------------------------------
    def new_conversation(self) -> str:
        """Start a conversation."""
        return self.chatlog.create_conversation()

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete a conversation; its turns stay in the log."""
        if not self.chatlog.delete_conversation(conversation_id):
            raise ChatError(404, "unknown_conversation", "That conversation does not exist (any more).")

    def add_feedback(
        self,
        turn_id: str,
        value: int,
        comment: str | None = None,
        source: str = "api",
        *,
        rater: str = "anonymous",
    ) -> cl.FeedbackResult:
        """Store ``rater``'s thumbs up (+1) / down (-1) and comment for a turn: one row per rater.

        A second call by the same rater (a toggle, a comment after the thumbs) updates that row.

        Returns:
            The row id, whether it is new, and the rater's previous value.
        """
        if comment is not None and len(comment) > self.settings.max_message_chars:
            raise ChatError(413, "comment_too_long", "The comment is too long.")
        try:
            result = self.chatlog.add_feedback(turn_id, value, comment, rater=rater, source=source)
        except cl.UnknownTurnError:
            raise ChatError(404, "unknown_turn", f"No turn with id {turn_id!r}.") from None
        except ValueError as exc:
            raise ChatError(422, "bad_feedback", str(exc)) from None
        turn = self.chatlog.get_turn(turn_id) or {"turn_id": turn_id}
        dont_throw(self.observer.on_feedback)(turn, value, comment, previous_value=result.previous_value)
        return result

    def health(self) -> dict[str, Any]:
        """Liveness and a few facts about the index and the model."""
        try:
            chunks = int(self.retriever.count())
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            return {"status": "degraded", "index": f"unavailable: {exc}"}
        return {
            "status": "ok",
            "chunks": chunks,
            "model": self.settings.llm_model,
            "prompt_version": prompts.PROMPT_VERSION,
        }

    # --- turns -----------------------------------------------------------------------------
    async def run_turn(self, message: Any, conversation_id: str | None = None) -> TurnResult:
        """Run a turn to completion; raise :class:`ChatError` if it failed."""
        result: TurnResult | None = None
        async for event in self.stream_turn(message, conversation_id):
            if event.kind == "done":
                result = event.data["result"]
        assert result is not None  # stream_turn always ends with done or raises
        return result

    async def stream_turn(self, message: Any, conversation_id: str | None = None) -> AsyncIterator[TurnEvent]:
        """Yield the events of one turn; errors before any token raise :class:`ChatError`.

        Errors after tokens were streamed arrive as an ``error`` event followed by ``done``.
        """
        turn_id = cl.new_id()
        text = self._admit(turn_id, message, conversation_id)
        if conversation_id is None:
            conversation_id = self.new_conversation()
        queue: asyncio.Queue[TurnEvent | None] = asyncio.Queue()
        task = asyncio.create_task(self._produce(queue, turn_id, conversation_id, text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        drained = False
        try:
            while (event := await queue.get()) is not None:
                yield event
            drained = True
        finally:
            if not drained:
                # The client went away: the turn still finishes and is logged by its task.
                task.add_done_callback(_log_task_failure)
        await task  # re-raises a ChatError that happened before the first token

    def _admit(self, turn_id: str, message: Any, conversation_id: str | None) -> str:
        """Validate input; a rejected turn is logged with its error before the error is raised."""
        # PostgreSQL text cannot hold NUL: log it visibly escaped rather than fail to log the turn.
        raw = (message if isinstance(message, str) else repr(message)).replace("\x00", "\\x00")
        try:
            text = validate_message(message, self.settings.max_message_chars)
            if conversation_id is not None and not self.chatlog.conversation_exists(conversation_id):
                raise ChatError(
                    404,
                    "unknown_conversation",
                    "That conversation does not exist (any more): start a new one.",
                )
        except ChatError as err:
            err.turn_id = turn_id
            self.chatlog.start_turn(
                turn_id=turn_id,
                conversation_id=conversation_id,
                user_message=raw[: 4 * self.settings.max_message_chars],
                status=cl.STATUS_REJECTED,
                completed_at=cl.now(),
                error_type=err.code,
                error=err.message,
                prompt_version=prompts.PROMPT_VERSION,
            )
            raise
        return text

    async def _produce(
        self, queue: asyncio.Queue[TurnEvent | None], turn_id: str, cid: str, text: str
    ) -> None:
        turn = {"turn_id": turn_id, "conversation_id": cid, "user_message": text}
        scope: AbstractContextManager[None] = _guarded_scope(self.observer.turn_scope, turn)
        try:
            with scope:
                await self._run_chain(queue, turn, text)
        finally:
            await queue.put(None)

    async def _run_chain(
        self, queue: asyncio.Queue[TurnEvent | None], turn: dict[str, Any], text: str
    ) -> None:
        started = time.perf_counter()
        state = _TurnState(
            turn_id=turn["turn_id"], conversation_id=turn["conversation_id"], model=self.settings.llm_model
        )
        history = self.chatlog.history(turn["conversation_id"], self.settings.history_turns)
        ids = dont_throw(self.observer.trace_ids)()
        with _guarded_scope(self.observer.chatlog_scope, "start_turn"):
            self.chatlog.start_turn(
                turn_id=state.turn_id,
                conversation_id=state.conversation_id,
                user_message=text,
                prompt_version=prompts.PROMPT_VERSION,
                model=self.settings.llm_model,
                embedding_model=self.embedding_model,
                trace_id=ids[0] if ids else None,
                span_id=ids[1] if ids else None,
                index_version=_index_version(self.retriever),
            )
        await queue.put(
            TurnEvent("started", {"turn_id": state.turn_id, "conversation_id": state.conversation_id})
        )
        config: dict[str, Any] = {
            "run_name": "rag_chain",
            "metadata": {"turn_id": state.turn_id, "conversation_id": state.conversation_id},
        }
        config.update(dont_throw(self.observer.langchain_config)(turn) or {})
        try:
            stream = self.chain.astream({"message": text, "history": history}, config=config)  # type: ignore[arg-type]
            async for chunk in stream:
                await self._consume(queue, state, chunk, started, turn)
            state.finish_ok()
        except Exception as exc:  # noqa: BLE001 - every failure is logged and reported
            state.fail(exc)
            if not state.answer:
                await self._finish(state, started, turn)
                raise _to_chat_error(exc, state.turn_id) from exc
            await queue.put(TurnEvent("error", _to_chat_error(exc, state.turn_id).to_dict()))
        result = await self._finish(state, started, turn)
        await queue.put(TurnEvent("done", {"result": result}))

    async def _consume(
        self,
        queue: asyncio.Queue[TurnEvent | None],
        state: _TurnState,
        chunk: dict[str, Any],
        started: float,
        turn: dict[str, Any],
    ) -> None:
        if "question" in chunk:
            state.question = chunk["question"]
        if "retrieval" in chunk:
            retrieval: Retrieval = chunk["retrieval"]
            state.set_retrieval(retrieval)
            dont_throw(self.observer.on_retrieval)(turn, retrieval)
            if not retrieval.retrieved:
                raise EmptyIndexError("no documents are indexed")
            await queue.put(
                TurnEvent(
                    "sources",
                    {"sources": [asdict(s) for s in state.sources], "standalone_question": state.question},
                )
            )
        if "answer" in chunk:
            piece = chunk["answer"]
            content = str(piece.content or "")
            usage = getattr(piece, "usage_metadata", None)
            if usage:
                state.input_tokens = usage.get("input_tokens")
                state.output_tokens = usage.get("output_tokens")
            if content:
                if state.ttft_ms is None:
                    state.ttft_ms = (time.perf_counter() - started) * 1000
                    dont_throw(self.observer.on_first_token)(turn, state.ttft_ms)
                state.answer += content
                await queue.put(TurnEvent("token", {"text": content}))

    async def _finish(self, state: _TurnState, started: float, turn: dict[str, Any]) -> TurnResult:
        state.total_ms = (time.perf_counter() - started) * 1000
        result = state.result()
        row = state.row()
        with _guarded_scope(self.observer.chatlog_scope, "finish_turn"):
            self.chatlog.finish_turn(state.turn_id, **row)
        dont_throw(self.observer.on_turn_end)({**turn, **row, "turn_id": state.turn_id})
        return result


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("turn finished after its client left: %s", task.exception())


class EmptyIndexError(RuntimeError):
    """Retrieval returned nothing at all: the index is empty."""


@dataclass
class _TurnState:
    turn_id: str
    conversation_id: str
    model: str
    question: str | None = None
    retrieval: Retrieval | None = None
    sources: list[Source] = field(default_factory=list)
    answer: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    status: str = cl.STATUS_IN_PROGRESS
    error: BaseException | None = None

    def set_retrieval(self, retrieval: Retrieval) -> None:
        self.retrieval = retrieval
        self.sources = [
            Source(i, c.chunk_id, c.text, float(c.score), c.source, c.title)
            for i, c in enumerate(retrieval.relevant, start=1)
        ]

    def finish_ok(self) -> None:
        no_context = self.retrieval is not None and not self.retrieval.relevant
        self.status = cl.STATUS_NO_CONTEXT if no_context else cl.STATUS_OK
        for n in prompts.parse_citations(self.answer, len(self.sources)):
            self.sources[n - 1].cited = True

    def fail(self, exc: BaseException) -> None:
        self.status = cl.STATUS_ERROR
        self.error = exc
        log.warning("turn %s failed: %s: %s", self.turn_id, type(exc).__name__, exc)

    def result(self) -> TurnResult:
        err = _to_chat_error(self.error, self.turn_id) if self.error else None
        return TurnResult(
            turn_id=self.turn_id,
            conversation_id=self.conversation_id,
            status=self.status,
            answer=self.answer,
            standalone_question=self.question,
            sources=self.sources,
            model=self.model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            retrieval_ms=self.retrieval.retrieval_ms if self.retrieval else None,
            ttft_ms=self.ttft_ms,
            total_ms=self.total_ms,
            error_type=err.code if err else None,
            error=err.message if err else None,
        )

    def row(self) -> dict[str, Any]:
        res = self.result()
        r = self.retrieval
        retrieved = [
            {
                "chunk_id": c.chunk_id,
                "score": float(c.score),
                "text": c.text,
                "source": c.source,
                "title": c.title,
            }
            for c in (r.retrieved if r else [])
        ]
        return {
            "status": self.status,
            "standalone_question": self.question,
            "answer": self.answer,
            "query_embedding": r.query_embedding if r is not None else None,
            "retrieved": retrieved,
            "cited": [s.index for s in self.sources if s.cited],
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "retrieval_ms": res.retrieval_ms,
            "ttft_ms": self.ttft_ms,
            "total_ms": self.total_ms,
            "error_type": res.error_type,
            "error": res.error,
        }


def _to_chat_error(exc: BaseException | None, turn_id: str) -> ChatError:
    """Map a failure inside the chain to what the user is told."""
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, EmptyIndexError):
        return ChatError(
            503, "empty_index", "No documents are indexed yet: run `ragloop ingest PATH` first.", turn_id
        )
    name = type(exc).__name__
    if "Timeout" in name:
        return ChatError(
            504, "llm_timeout", "The language model did not answer in time. Please try again.", turn_id
        )
    if "Connection" in name or "APIStatusError" in name or "InternalServerError" in name:
        return ChatError(
            503,
            "llm_unavailable",
            "The language model is unavailable right now. Please try again later.",
            turn_id,
        )
    return ChatError(
        500, "internal_error", f"Something went wrong answering this question ({name}).", turn_id
    )


def _index_version(retriever: Any) -> str | None:
    try:
        return str(retriever.index_version)
    except Exception:  # noqa: BLE001 - informational only
        return None


class _guarded_scope(AbstractContextManager[None]):
    """Enter an observer's context manager; if the observer fails, carry on without it."""

    def __init__(self, factory: Any, arg: Any) -> None:
        self._cm: AbstractContextManager[None] | None = None
        try:
            self._cm = factory(arg)
        except Exception:  # noqa: BLE001
            log.warning("observer scope failed to open", exc_info=True)

    def __enter__(self) -> None:
        if self._cm is not None:
            try:
                self._cm.__enter__()
            except Exception:  # noqa: BLE001
                log.warning("observer scope failed to enter", exc_info=True)
                self._cm = None

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            try:
                self._cm.__exit__(*exc)
            except Exception:  # noqa: BLE001
                log.warning("observer scope failed to exit", exc_info=True)
        return None
