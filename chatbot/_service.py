"""One chat turn, end to end: validate, log, run the chain, stream, log again, notify observers.

The chat log is written first: a turn row exists (``in_progress``) before the model is called, and
it is completed before the last event reaches the client, whatever happened in between. A turn runs
in its own asyncio task that feeds a queue, so the tracing context of the turn never leaks into the
HTTP server's.

The event loop never waits on the database or the index: every chat-log and index call runs in a
worker thread (``asyncio.to_thread``; the chain's retrieve step runs in LangChain's executor), so a
slow write (a SQLite write lock held by another process, a slow PostgreSQL) delays only its own
turn, never other users' streams.

A turn whose client goes away (the stream is closed or its task cancelled) or whose server shuts
down is cancelled: the model call stops, and the row ends ``cancelled`` with the partial answer.
:meth:`ChatService.drain` lets the turns in flight finish, within a bound, at shutdown.

Token usage counts every LLM call of the turn (the condense step's and the answer's), read from
LangChain's callbacks; when any call's usage is unknown (the endpoint sent none) the turn's usage
is stored as unknown (None), never as 0.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import functools
import logging
import math
import re
import time
import unicodedata
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable

import chatlog as cl
from chatbot import _prompts as prompts
from chatbot._admission import BUSY_STATUS, Admission, Refused
from chatbot._chain import IndexUnavailableError, Retrieval
from chatbot._gate import GateOutcome
from chatbot._observer import TurnObserver, dont_throw
from chatbot._spool import (
    CHATLOG_MESSAGE,
    CHATLOG_RETRY_AFTER_S,
    CHATLOG_UNAVAILABLE,
    DB_UNAVAILABLE,
    ChatlogSpool,
    is_db_outage,
)
from ragloop.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# C0/C1 control characters other than tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

#: Status of a turn cut short (client gone, server shutting down).
STATUS_CANCELLED = cl.STATUS_CANCELLED

#: HTTP status of each error code a turn can end with (the JSON API uses it for late failures too).
ERROR_STATUS: dict[str, int] = {
    "empty_index": 503,
    "llm_rate_limited": 503,
    "llm_auth_failed": 502,
    "context_too_long": 413,
    "llm_timeout": 504,
    "llm_unavailable": 503,
    "llm_error": 502,
    "turn_cancelled": 503,
    "internal_error": 500,
    CHATLOG_UNAVAILABLE: 503,  # the chat-log database is down (chatbot/_spool.py)
    "index_unavailable": 503,  # the Chroma server is down (chatbot/_chain.py)
    **BUSY_STATUS,  # refused by the admission queue (backpressure): 429 / 503 with Retry-After
}
#: Seconds a client is told to wait after a rate limit when the endpoint did not say (Retry-After).
DEFAULT_RETRY_AFTER_S = 10


class ChatError(Exception):
    """A turn that cannot be answered, with an HTTP status, a stable code and a human message."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        turn_id: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        """Describe the failure; ``turn_id`` names the chat-log row that records it.

        ``retry_after_s`` (seconds) tells the client when to try again (``Retry-After``).
        """
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.turn_id = turn_id
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        """HTTP headers of the error response: ``Retry-After`` when the client should come back later."""
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}

    def to_dict(self) -> dict[str, Any]:
        """JSON body of an API error (``retry_after_s`` only when the client should wait)."""
        err: dict[str, Any] = {"code": self.code, "message": self.message, "turn_id": self.turn_id}
        if self.retry_after_s is not None:
            err["retry_after_s"] = self.retry_after_s
        return {"error": err}


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
    #: The document's id as users see it, ``root/path`` (``uploads/notes.pdf``): the UI names the
    #: source by it and links ``/documents/<doc_id>``. ``source`` is the same id (the API and the
    #: event stream never carry the server's file path; the chat log's ``retrieved`` keeps it).
    doc_id: str = ""


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
    queue_ms: float | None = None  # time spent in the admission queue before the turn started
    # The grounding gate (chatbot/_gate.py): verified citations of ``answer``
    # ([{"sentence", "source", "score"}]) and what the gate did ("passed", "retried", ...).
    citations: list[dict[str, Any]] = field(default_factory=list)
    gate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class TurnEvent:
    """One streamed event: ``started``, ``sources``, ``token``, ``done`` or ``error``.

    With the grounding gate on, the tokens are a draft: ``checking`` may follow them, then
    ``final`` (``answer``, ``citations``, ``gate``, ``reason``, ``warning``) replaces the draft
    with the answer that is shown and stored (see :mod:`chatbot._gate`).
    """

    kind: str
    data: dict[str, Any]


def validate_message(message: Any, max_chars: int) -> str:
    """Return the message stripped, or raise :class:`ChatError` saying what is wrong with it."""
    if message is not None and not isinstance(message, str):
        kind = type(message).__name__
        raise ChatError(422, "invalid_message", f"The message must be text (a JSON string), not {kind}.")
    if not message or not message.strip():
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
        self.admission = admission_from(settings)
        self.spool = ChatlogSpool()  # accepted turns' last writes while the chat log is down

    # --- conversations & feedback ----------------------------------------------------------
    def new_conversation(self) -> str:
        """Start a conversation; 503 ``chatlog_unavailable`` while the chat log is down."""
        try:
            return self.chatlog.create_conversation()
        except DB_UNAVAILABLE as exc:
            raise chatlog_unavailable() from exc

    def delete_conversation(self, conversation_id: str) -> dict[str, int]:
        """Delete a conversation and its content everywhere (``ChatLog.purge_conversation``).

        Turns, feedback, evaluations, labeling candidates and pairs, and every outbox row about
        them (pending ones of a sink whose backend is down too) go in one transaction, with an
        ``erase`` item for the trace store; the caller has checked ownership (``api_check_owner``).

        Returns:
            The purge's counts (``chatbot._erasure.deletion_report`` puts them in words).
        """
        counts = self.chatlog.purge_conversation(conversation_id, None)
        if counts is None:
            raise ChatError(404, "unknown_conversation", "That conversation does not exist (any more).")
        return counts

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
        except DB_UNAVAILABLE as exc:  # not stored: the client is told so, and when to retry
            raise chatlog_unavailable() from exc
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

    async def stream_turn(
        self, message: Any, conversation_id: str | None = None, *, retry_of: str | None = None
    ) -> AsyncGenerator[TurnEvent, None]:
        """Yield the events of one turn; errors before any token raise :class:`ChatError`.

        ``retry_of`` names the turn this one regenerates (a retry or an edited last question): it
        is stored in ``turns.retry_of`` and that turn leaves the conversation's history.

        Errors after tokens were streamed arrive as an ``error`` event followed by ``done``. A
        consumer that stops early (closes the stream, or is cancelled) cancels the turn: it is
        logged ``cancelled`` with the answer so far.
        """
        turn_id = cl.new_id()
        text = await self._admit(turn_id, message, conversation_id)
        queue_s = await self._wait_for_slot(turn_id, text, conversation_id, retry_of)
        admitted = time.perf_counter()
        try:
            if conversation_id is None:
                conversation_id = await asyncio.to_thread(self.new_conversation)
            queue: asyncio.Queue[TurnEvent | None] = asyncio.Queue()
            token = _RETRY_OF.set(retry_of)  # the task copies the context (chatbot/_ui.py retries)
            task = asyncio.create_task(self._produce(queue, turn_id, conversation_id, text, queue_s))
            _RETRY_OF.reset(token)
        except BaseException:
            self.admission.release(None)
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: self.admission.release(time.perf_counter() - admitted))
        drained = done = False
        try:
            while (event := await queue.get()) is not None:
                done = done or event.kind == "done"
                yield event
            drained = True
        finally:
            if not drained:
                # The client went away: stop the turn; its task logs it as cancelled.
                task.cancel()
                task.add_done_callback(_log_task_failure)
        try:
            await task  # re-raises a ChatError that happened before the first token
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this consumer itself is being cancelled
            if not done:
                # Cancelled by drain() before any token: tell the client like any other failure.
                raise _to_chat_error(asyncio.CancelledError(), turn_id) from None
            # Otherwise the client already got the error and done events of the cancelled turn.

    async def drain(self, timeout_s: float = 10.0, cancel_grace_s: float = 5.0) -> dict[str, int]:
        """At shutdown: let the turns in flight finish for up to ``timeout_s``, then cancel the rest.

        Cancelled turns end ``cancelled`` with their partial answer, and their clients get an
        ``error`` event (``turn_cancelled``) then ``done``. Call it on the loop that runs the turns.

        Args:
            timeout_s: seconds to wait for turns in flight to finish on their own.
            cancel_grace_s: seconds to wait, after cancelling, for their rows to be written.

        Returns:
            ``{"finished": n, "cancelled": m}``: turns that ended within the bound, turns cancelled.
        """
        self.admission.close()  # queued turns are refused (503 shutting_down), new ones too
        pending = {t for t in self._tasks if not t.done()}
        if not pending:
            return {"finished": 0, "cancelled": 0}
        finished, rest = await asyncio.wait(pending, timeout=max(0.0, timeout_s))
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.wait(rest, timeout=cancel_grace_s)
            log.warning(
                "shutdown: %d turn(s) still running after %.1f s were cancelled", len(rest), timeout_s
            )
        return {"finished": len(finished), "cancelled": len(rest)}

    async def _admit(self, turn_id: str, message: Any, conversation_id: str | None) -> str:
        """Validate input; a rejected turn is logged with its error before the error is raised."""
        # PostgreSQL text cannot hold NUL: log it visibly escaped rather than fail to log the turn.
        raw = (message if isinstance(message, str) else repr(message)).replace("\x00", "\\x00")
        try:
            text = validate_message(message, self.settings.max_message_chars)
            if conversation_id is not None and not await _exists(self.chatlog, conversation_id):
                raise ChatError(
                    404,
                    "unknown_conversation",
                    "That conversation does not exist (any more): start a new one.",
                )
        except ChatError as err:
            err.turn_id = turn_id
            if err.code != CHATLOG_UNAVAILABLE:  # with the chat log down there is no row to write
                await self._log_rejected(turn_id, raw, conversation_id, err)
            raise
        return text

    async def _wait_for_slot(
        self, turn_id: str, text: str, conversation_id: str | None, retry_of: str | None = None
    ) -> float:
        """Queue for a turn slot (backpressure); returns seconds waited.

        A refused turn, or one whose client left while queued, is logged ``rejected`` (like invalid
        input), so the chat log's accepted turns (status other than ``rejected``) are exactly the
        turns that ran. It keeps ``retry_of``: the UI's automatic retry of a refused turn names
        the refused row, and the chain leads back to the turn the user regenerated.
        """
        try:
            return await self.admission.acquire()
        except Refused as refused:
            err = ChatError(
                refused.status_code, refused.code, refused.message, turn_id, refused.retry_after_s
            )
            await self._log_rejected(turn_id, text, conversation_id, err, retry_of)
            raise err from None
        except asyncio.CancelledError:
            err = _to_chat_error(asyncio.CancelledError(), turn_id)
            await self._log_rejected(turn_id, text, conversation_id, err, retry_of)
            raise

    async def _log_rejected(
        self,
        turn_id: str,
        raw: str,
        conversation_id: str | None,
        err: ChatError,
        retry_of: str | None = None,
    ) -> None:
        await _settled(
            self.chatlog.start_turn,
            turn_id=turn_id,
            conversation_id=conversation_id,
            retry_of=retry_of,
            user_message=raw[: 4 * self.settings.max_message_chars],
            status=cl.STATUS_REJECTED,
            completed_at=cl.now(),
            error_type=err.code,
            error=err.message,
            prompt_version=prompts.PROMPT_VERSION,
        )

    async def _produce(
        self, queue: asyncio.Queue[TurnEvent | None], turn_id: str, cid: str, text: str, queue_s: float
    ) -> None:
        turn = {"turn_id": turn_id, "conversation_id": cid, "user_message": text}
        scope: AbstractContextManager[None] = _guarded_scope(self.observer.turn_scope, turn)
        try:
            with scope:
                await self._run_chain(queue, turn, text, queue_s * 1000)
        finally:
            queue.put_nowait(None)

    async def _run_chain(
        self, queue: asyncio.Queue[TurnEvent | None], turn: dict[str, Any], text: str, queue_ms: float
    ) -> None:
        started = time.perf_counter()
        state = _TurnState(
            turn_id=turn["turn_id"],
            conversation_id=turn["conversation_id"],
            model=self.settings.llm_model,
            user_message=text,
            queue_ms=queue_ms,
        )
        try:
            await self._start(state)
            queue.put_nowait(
                TurnEvent("started", {"turn_id": state.turn_id, "conversation_id": state.conversation_id})
            )
            history = await asyncio.to_thread(
                self.chatlog.history, state.conversation_id, self.settings.history_turns
            )
            config: dict[str, Any] = {
                "run_name": "rag_chain",
                "metadata": {"turn_id": state.turn_id, "conversation_id": state.conversation_id},
            }
            config.update(dont_throw(self.observer.langchain_config)(turn) or {})
            config["callbacks"] = _with_handler(config.get("callbacks"), state.usage)
            stream = self.chain.astream({"message": text, "history": history}, config=config)  # type: ignore[arg-type]
            me = asyncio.current_task()
            async for chunk in stream:
                await self._consume(queue, state, chunk, started, turn)
                if me is not None and me.cancelling():
                    # Python 3.11's asyncio.wait_for (LangChain's per-chunk timeout) swallows a
                    # cancellation that lands as a chunk arrives (cpython gh-86296): honour it here.
                    raise asyncio.CancelledError
            state.finish_ok()
        except asyncio.CancelledError:
            state.cancel()
            result = await self._finish(state, started, turn)
            if state.answer:  # the client saw tokens: it is told why they stop
                queue.put_nowait(TurnEvent("error", _to_chat_error(state.error, state.turn_id).to_dict()))
                queue.put_nowait(TurnEvent("done", {"result": result}))
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is logged and reported
            state.fail(exc)
            if not state.answer:
                await self._finish(state, started, turn)
                raise _to_chat_error(exc, state.turn_id) from exc
            queue.put_nowait(TurnEvent("error", _to_chat_error(exc, state.turn_id).to_dict()))
        try:
            result = await self._finish(state, started, turn)
        except asyncio.CancelledError:
            # Cancelled while the finished turn was being logged: the write still landed, and the
            # answer is complete, so the client gets its result before the task stops.
            queue.put_nowait(TurnEvent("done", {"result": state.result()}))
            raise
        queue.put_nowait(TurnEvent("done", {"result": result}))

    async def _start(self, state: _TurnState) -> None:
        """Write the ``in_progress`` row (off the event loop)."""
        index_version = await asyncio.to_thread(_index_version, self.retriever)
        ids = dont_throw(self.observer.trace_ids)()
        state.logged = True  # from here on the row exists, or is being written
        with _guarded_scope(self.observer.chatlog_scope, "start_turn"):
            await _settled(
                self.chatlog.start_turn,
                turn_id=state.turn_id,
                conversation_id=state.conversation_id,
                user_message=state.user_message,
                prompt_version=prompts.PROMPT_VERSION,
                model=self.settings.llm_model,
                embedding_model=self.embedding_model,
                trace_id=ids[0] if ids else None,
                span_id=ids[1] if ids else None,
                index_version=index_version,
                retry_of=_RETRY_OF.get(),
            )
        state.stored = True  # the turn is accepted: from here on its outcome must be kept

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
        if "language" in chunk:  # the question's language (chatbot/_rewrite.py turn_language)
            state.language = chunk["language"].language
        if "rewrite" in chunk:  # a condensed question that failed its checks: why, and what it was
            state.flags.update(chunk["rewrite"].flags())
        if "injection" in chunk:  # a passage told the model what to do (retrieval._injection)
            state.flags.update(chunk["injection"].flags())
        if "flags" in chunk:  # e.g. {"truncated": True}: the answer stopped at max_tokens (_chain)
            state.flags.update(chunk["flags"])
        if "retrieval" in chunk:
            retrieval: Retrieval = chunk["retrieval"]
            state.set_retrieval(retrieval)
            dont_throw(self.observer.on_retrieval)(turn, retrieval)
            if not retrieval.retrieved:
                raise EmptyIndexError("no documents are indexed")
            queue.put_nowait(
                TurnEvent(
                    "sources",
                    {"sources": [asdict(s) for s in state.sources], "standalone_question": state.question},
                )
            )
        if "answer" in chunk:
            content = str(chunk["answer"].content or "")
            if content:
                if state.ttft_ms is None:
                    state.ttft_ms = (time.perf_counter() - started) * 1000
                    dont_throw(self.observer.on_first_token)(turn, state.ttft_ms)
                state.answer += content
                queue.put_nowait(TurnEvent("token", {"text": content}))
        if "gate_checking" in chunk:  # the draft failed the grounding gate: a retry or quote follows
            queue.put_nowait(TurnEvent("checking", dict(chunk["gate_checking"])))
        if "gate" in chunk:  # the gated answer replaces the streamed draft (chatbot/_gate.py)
            state.gated = chunk["gate"]
            state.answer = state.gated.answer
            queue.put_nowait(TurnEvent("final", state.gated.event()))

    async def _finish(self, state: _TurnState, started: float, turn: dict[str, Any]) -> TurnResult:
        state.total_ms = (time.perf_counter() - started) * 1000
        state.input_tokens, state.output_tokens = state.usage.totals()
        result = state.result()
        row = state.row()
        try:
            with _guarded_scope(self.observer.chatlog_scope, "finish_turn"):
                if state.logged:
                    await _settled(self.chatlog.finish_turn, state.turn_id, **row)
                else:  # cancelled before its row was written: record it anyway
                    await _settled(
                        self.chatlog.start_turn,
                        turn_id=state.turn_id,
                        conversation_id=state.conversation_id,
                        user_message=state.user_message,
                        prompt_version=prompts.PROMPT_VERSION,
                        model=self.settings.llm_model,
                        completed_at=cl.now(),
                        retry_of=_RETRY_OF.get(),
                        **row,
                    )
        except DB_UNAVAILABLE as exc:
            if not state.stored:  # never accepted: nothing to keep, the client is refused
                raise chatlog_unavailable(state.turn_id) from exc
            # Accepted: the outcome is kept and written once the database is back.
            self.spool.put(state.turn_id, functools.partial(self.chatlog.finish_turn, state.turn_id, **row))
        dont_throw(self.observer.on_turn_end)({**turn, **row, "turn_id": state.turn_id})
        return result


async def _settled(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking chat-log write in a worker thread; a cancellation lets the write land first.

    A turn cancelled while its row is being written must not leave the row half-recorded or
    overtake it with the next write: the cancellation waits for the write, then goes on.
    """
    fut = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if not fut.done():
            await asyncio.wait([fut])
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("chat-log write during cancellation failed: %s", fut.exception())
        raise


def _with_handler(callbacks: Any, handler: BaseCallbackHandler) -> Any:
    """LangChain ``callbacks`` (None, a list or a manager) plus ``handler``, inherited by child runs."""
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list):
        return [*callbacks, handler]
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return manager


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("turn finished after its client left: %s", task.exception())


#: The turn a running turn regenerates (``stream_turn(retry_of=...)``), read when its row is written.
_RETRY_OF: contextvars.ContextVar[str | None] = contextvars.ContextVar("ragloop_retry_of", default=None)


class EmptyIndexError(RuntimeError):
    """Retrieval returned nothing at all: the index is empty."""


def call_usage(usage: Mapping[str, Any] | None, produced_text: bool) -> tuple[int, int] | None:
    """One LLM call's ``(input_tokens, output_tokens)``, or None when the endpoint did not report it.

    LangChain turns a usage object without counts into zeros, but a call always reads a prompt,
    and a call that produced text produced tokens: such zeros mean "not reported", not 0.

    Args:
        usage: the call's ``usage_metadata`` (``input_tokens``, ``output_tokens``), or None.
        produced_text: whether the call returned any text.
    """
    if not usage:
        return None
    tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(tokens_in, int) or not isinstance(tokens_out, int) or tokens_in <= 0 or tokens_out < 0:
        return None
    if tokens_out == 0 and produced_text:
        return None
    return tokens_in, tokens_out


def total_usage(calls: Sequence[tuple[int, int] | None]) -> tuple[int | None, int | None]:
    """A turn's ``(input_tokens, output_tokens)``: the sum over its LLM calls.

    Unknown (None, None) when there was no call, or when any call's usage is unknown: a partial sum
    would pass for the whole and undercount the cost.
    """
    if not calls or any(c is None for c in calls):
        return None, None
    known = [c for c in calls if c is not None]
    return sum(c[0] for c in known), sum(c[1] for c in known)


class _UsageTally(BaseCallbackHandler):
    """Collects the token usage of every LLM call made while a turn's chain runs.

    Condense, answer, any future step: whatever calls the chat model inside the chain is counted.
    A call that failed, was cancelled or is still open makes the total unknown.
    """

    run_inline = True  # called on the loop, in order, without a thread hop

    def __init__(self) -> None:
        super().__init__()
        self._open: set[UUID] = set()
        self.calls: list[tuple[int, int] | None] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A chat-model call began."""
        self._open.add(run_id)

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A completion-model call began."""
        self._open.add(run_id)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """A call finished: record its usage (None when the endpoint sent none)."""
        self._open.discard(run_id)
        gens = [g for batch in response.generations for g in batch]
        if len(gens) != 1:
            self.calls.append(None)
            return
        usage = getattr(getattr(gens[0], "message", None), "usage_metadata", None)
        self.calls.append(call_usage(usage, bool(gens[0].text)))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A call failed (or was cancelled): its usage is unknown."""
        self._open.discard(run_id)
        self.calls.append(None)

    def totals(self) -> tuple[int | None, int | None]:
        """The turn's usage so far; unknown while a call is still open."""
        return (None, None) if self._open else total_usage(self.calls)


@dataclass
class _TurnState:
    turn_id: str
    conversation_id: str
    model: str
    user_message: str = ""
    logged: bool = False
    stored: bool = False  # its in_progress row landed (chatbot/_spool.py: accepted)
    usage: _UsageTally = field(default_factory=_UsageTally)
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
    gated: GateOutcome | None = None
    language: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    queue_ms: float | None = None

    def set_retrieval(self, retrieval: Retrieval) -> None:
        self.retrieval = retrieval
        self.sources = [_source(i, c) for i, c in enumerate(retrieval.relevant, start=1)]

    def finish_ok(self) -> None:
        no_context = self.retrieval is not None and not self.retrieval.relevant
        self.status = cl.STATUS_NO_CONTEXT if no_context else cl.STATUS_OK
        for n in prompts.parse_citations(self.answer, len(self.sources)):
            self.sources[n - 1].cited = True

    def fail(self, exc: BaseException) -> None:
        self.status = cl.STATUS_ERROR
        self.error = exc
        log.warning("turn %s failed: %s: %s", self.turn_id, type(exc).__name__, exc)

    def cancel(self) -> None:
        self.status = STATUS_CANCELLED
        self.error = asyncio.CancelledError()
        for n in prompts.parse_citations(self.answer, len(self.sources)):
            self.sources[n - 1].cited = True
        log.info("turn %s cancelled after %d characters of answer", self.turn_id, len(self.answer))

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
            citations=list(self.gated.citations) if self.gated else [],
            gate=self.gated.status if self.gated else None,
            queue_ms=self.queue_ms,
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
                "doc_id": _doc_id(c),
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
            "language": self.language,
            **(self._gate_columns() if self.gated else {}),
            # Only when there is something to record: a flag set when the turn started stays.
            **({"flags": dict(self.flags)} if self.flags else {}),
        }

    def _gate_columns(self) -> dict[str, Any]:
        assert self.gated is not None
        return {
            "citations": self.gated.citations,
            "gate": self.gated.status,
            "extra": {"gate": self.gated.record()},
        }


def _to_chat_error(exc: BaseException | None, turn_id: str) -> ChatError:
    """Map a failure inside the chain to what the user is told: status, code, message, Retry-After.

    By the OpenAI client's exception types and the endpoint's HTTP status (LangChain's wrappers
    subclass them), never by class names:

    ====================================================  ======  ====================
    failure                                               status  code
    ====================================================  ======  ====================
    rate limited (429, ``RateLimitError``)                503     ``llm_rate_limited`` (+ Retry-After)
    credentials rejected (401, 403)                       502     ``llm_auth_failed``
    context too long (400 saying so, 413)                 413     ``context_too_long``
    timeout (``APITimeoutError``, an HTTP read timeout)   504     ``llm_timeout``
    unreachable (connection errors), 503                  503     ``llm_unavailable``
    other 4xx/5xx, an error event mid-stream              502     ``llm_error``
    nothing indexed                                       503     ``empty_index``
    chat log unreachable (database down)                  503     ``chatlog_unavailable`` (+ Retry-After)
    index unreachable (the Chroma server down)            503     ``index_unavailable`` (+ Retry-After)
    cancelled (client gone, shutdown)                     503     ``turn_cancelled``
    anything else (a bug)                                 500     ``internal_error``
    ====================================================  ======  ====================
    """
    import openai
    from langchain_core.exceptions import ContextOverflowError

    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, EmptyIndexError):
        return ChatError(
            503, "empty_index", "No documents are indexed yet: run `ragloop ingest PATH` first.", turn_id
        )
    if isinstance(exc, asyncio.CancelledError):
        return ChatError(
            503,
            "turn_cancelled",
            "The answer was cut short: the request was cancelled (the server is shutting down "
            "or the client left). Please ask again.",
            turn_id,
        )
    if is_db_outage(exc):
        return chatlog_unavailable(turn_id)
    if isinstance(exc, IndexUnavailableError):
        return ChatError(
            503,
            "index_unavailable",
            "The document index cannot be reached right now. Please try again in a moment.",
            turn_id,
            retry_after_s=CHATLOG_RETRY_AFTER_S,
        )
    timeouts, transport = _http_error_types()
    if isinstance(exc, (openai.APITimeoutError, TimeoutError, *timeouts)):
        return ChatError(
            504, "llm_timeout", "The language model did not answer in time. Please try again.", turn_id
        )
    if isinstance(exc, ContextOverflowError):
        return _context_too_long(turn_id)
    if isinstance(exc, openai.APIStatusError):
        return _status_to_chat_error(exc, turn_id)
    if isinstance(exc, (openai.APIConnectionError, *transport)):
        return ChatError(
            503,
            "llm_unavailable",
            "The language model cannot be reached right now. Please try again later.",
            turn_id,
        )
    if isinstance(exc, openai.APIError):  # an error event in the middle of a stream
        return ChatError(
            502, "llm_error", f"The language model failed while answering: {_short(exc.message)}", turn_id
        )
    name = type(exc).__name__
    return ChatError(
        500, "internal_error", f"Something went wrong answering this question ({name}).", turn_id
    )


def _status_to_chat_error(exc: Any, turn_id: str) -> ChatError:
    import openai

    status = int(exc.status_code)
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    if status == 429 or isinstance(exc, openai.RateLimitError):
        wait = retry_after_seconds(headers) or DEFAULT_RETRY_AFTER_S
        return ChatError(
            503,
            "llm_rate_limited",
            f"The language model is rate limited (too many requests): please try again in {wait} s.",
            turn_id,
            retry_after_s=wait,
        )
    if status in (401, 403):
        return ChatError(
            502,
            "llm_auth_failed",
            f"The language model endpoint rejected our credentials (HTTP {status}): the operator "
            "should check the API key (OPENAI_API_KEY) and the endpoint (OPENAI_BASE_URL).",
            turn_id,
        )
    if status == 413 or (400 <= status < 500 and _says_context_overflow(exc)):
        return _context_too_long(turn_id)
    if status == 503:
        return ChatError(
            503,
            "llm_unavailable",
            "The language model is unavailable right now (overloaded or starting). Please try again later.",
            turn_id,
            retry_after_s=retry_after_seconds(headers),
        )
    return ChatError(
        502,
        "llm_error",
        f"The language model endpoint failed (HTTP {status}: {_short(_error_fields(exc)[2])}).",
        turn_id,
    )


def chatlog_unavailable(turn_id: str | None = None) -> ChatError:
    """503 ``chatlog_unavailable`` with Retry-After: the chat-log database cannot be reached."""
    return ChatError(503, CHATLOG_UNAVAILABLE, CHATLOG_MESSAGE, turn_id, retry_after_s=CHATLOG_RETRY_AFTER_S)


async def _exists(chatlog: cl.ChatLog, conversation_id: str) -> bool:
    try:
        return await asyncio.to_thread(chatlog.conversation_exists, conversation_id)
    except DB_UNAVAILABLE as exc:
        raise chatlog_unavailable() from exc


def _context_too_long(turn_id: str) -> ChatError:
    return ChatError(
        413,
        "context_too_long",
        "The question is too long for the language model: with the conversation and the retrieved "
        "passages it does not fit in the model's context window. Ask a shorter question or start a "
        "new conversation.",
        turn_id,
    )


#: How endpoints word a context overflow: OpenAI, vLLM, llama.cpp, Anthropic-style gateways, LiteLLM.
_CONTEXT_OVERFLOW = re.compile(
    r"context[ _-]?(length|size|window)|maximum context|prompt is too long|too many (input )?tokens"
    r"|input tokens exceed|ContextWindowExceeded",
    re.IGNORECASE,
)
_CONTEXT_OVERFLOW_CODES = {"context_length_exceeded", "exceed_context_size_error", "string_above_max_length"}


def _error_fields(exc: Any) -> tuple[str | None, str | None, str]:
    """(type, code, message) of an OpenAI-style error body ``{"error": {...}}`` (or the bare object)."""
    body = getattr(exc, "body", None)
    err = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return getattr(exc, "type", None), getattr(exc, "code", None), str(getattr(exc, "message", exc))
    code = err.get("code")
    message = err.get("message") or getattr(exc, "message", "") or str(exc)
    return (
        str(err["type"]) if err.get("type") is not None else None,
        str(code) if code is not None else None,
        str(message),
    )


def _says_context_overflow(exc: Any) -> bool:
    kind, code, message = _error_fields(exc)
    if kind in _CONTEXT_OVERFLOW_CODES or code in _CONTEXT_OVERFLOW_CODES:
        return True
    return bool(_CONTEXT_OVERFLOW.search(message) or _CONTEXT_OVERFLOW.search(str(exc)))


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _http_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, transport errors) of the HTTP libraries under the OpenAI client.

    A failure while a stream is being read comes from the HTTP library itself, not wrapped.
    """
    import importlib

    timeouts: list[type[BaseException]] = []
    transport: list[type[BaseException]] = []
    for name in ("httpx", "httpx2"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(mod.TimeoutException)
        transport.append(mod.TransportError)
    return tuple(timeouts), tuple(transport)


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> int | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``; None if absent.

    Args:
        headers: response headers (any case).
        now: the current time, for an HTTP-date value (default: now, UTC).

    Returns:
        Whole seconds, at least 1; None when no usable header is present.
    """
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    seconds: float | None = None
    if "retry-after-ms" in lower:
        try:
            seconds = float(lower["retry-after-ms"]) / 1000
        except ValueError:
            seconds = None
    if seconds is None and "retry-after" in lower:
        value = lower["retry-after"].strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(1, math.ceil(seconds))


def _source(index: int, chunk: Any) -> Source:
    """A hit as users see it: named by its document id, never by the server's file path."""
    doc_id = _doc_id(chunk)
    return Source(index, chunk.chunk_id, chunk.text, float(chunk.score), doc_id, chunk.title, doc_id=doc_id)


def _doc_id(chunk: Any) -> str:
    """A hit's document id ``root/path`` from its metadata (never a cache path)."""
    from retrieval import describe_source

    return describe_source({"source": chunk.source, **(getattr(chunk, "metadata", None) or {})}).doc_id


def admission_from(settings: Settings) -> Admission:
    """The admission queue the settings describe (concurrency defaults to the LLM server's slots)."""
    concurrency = settings.llm_concurrency or settings.llm_parallel
    return Admission(
        concurrency=max(1, int(concurrency)),
        depth=settings.queue_depth,
        max_wait_s=settings.queue_max_wait_s,
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
