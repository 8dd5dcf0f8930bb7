"""App -> real rotel collector -> real Phoenix: span tree, ids, GenAI attributes, feedback, privacy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitoring import ChatLog, Telemetry
from monitoring import semconv as sc
from tests.monitoring.conftest import phoenix_spans, telemetry_settings

pytestmark = pytest.mark.slow


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    """Phoenix returns attributes flat (``{"a.b": v}``) or nested; flatten to dotted keys."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", span.get("attributes") or {})
    return out


def _by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def _ancestors(span: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> list[str]:
    names, parent = [], span.get("parent_id")
    while parent and parent in by_id:
        names.append(by_id[parent]["name"])
        parent = by_id[parent].get("parent_id")
    return names


def _chat(base: str, message: str, stream: bool) -> str:
    """One turn over HTTP; returns its turn id (streamed turns are read to the end)."""
    body = {"message": message, "stream": stream}
    if not stream:
        resp = httpx.post(f"{base}/api/chat", json=body, timeout=300)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["turn_id"])
    turn_id = None
    with httpx.stream("POST", f"{base}/api/chat", json=body, timeout=300) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data:") and turn_id is None:
                turn_id = json.loads(line[5:]).get("turn_id")
    assert turn_id
    return str(turn_id)


@pytest.mark.llm
def test_streamed_turn_is_one_trace_in_phoenix(
    otel_stack: dict, llm_server: str, indexed_dir: Path, shared_retriever: Any, app_with: Any, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    settings = telemetry_settings(
        indexed_dir, openai_base_url=llm_server, database_url=db, otlp_endpoint=otel_stack["grpc"]
    )
    tel = Telemetry(settings)
    with app_with(settings, tel, shared_retriever) as base:
        turn_id = _chat(base, "How do I copy a file? Reply to ann.lee@example.org", stream=True)
        fb = httpx.post(f"{base}/api/feedback", json={"turn_id": turn_id, "value": 1, "comment": "ok"})
        assert fb.status_code == 201, fb.text
        assert tel.force_flush()
    row = ChatLog(db).get_turn(turn_id)
    assert row is not None and row["status"] == "ok" and row["trace_id"]

    # Wait for every span picked out below: the first 12 to reach Phoenix need not hold them all.
    picked = [
        sc.SPAN_TURN,
        "rag_chain.workflow",
        "chatlog.start_turn",
        "chatlog.finish_turn",
        sc.SPAN_FEEDBACK,
    ]
    picked += ["execute_task condense_question", "execute_task retrieve", "chroma.query", "ChatOpenAI.chat"]
    spans = phoenix_spans(otel_stack["phoenix"], row["trace_id"], min_count=12, timeout=120, names=picked)
    by_id = {s["context"]["span_id"]: s for s in spans}
    names = {s["name"] for s in spans}
    # HTTP request -> turn -> chain -> (condense, retrieve -> chroma, answer -> LLM), chat-log writes.
    (http,) = [s for s in spans if s["name"].startswith("POST /api/chat")]
    assert http["parent_id"] is None
    (turn,) = _by_name(spans, sc.SPAN_TURN)
    assert turn["parent_id"] == http["context"]["span_id"]
    assert turn["context"]["span_id"] == row["span_id"]
    (chain,) = _by_name(spans, "rag_chain.workflow")
    assert chain["parent_id"] == turn["context"]["span_id"]
    assert {"chatlog.start_turn", "chatlog.finish_turn", "execute_task retrieve"} <= names
    for child in ("chatlog.start_turn", "chatlog.finish_turn"):
        assert _by_name(spans, child)[0]["parent_id"] == turn["context"]["span_id"]
    for step in ("execute_task condense_question", "execute_task retrieve"):
        assert _by_name(spans, step)[0]["parent_id"] == chain["context"]["span_id"]
    (retriever,) = _by_name(spans, "execute_task retrieve")
    (chroma,) = _by_name(spans, "chroma.query")
    assert chroma["parent_id"] == retriever["context"]["span_id"]
    (llm,) = [s for s in spans if s["name"] == "ChatOpenAI.chat"]
    assert "rag_chain.workflow" in _ancestors(llm, by_id)

    # Ids both ways, GenAI attributes on the LLM span (tokens survive streaming).
    ta, la = _attrs(turn), _attrs(llm)
    assert ta[sc.TURN_ID] == turn_id and ta[sc.CONVERSATION_ID] == row["conversation_id"]
    assert la[sc.GEN_AI_REQUEST_MODEL] == settings.llm_model
    assert int(la[sc.GEN_AI_USAGE_INPUT_TOKENS]) == row["input_tokens"] > 0
    assert int(la[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) == row["output_tokens"] > 0
    assert la[sc.GEN_AI_RESPONSE_FINISH_REASONS]
    assert float(ta[sc.GEN_AI_SERVER_TTFT]) == pytest.approx(row["ttft_ms"] / 1000)

    # Retrieval: the chat log's chunk ids and scores are on the retrieve step, a RETRIEVER span.
    ra = _attrs(retriever)
    # Phoenix lifts openinference.span.kind out of the attributes into the span's own kind.
    assert retriever.get("span_kind", ra.get(sc.OPENINFERENCE_SPAN_KIND)) == "RETRIEVER"
    assert ra[sc.TURN_ID] == turn_id
    ids = [ra[f"{sc.RETRIEVAL_DOCUMENTS}.{i}.{sc.DOCUMENT_ID}"] for i in range(len(row["retrieved"]))]
    assert ids == [c["chunk_id"] for c in row["retrieved"]]
    assert float(ra[f"{sc.RETRIEVAL_DOCUMENTS}.0.{sc.DOCUMENT_SCORE}"]) == pytest.approx(
        row["retrieved"][0]["score"], abs=1e-5
    )

    # Feedback: a span in the turn's trace, under and linked to the turn span.
    (fb_span,) = _by_name(spans, sc.SPAN_FEEDBACK)
    fa = _attrs(fb_span)
    assert fb_span["parent_id"] == turn["context"]["span_id"]
    assert int(fa[sc.FEEDBACK_VALUE]) == 1 and fa[sc.TURN_ID] == turn_id
    assert fa[sc.LINKED_TRACE_ID] == row["trace_id"]

    # Content on + redaction: the question is traced, the e-mail address is not.
    assert "copy a file" in str(ta[sc.INPUT_VALUE])
    dump = json.dumps(spans)
    assert "ann.lee@example.org" not in dump and "[EMAIL]" in dump


@pytest.mark.parametrize("protocol", ["http/protobuf"])
def test_content_off_keeps_text_out_of_spans(
    otel_stack: dict,
    instant_llm: str,
    indexed_dir: Path,
    shared_retriever: Any,
    app_with: Any,
    tmp_path: Path,
    protocol: str,
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    settings = telemetry_settings(
        indexed_dir,
        openai_base_url=instant_llm,
        database_url=db,
        otlp_endpoint=otel_stack["http"],
        otlp_protocol=protocol,
        trace_content=False,
    )
    tel = Telemetry(settings)
    marker = "zanzibar-quokka"
    try:
        with app_with(settings, tel, shared_retriever) as base:
            turn_id = _chat(base, f"How do I sort a list of {marker}?", stream=False)
            comment = f"{marker} comment"
            httpx.post(f"{base}/api/feedback", json={"turn_id": turn_id, "value": -1, "comment": comment})
            assert tel.force_flush()
    finally:
        tel.shutdown()
    row = ChatLog(db).get_turn(turn_id)
    assert row is not None and marker in row["user_message"]  # the chat log keeps it
    wanted = {sc.SPAN_TURN, "ChatOpenAI.chat", sc.SPAN_FEEDBACK, "execute_task retrieve"}
    spans = phoenix_spans(otel_stack["phoenix"], row["trace_id"], min_count=10, timeout=120, names=wanted)
    names = {s["name"] for s in spans}
    assert wanted <= names
    dump = json.dumps(spans)
    # Neither the question, the comment, the answer, nor the retrieved text reached the backend.
    assert marker not in dump
    assert "documented function" not in dump and "list.sort()" not in dump
    assert sc.INPUT_VALUE not in _attrs(_by_name(spans, sc.SPAN_TURN)[0])
    llm = _attrs(_by_name(spans, "ChatOpenAI.chat")[0])
    assert int(llm[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) > 0  # numbers stay
    assert not [k for k in llm if "messages" in k or k.startswith(("gen_ai.prompt", "gen_ai.completion"))]
