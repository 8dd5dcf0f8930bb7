"""ChatService against the real local LLM, real embeddings, real Chroma and real chat-log databases.

Assertions are about structure, ids and log contents, never about the model's exact words.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import chatlog as cl
from chatbot import ChatError, ChatService, TurnObserver, build_service
from chatbot._prompts import NO_CONTEXT_ANSWER, PROMPT_VERSION
from chatbot._service import call_usage, total_usage
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
    streamed = "".join(e.data["text"] for e in events if e.kind == "token")
    finals = [e for e in events if e.kind == "final"]
    # The grounding gate may replace the streamed draft; then a "final" event carries what is shown.
    assert result.answer == (finals[-1].data["answer"] if finals else streamed)
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
    """The turn is stopped and logged ``cancelled`` with what was answered so far (fault 5)."""

    async def leave_early() -> tuple[str, str]:
        turn_id, streamed = "", ""
        stream = service.stream_turn("How do I sort a list in place?")
        async for event in stream:
            if event.kind == "started":
                turn_id = event.data["turn_id"]
            if event.kind == "token":
                streamed += event.data["text"]
                break
        await stream.aclose()
        for _ in range(200):  # the turn's own task stops the model and logs it
            await asyncio.sleep(0.1)
            if service.chatlog.get_turn(turn_id)["status"] != cl.STATUS_IN_PROGRESS:
                break
        return turn_id, streamed

    turn_id, streamed = run(leave_early())
    row = service.chatlog.get_turn(turn_id)
    assert row["status"] == cl.STATUS_CANCELLED
    assert row["answer"].startswith(streamed) and row["completed_at"] is not None


# --- fault 7: every LLM call of a turn counts in its usage; unknown usage is None, never 0 -------
class UsageWitness(TurnObserver):
    """An observer that sees each LLM call's usage through LangChain callbacks, and each turn record."""

    def __init__(self) -> None:
        from langchain_core.callbacks import BaseCallbackHandler

        witness = self

        class Handler(BaseCallbackHandler):
            def on_llm_end(self, response: Any, **kwargs: Any) -> None:
                message = response.generations[0][0].message
                witness.calls.append(dict(message.usage_metadata or {}))

        self.calls: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.handler = Handler()

    def langchain_config(self, turn: dict[str, Any]) -> dict[str, Any]:
        return {"callbacks": [self.handler]}

    def on_turn_end(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))


def test_a_follow_up_counts_the_condense_call_in_its_usage(run, indexed: Path, llm_server: str) -> None:
    witness = UsageWitness()
    # Every passage counts as relevant: whatever the model's condensed question retrieves, the
    # follow-up makes its answer call too (the usage sum is tested here, not the rewrite).
    settings = Settings(
        data_dir=indexed, openai_base_url=llm_server, max_tokens=40, temperature=0.0, score_threshold=-1.0
    )
    svc = build_service(settings, observer=witness)
    first = run(svc.run_turn("What is a tuple?"))
    witness.calls.clear()
    second = run(svc.run_turn("Can it be a dictionary key?", first.conversation_id))
    assert len(witness.calls) == 2, "a follow-up makes two LLM calls: condense, then answer"
    assert all(c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in witness.calls)
    expected_in = sum(c["input_tokens"] for c in witness.calls)
    expected_out = sum(c["output_tokens"] for c in witness.calls)
    row = svc.chatlog.get_turn(second.turn_id)
    assert (row["input_tokens"], row["output_tokens"]) == (expected_in, expected_out)
    assert (second.input_tokens, second.output_tokens) == (expected_in, expected_out)
    record = witness.records[-1]  # what telemetry reads for the token metric and the cost
    assert (record["input_tokens"], record["output_tokens"]) == (expected_in, expected_out)


@pytest.mark.parametrize("usage", [False, {"total_tokens": 42}], ids=["no usage", "usage without counts"])
def test_an_endpoint_without_usage_stores_unknown_not_zero(run, indexed: Path, usage: Any) -> None:
    from monitoring._instant_llm import Behaviour, InstantLLM

    with InstantLLM(Behaviour(usage=usage)) as instant:
        witness = UsageWitness()
        # Every passage counts as relevant: the instant server's fixed "condensed question" still
        # leads to an answer call, so the follow-up makes two calls without usage.
        settings = Settings(data_dir=indexed, openai_base_url=instant.base_url, score_threshold=-1.0)
        svc = build_service(settings, observer=witness)
        first = run(svc.run_turn("What is a tuple?"))
        second = run(svc.run_turn("Can it be a dictionary key?", first.conversation_id))
    assert len(witness.calls) == 3, "answer; then condense and answer"
    for result in (first, second):
        assert result.status == cl.STATUS_OK and result.answer
        row = svc.chatlog.get_turn(result.turn_id)
        assert (row["input_tokens"], row["output_tokens"]) == (None, None)
        assert (result.input_tokens, result.output_tokens) == (None, None)
    assert all((r["input_tokens"], r["output_tokens"]) == (None, None) for r in witness.records)


@pytest.mark.parametrize(
    ("usage", "text", "expected"),
    [
        ({"input_tokens": 120, "output_tokens": 9}, True, (120, 9)),
        ({"input_tokens": 120, "output_tokens": 0}, False, (120, 0)),
        ({"input_tokens": 0, "output_tokens": 0, "total_tokens": 42}, True, None),
        ({"input_tokens": 120, "output_tokens": 0}, True, None),
        (None, True, None),
        ({}, True, None),
    ],
)
def test_call_usage_known_values(usage: Any, text: bool, expected: Any) -> None:
    assert call_usage(usage, text) == expected


def test_total_usage_known_values() -> None:
    assert total_usage([(100, 10), (50, 5)]) == (150, 15)
    assert total_usage([(100, 10), None]) == (None, None)
    assert total_usage([]) == (None, None)


@pytest.mark.postgres
def test_a_turn_on_postgresql(run, indexed: Path, llm_server: str, postgres_url: str) -> None:
    svc = _service(indexed, llm_server, database_url=postgres_url)
    result = run(svc.run_turn("What is a tuple?"))
    row = svc.chatlog.get_turn(result.turn_id)
    assert row["status"] == cl.STATUS_OK and row["query_embedding"].shape == (384,)
    assert svc.chatlog.engine.dialect.name == "postgresql"
