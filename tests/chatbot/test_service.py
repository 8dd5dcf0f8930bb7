"""ChatService against the real local LLM, real embeddings, real Chroma and real chat-log databases.

Assertions are about structure, ids and log contents, never about the model's exact words.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatbot import ChatError, ChatService, build_service
from chatbot._prompts import NO_CONTEXT_ANSWER, PROMPT_VERSION
import chatlog as cl
from ragloop.process import free_port
from ragloop.settings import Settings

pytestmark = pytest.mark.llm

DOCS = {
    "lists.md": "# Lists\n\nA Python list is a mutable sequence. Use `append()` to add an item to the end of a "
    "list and `remove()` or `pop()` to take items out.\n\n## Sorting\n\nCall `list.sort()` to sort a list in "
    "place, or `sorted()` to get a new sorted list.\n",
    "tuples.md": "# Tuples\n\nA tuple is an immutable sequence. Tuples are written with commas, often inside "
    "parentheses, like `(1, 2)`. They can be used as dictionary keys when all items are hashable.\n",
    "files.md": "# Reading files\n\nUse `open(path)` in a `with` statement to read a file; the file is closed "
    "when the block ends. `read()` returns the whole text, and iterating over the file yields lines.\n",
}


@pytest.fixture(scope="module")
def run():
    """One event loop for the module: the services' HTTP connections belong to it."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, index_docs) -> Path:
    """A data dir whose embedded Chroma holds the small corpus."""
    root = tmp_path_factory.mktemp("svc")
    return index_docs(root, DOCS, Settings(data_dir=root / "data"))


def _service(data: Path, llm_url: str, **kw: object) -> ChatService:
    settings = Settings(data_dir=data, openai_base_url=llm_url, max_tokens=40, temperature=0.0, **kw)  # type: ignore[arg-type]
    return build_service(settings)


@pytest.fixture(scope="module")
def service(indexed: Path, llm_server: str) -> ChatService:
    return _service(indexed, llm_server)


async def _collect(svc: ChatService, message: str, cid: str | None = None) -> list:
    return [event async for event in svc.stream_turn(message, cid)]


def test_a_turn_streams_sources_then_tokens_and_is_fully_logged(run, service: ChatService) -> None:
    events = run(_collect(service, "How do I add an item to a Python list?"))
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[1] == "sources" and kinds[-1] == "done"
    assert kinds.count("token") >= 2, "the answer must arrive in several streamed pieces"
    result = events[-1].data["result"]
    assert result.status == cl.STATUS_OK
    assert result.answer == "".join(e.data["text"] for e in events if e.kind == "token")
    assert result.sources and result.sources[0].source.endswith("lists.md")
    assert [s.index for s in result.sources] == list(range(1, len(result.sources) + 1))

    row = service.chatlog.get_turn(result.turn_id)
    assert row["status"] == cl.STATUS_OK and row["conversation_id"] == result.conversation_id
    assert row["user_message"] == "How do I add an item to a Python list?"
    assert row["standalone_question"] == row["user_message"]  # first turn: no condense call
    assert row["query_embedding"].shape == (384,)
    assert row["retrieved"][0]["chunk_id"] == result.sources[0].chunk_id
    assert all({"chunk_id", "score", "text", "source", "title"} <= set(r) for r in row["retrieved"])
    assert row["answer"] == result.answer and row["prompt_version"] == PROMPT_VERSION
    assert row["input_tokens"] > 50 and 0 < row["output_tokens"] <= 40
    assert 0 < row["retrieval_ms"] < row["ttft_ms"] <= row["total_ms"]
    assert row["cited"] == [s.index for s in result.sources if s.cited]
    assert row["embedding_model"] and row["index_version"]


def test_a_follow_up_is_condensed_with_the_conversation(run, service: ChatService) -> None:
    first = run(service.run_turn("What is a tuple?"))
    second = run(service.run_turn("Can it be a dictionary key?", first.conversation_id))
    assert second.conversation_id == first.conversation_id and second.status == cl.STATUS_OK
    row = service.chatlog.get_turn(second.turn_id)
    assert row["standalone_question"] and len(row["standalone_question"]) <= 1000
    assert service.chatlog.history(first.conversation_id, 5)[0][0] == "What is a tuple?"


def test_nothing_relevant_means_a_refusal_without_calling_the_model(
    run, indexed: Path, llm_server: str
) -> None:
    svc = _service(indexed, llm_server, score_threshold=0.99)
    result = run(svc.run_turn("How do I read a file?"))
    assert result.status == cl.STATUS_NO_CONTEXT and result.answer == NO_CONTEXT_ANSWER
    row = svc.chatlog.get_turn(result.turn_id)
    assert row["retrieved"] and row["input_tokens"] is None and row["status"] == cl.STATUS_NO_CONTEXT


def test_llm_down_is_a_503_and_the_turn_is_logged(run, indexed: Path) -> None:
    svc = _service(indexed, f"http://127.0.0.1:{free_port()}/v1", llm_timeout_s=5.0)
    with pytest.raises(ChatError) as info:
        run(svc.run_turn("How do I sort a list?"))
    assert (info.value.status_code, info.value.code) == (503, "llm_unavailable")
    row = svc.chatlog.get_turn(info.value.turn_id)
    assert row["status"] == cl.STATUS_ERROR and row["error_type"] == "llm_unavailable"
    assert row["retrieved"], "what was retrieved before the failure is kept"


def test_empty_index_is_a_503_with_a_hint(run, tmp_path: Path, llm_server: str) -> None:
    svc = _service(tmp_path / "empty", llm_server)
    with pytest.raises(ChatError) as info:
        run(svc.run_turn("How do I sort a list?"))
    assert (info.value.status_code, info.value.code) == (503, "empty_index")
    assert "ragloop ingest" in info.value.message
    assert svc.chatlog.get_turn(info.value.turn_id)["status"] == cl.STATUS_ERROR


def test_unknown_or_deleted_conversation_is_a_logged_404(run, service: ChatService) -> None:
    cid = service.new_conversation()
    service.delete_conversation(cid)
    with pytest.raises(ChatError) as info:
        run(service.run_turn("What is a list?", cid))
    assert (info.value.status_code, info.value.code) == (404, "unknown_conversation")
    row = service.chatlog.get_turn(info.value.turn_id)
    assert row["status"] == cl.STATUS_REJECTED and row["conversation_id"] == cid
    with pytest.raises(ChatError):
        service.delete_conversation(cid)


def test_rejected_messages_are_logged_too(run, service: ChatService) -> None:
    with pytest.raises(ChatError) as info:
        run(service.run_turn("   "))
    row = service.chatlog.get_turn(info.value.turn_id)
    assert row["status"] == cl.STATUS_REJECTED and row["error_type"] == "empty_message"


def test_feedback_is_tied_to_a_turn(run, service: ChatService) -> None:
    result = run(service.run_turn("How do I remove an item from a list?"))
    service.add_feedback(result.turn_id, -1, "too vague", source="ui")
    assert [(f["value"], f["comment"]) for f in service.chatlog.feedback_for(result.turn_id)] == [
        (-1, "too vague")
    ]
    with pytest.raises(ChatError) as info:
        service.add_feedback("no-such-turn", 1)
    assert (info.value.status_code, info.value.code) == (404, "unknown_turn")


def test_a_client_that_leaves_mid_stream_does_not_lose_the_turn(run, service: ChatService) -> None:
    async def leave_early() -> str:
        turn_id = ""
        stream = service.stream_turn("How do I sort a list in place?")
        async for event in stream:
            if event.kind == "started":
                turn_id = event.data["turn_id"]
            if event.kind == "token":
                break
        await stream.aclose()
        for _ in range(200):  # the turn's own task finishes and logs it
            await asyncio.sleep(0.1)
            if service.chatlog.get_turn(turn_id)["status"] != cl.STATUS_IN_PROGRESS:
                break
        return turn_id

    row = service.chatlog.get_turn(run(leave_early()))
    assert row["status"] == cl.STATUS_OK and row["answer"] and row["output_tokens"]


@pytest.mark.postgres
def test_a_turn_on_postgresql(run, indexed: Path, llm_server: str, postgres_url: str) -> None:
    svc = _service(indexed, llm_server, database_url=postgres_url)
    result = run(svc.run_turn("What is a tuple?"))
    row = svc.chatlog.get_turn(result.turn_id)
    assert row["status"] == cl.STATUS_OK and row["query_embedding"].shape == (384,)
    assert svc.chatlog.engine.dialect.name == "postgresql"
