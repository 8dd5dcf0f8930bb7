"""The span tree of one HTTP turn, counted exactly: the budget the overhead benchmark depends on.

Each span costs the turn time and the exporter; these tests fail if plumbing runs come back
(LCEL assign/parallel/route runnables) or if FastAPI's native telemetry doubles the HTTP spans.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from monitoring import Telemetry
from monitoring import semconv as sc
from tests.monitoring.conftest import telemetry_settings

#: Spans of a first turn (no history), by name: the request, our turn and chat-log spans,
#: OpenLLMetry's chain/step/LLM spans (the retrieve step carries the documents) and its Chroma query.
EXPECTED = {
    "POST /api/chat": 1,
    sc.SPAN_TURN: 1,
    "chatlog.start_turn": 1,
    "chatlog.finish_turn": 1,
    "rag_chain.workflow": 1,
    "execute_task condense_question": 1,
    "execute_task retrieve": 1,
    "chroma.query": 1,
    "ChatOpenAI.chat": 1,
}


def test_one_turn_makes_exactly_the_expected_spans(
    instant_llm: str, indexed_dir: Path, shared_retriever: Any, app_with: Any, tmp_path: Path
) -> None:
    settings = telemetry_settings(
        indexed_dir, openai_base_url=instant_llm, database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )
    memory = InMemorySpanExporter()
    tel = Telemetry(settings, span_exporters=[memory])
    try:
        with app_with(settings, tel, shared_retriever) as base:
            resp = httpx.post(f"{base}/api/chat", json={"message": "How do I copy a file?"}, timeout=60)
            assert resp.status_code == 200, resp.text
            assert tel.force_flush()  # before the app's shutdown closes the exporters
        spans = memory.get_finished_spans()
    finally:
        tel.shutdown()

    assert dict(Counter(s.name for s in spans)) == EXPECTED
    # One trace, one SERVER span, and no span from FastAPI's own (duplicate) instrumentation.
    assert len({s.context.trace_id for s in spans}) == 1
    assert [s.name for s in spans if s.kind is SpanKind.SERVER] == ["POST /api/chat"]
    assert not [
        s.name for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == "fastapi"
    ]
    # The chain's steps hang directly under rag_chain.
    by_name = {s.name: s for s in spans}
    chain = by_name["rag_chain.workflow"].context.span_id
    for step in ("execute_task condense_question", "execute_task retrieve", "ChatOpenAI.chat"):
        parent = by_name[step].parent
        assert parent is not None and parent.span_id == chain, step
    # The retrieve step is the RETRIEVER span: documents with ids and scores, Chroma beneath it.
    retriever = by_name["execute_task retrieve"]
    attrs = dict(retriever.attributes or {})
    assert attrs[sc.OPENINFERENCE_SPAN_KIND] == "RETRIEVER"
    assert attrs[f"{sc.RETRIEVAL_DOCUMENTS}.0.{sc.DOCUMENT_ID}"]
    chroma_parent = by_name["chroma.query"].parent
    assert chroma_parent is not None and chroma_parent.span_id == retriever.context.span_id


def test_without_a_step_span_the_documents_get_a_span_of_their_own(indexed_dir: Path) -> None:
    from types import SimpleNamespace

    memory = InMemorySpanExporter()
    tel = Telemetry(telemetry_settings(indexed_dir), span_exporters=[memory])
    chunk = SimpleNamespace(chunk_id="c1", text="shutil.copy", score=0.8)
    retrieval = SimpleNamespace(retrieved=[chunk], retrieval_ms=12.0)
    try:
        with tel.turn_scope({"turn_id": "t1", "conversation_id": "c1", "user_message": "q"}):
            tel.annotate_retrieval(retrieval)  # the turn span is current: no step span to annotate
        assert tel.force_flush()
        spans = {s.name: s for s in memory.get_finished_spans()}
    finally:
        tel.shutdown()
    own, turn = spans[sc.SPAN_RETRIEVAL], spans[sc.SPAN_TURN]
    assert own.parent is not None and own.parent.span_id == turn.context.span_id
    attrs = dict(own.attributes or {})
    assert attrs[sc.OPENINFERENCE_SPAN_KIND] == "RETRIEVER" and attrs[sc.TURN_ID] == "t1"
    assert attrs[f"{sc.RETRIEVAL_DOCUMENTS}.0.{sc.DOCUMENT_ID}"] == "c1"
    assert (
        turn.attributes is not None and f"{sc.RETRIEVAL_DOCUMENTS}.0.{sc.DOCUMENT_ID}" not in turn.attributes
    )
