"""The chat service never blocks its event loop, and a cancelled turn ends ``cancelled``, not ``in_progress``.

Real components throughout: the real retriever over a real embedded Chroma index, the real chat
log on a SQLite file, ChatOpenAI talking over HTTP to the instant OpenAI-compatible server (which
streams a long answer with a delay between tokens, so a turn is in flight long enough to interfere
with). A second SQLite connection holding ``BEGIN IMMEDIATE`` stands for a slow database write.

No timing assertion: fault 4 is detected by asyncio's own debug-mode slow-callback report, by the
order of events (tokens of one stream arriving while another connection holds the write lock), and
by a probe that records every chat-log and index call made on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import chatlog as cl
from chatbot import ChatError, ChatService, build_service
from chatbot._service import admission_from
from monitoring._instant_llm import Behaviour, InstantLLM
from ragloop.settings import Settings

STATUS_CANCELLED = cl.STATUS_CANCELLED

#: A long answer: 40 pieces, streamed 50 ms apart (about 2 s per turn).
PIECES = tuple(f"w{i} " for i in range(40))
FULL_ANSWER = "".join(PIECES)


@pytest.fixture()
def instant() -> Iterator[InstantLLM]:
    """The instant OpenAI-compatible server, streaming :data:`PIECES` 50 ms apart."""
    with InstantLLM(Behaviour(pieces=PIECES, token_delay_s=0.05)) as server:
        yield server


def _settings(data_dir: Path, llm_url: str, db: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        collection="chatbot-tests",  # the corpus of tests/chatbot/conftest.py
        top_k=2,
        max_tokens=64,
        max_message_chars=500,
        llm_timeout_s=30.0,
        telemetry=False,
        openai_base_url=llm_url,
        database_url=f"sqlite:///{db}",
    )  # type: ignore[call-arg]


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    """The chat log's SQLite file."""
    return tmp_path / "chatlog.db"


@pytest.fixture()
def service(indexed_dir: Path, instant: InstantLLM, db_path: Path) -> Iterator[ChatService]:
    """A chat service on the real index and chat log, answering through the instant server."""
    svc = build_service(_settings(indexed_dir, instant.base_url, db_path))
    yield svc
    svc.chatlog.close()


class WriteLock:
    """Another connection that holds SQLite's write lock (``BEGIN IMMEDIATE``) until :meth:`release`
    is called, or for ``hold_s`` seconds at most."""

    def __init__(self, path: Path, hold_s: float) -> None:
        self.path, self.hold_s = path, hold_s
        self.acquired, self.released = threading.Event(), threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, name="sqlite-write-lock", daemon=True)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            self.acquired.set()
            self._release.wait(self.hold_s)
            conn.execute("ROLLBACK")
        finally:
            self.released.set()
            conn.close()

    def start(self) -> None:
        """Take the lock (returns once it is held)."""
        self._thread.start()
        assert self.acquired.wait(30), "could not take the SQLite write lock"

    @property
    def held(self) -> bool:
        """True between taking and releasing the lock."""
        return self.acquired.is_set() and not self.released.is_set()

    def release(self) -> None:
        """Let the lock go now."""
        self._release.set()

    def join(self) -> None:
        """Wait until the lock is released."""
        self._thread.join(30)


def _run_debug(coro: Any, slow_callback_s: float) -> Any:
    """Run ``coro`` on a fresh loop in asyncio debug mode, which logs callbacks slower than the bound."""
    with asyncio.Runner(debug=True) as runner:
        runner.get_loop().slow_callback_duration = slow_callback_s
        return runner.run(coro)


# --- fault 4: the event loop never blocks on the chat log or the index --------------------------
def test_a_held_write_lock_does_not_stall_another_users_stream(
    service: ChatService, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Held until 10 of A's tokens have arrived, 3.5 s at most (under the chat log's 5 s SQLite
    # busy timeout, which B's write waits on): a loop that blocks on B's write streams none of A
    # meanwhile. A fixed 2 s hold needed 10 tokens within 2 s, which a process starved on a busy
    # machine may not stream.
    lock = WriteLock(db_path, hold_s=3.5)

    async def scenario() -> tuple[int, int, Any]:
        await service.run_turn("How do I sort a list?")  # warm-up: embedder loaded, tables created
        a = aiter(service.stream_turn("How do I copy a file?"))
        async for event in a:  # user A is streaming
            if event.kind == "token":
                break
        await asyncio.to_thread(lock.start)
        # User B's turn has to write (a new conversation, its turn row) while the lock is held.
        b = asyncio.create_task(service.run_turn("How do I delete a file?"))
        during = after = 0
        async for event in a:
            if event.kind == "token":
                if lock.held:
                    during += 1
                    if during >= 10:
                        lock.release()
                else:
                    after += 1
        result_b = await b
        await asyncio.to_thread(lock.join)
        return during, after, result_b

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        during, after, result_b = _run_debug(scenario(), slow_callback_s=1.0)
    slow = [r.getMessage() for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()]
    assert not slow, f"the event loop was blocked: {slow}"
    assert during >= 10, f"only {during} of {during + after} tokens of A arrived while B waited on the lock"
    assert result_b.status == cl.STATUS_OK, "B's turn waits for the lock and then completes"
    assert service.chatlog.get_turn(result_b.turn_id)["status"] == cl.STATUS_OK


class LoopProbe:
    """Wraps a chat log or retriever; records each public call (or property read) made on the loop."""

    def __init__(self, target: Any, seen: list[str], label: str) -> None:
        self._target, self._seen, self._label = target, seen, label

    def __getattr__(self, name: str) -> Any:
        on_loop = _on_event_loop_thread()
        is_property = isinstance(getattr(type(self._target), name, None), property)
        value = getattr(self._target, name)
        if name.startswith("_"):
            return value
        if is_property:
            if on_loop:
                self._seen.append(f"{self._label}.{name}")
            return value
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            if _on_event_loop_thread():
                self._seen.append(f"{self._label}.{name}()")
            return value(*args, **kwargs)

        return call


def _on_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_no_chat_log_or_index_call_runs_on_the_event_loop(
    indexed_dir: Path, instant: InstantLLM, db_path: Path
) -> None:
    from retrieval import Retriever

    settings = _settings(indexed_dir, instant.base_url, db_path)
    seen: list[str] = []
    log = cl.ChatLog(settings.chatlog_url)
    svc = build_service(
        settings,
        chatlog=LoopProbe(log, seen, "chatlog"),  # type: ignore[arg-type]
        retriever=LoopProbe(Retriever(settings), seen, "retriever"),  # type: ignore[arg-type]
    )
    instant.behaviour.token_delay_s = 0.0

    async def every_kind_of_turn() -> None:
        first = await svc.run_turn("How do I sort a list?")  # new conversation
        await svc.run_turn("And in reverse order?", first.conversation_id)  # history, condense
        with pytest.raises(ChatError):
            await svc.run_turn("   ")  # rejected: logged
        with pytest.raises(ChatError):
            await svc.run_turn("What is a list?", "no-such-conversation")  # lookup, rejected
        instant.behaviour.fail_status = 500
        with pytest.raises(ChatError):
            await svc.run_turn("How do I copy a file?")  # LLM error: logged
        instant.behaviour.fail_status = None
        instant.behaviour.token_delay_s = 0.05
        stream = svc.stream_turn("How do I delete a file?")
        async for event in stream:
            if event.kind == "token":
                break
        await stream.aclose()  # client leaves: the turn is cancelled and logged
        await svc.drain(10)

    asyncio.run(every_kind_of_turn())
    log.close()
    assert seen == [], f"blocking calls made on the event loop: {sorted(set(seen))}"


# --- fault 5: cancelled turns end `cancelled` with the partial answer ---------------------------
async def _until_row_settles(svc: ChatService, turn_id: str) -> dict[str, Any]:
    """The turn's row once it has left ``in_progress`` (bounded wait)."""
    row: dict[str, Any] | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = await asyncio.to_thread(svc.chatlog.get_turn, turn_id)
        if row is not None and row["status"] != cl.STATUS_IN_PROGRESS:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"turn {turn_id} is still {row and row['status']} after 60 s")


@pytest.mark.parametrize("how", ["task_cancelled", "stream_closed"])
def test_a_client_that_leaves_mid_stream_ends_the_turn_cancelled_with_its_partial_answer(
    service: ChatService, how: str
) -> None:
    async def scenario() -> tuple[str, str, dict[str, Any]]:
        seen: dict[str, str] = {"turn_id": "", "text": ""}
        three_tokens = asyncio.Event()

        async def client(stream: AsyncIterator[Any]) -> None:
            async for event in stream:
                if event.kind == "started":
                    seen["turn_id"] = event.data["turn_id"]
                elif event.kind == "token":
                    seen["text"] += event.data["text"]
                    if seen["text"].count(" ") >= 3:
                        three_tokens.set()
                        if how == "stream_closed":
                            return  # leaves the loop: the generator is closed (aclose)

        stream = service.stream_turn("How do I copy a file?")
        if how == "task_cancelled":
            task = asyncio.create_task(client(stream))
            await three_tokens.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            await client(stream)
            await stream.aclose()
        return seen["turn_id"], seen["text"], await _until_row_settles(service, seen["turn_id"])

    turn_id, streamed, row = asyncio.run(scenario())
    assert row["status"] == STATUS_CANCELLED, "the turn was cut short: it must not pass as answered"
    assert row["answer"].startswith(streamed) and streamed, "the partial answer is kept"
    assert len(row["answer"]) < len(FULL_ANSWER), "the model was stopped, not run to the end"
    assert row["completed_at"] is not None and row["total_ms"] is not None
    assert row["input_tokens"] is None and row["output_tokens"] is None, "usage unknown, not 0"


def test_drain_waits_for_turns_in_flight_then_cancels_the_rest(
    service: ChatService, instant: InstantLLM
) -> None:
    async def consume(message: str, streaming: asyncio.Event) -> list[Any]:
        events = []
        with contextlib.suppress(ChatError):
            async for event in service.stream_turn(message):
                events.append(event)
                if event.kind == "token":
                    streaming.set()
        streaming.set()
        return events

    async def in_flight(n: int) -> tuple[list[asyncio.Task[list[Any]]], list[asyncio.Event]]:
        flags = [asyncio.Event() for _ in range(n)]
        questions = ("How do I sort a list?", "How do I copy a file?")
        clients = [asyncio.create_task(consume(questions[i % 2], flags[i])) for i in range(n)]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), 30)  # all are streaming
        return clients, flags

    async def scenario() -> tuple[dict[str, int], list[list[Any]], dict[str, int], list[list[Any]]]:
        # Short turns (5 pieces): drain with a generous bound lets them finish.
        instant.behaviour.pieces = PIECES[:5]
        clients, _ = await in_flight(2)
        finished = await service.drain(timeout_s=30)
        short = await asyncio.gather(*clients)
        # A drained service refuses new turns (the admission queue is closed at shutdown) ...
        with pytest.raises(ChatError) as refused:
            await anext(aiter(service.stream_turn("How do I sort a list?")))
        assert refused.value.code == "shutting_down"
        # ... so the second part runs on a restarted one (a fresh admission queue).
        service.admission = admission_from(service.settings)
        # Long turns (40 pieces, 10 s): a 0.2 s bound cancels them mid-answer (at 2 s, a turn that
        # started streaming well before the other on a busy machine could finish within the bound).
        instant.behaviour.pieces, instant.behaviour.token_delay_s = PIECES, 0.25
        clients, _ = await in_flight(2)
        cancelled = await service.drain(timeout_s=0.2)
        long = await asyncio.gather(*clients)
        return finished, short, cancelled, long

    finished, short, cancelled, long = asyncio.run(scenario())
    assert finished["cancelled"] == 0, finished
    for events in short:
        assert events[-1].kind == "done" and events[-1].data["result"].status == cl.STATUS_OK
    assert cancelled == {"finished": 0, "cancelled": 2}
    for events in long:
        done = events[-1]
        assert done.kind == "done", [e.kind for e in events]
        result = done.data["result"]
        assert result.status == STATUS_CANCELLED and result.error_type == "turn_cancelled", (
            [e.kind for e in events],
            result,
        )
        assert "error" in [e.kind for e in events], "the client is told why the answer stops"
        row = service.chatlog.get_turn(result.turn_id)
        assert row["status"] == STATUS_CANCELLED and row["answer"] == result.answer
        assert row["answer"] and len(row["answer"]) < len(FULL_ANSWER)


def test_a_loop_shut_down_under_a_running_turn_leaves_it_cancelled(service: ChatService) -> None:
    turn: dict[str, str] = {}

    async def leave_it_running() -> None:
        stream = service.stream_turn("How do I copy a file?")
        async for event in stream:
            if event.kind == "started":
                turn["id"] = event.data["turn_id"]
            if event.kind == "token":
                return  # asyncio.run then cancels the turn's task (as a server shutdown does)

    asyncio.run(leave_it_running())
    row = service.chatlog.get_turn(turn["id"])
    assert row["status"] == STATUS_CANCELLED and row["answer"], row["status"]
