"""Arize sink: known-value mapping, the SDK's own validators, and the exact wire payload on loopback.

No live Arize is reachable: the real ``arize`` SDK is pointed at :class:`ArizeReceiver`, which
speaks its two wire formats (HTTP Arrow upload for spans, Arrow Flight DoPut for evaluations and
annotations), and the outbox is the real one on a real SQLite chat log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from chatlog import ChatLog
from chatlog._base import write_transaction
from chatlog.outbox import DEAD, DELIVERED, PENDING, OutboxItem, OutboxWorker, enqueue, items
from monitoring import _arize as az
from monitoring import _arize_rows as rows
from monitoring._arize_cli import parse_since
from ragloop.cli import app as ragloop_app
from ragloop.settings import Settings
from tests.pii import ORDER_NUMBER, PII_TEXT, leaked

sys.path.insert(0, str(Path(__file__).parent))
from arize_receiver import ArizeReceiver  # noqa: E402

MODEL = "qwen2.5-coder-0.5b-instruct"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
ROUTES = {"turn": ["arize"], "feedback": ["arize"], "evaluation": ["arize"]}


# --- pure mapping: known values -------------------------------------------------------------------------
def test_span_ids_keep_traced_ids_and_derive_stable_ones() -> None:
    assert rows.span_ids("t1", "a" * 32, "b" * 16) == ("a" * 32, "b" * 16)
    # sha256("ragloop:t1") = bb35a61d...: the first 32 hex digits, then the next 16
    assert rows.span_ids("t1") == ("bb35a61dfc4fdc2466aec8ac245a4fb3", "95d676d22b5f0454")
    assert rows.span_ids("t1", "a" * 32) == ("a" * 32, "95d676d22b5f0454")
    assert rows.span_ids("t1") != rows.span_ids("t2")


def _turn(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "turn_id": "turn-1",
        "conversation_id": "conv-1",
        "created_at": datetime(2026, 11, 30, 8, 0, 0),  # naive, as SQLite returns it: UTC
        "completed_at": datetime(2026, 11, 30, 8, 0, 2, tzinfo=UTC),
        "status": "ok",
        "user_message": "mail me at ann@example.com",
        "standalone_question": "How do I sort a list?",
        "answer": "Use sorted(xs) [1].",
        "query_embedding": np.array([0.5, 0.25, -1.0], dtype=np.float32),
        "answer_embedding": None,
        "embedding_model": EMBEDDING_MODEL,
        "model": MODEL,
        "input_tokens": 120,
        "output_tokens": 8,
        "prompt_version": "v3",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "error": None,
    }
    row.update(over)
    return row


def test_span_row_known_values() -> None:
    row = rows.span_row(_turn(), answer_vector=np.array([1.0, 0.0, 0.125], dtype=np.float32))
    assert row[rows.SPAN_ID] == "b7ad6b7169203331"
    assert row[rows.TRACE_ID] == "0af7651916cd43dd8448eb211c80319c"
    assert row[rows.SPAN_NAME] == "chat.turn"
    assert row[rows.START_TIME] == datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
    assert row[rows.END_TIME] == datetime(2026, 11, 30, 8, 0, 2, tzinfo=UTC)
    assert row[rows.STATUS_CODE] == "OK"
    assert row[rows.INPUT] == "mail me at [EMAIL]"  # RAGLOOP_REDACT on by default
    assert row[rows.OUTPUT] == "Use sorted(xs) [1]."
    assert row[rows.EMBEDDINGS] == [
        {"embedding.vector": [0.5, 0.25, -1.0], "embedding.text": "How do I sort a list?"},
        {"embedding.vector": [1.0, 0.0, 0.125], "embedding.text": "Use sorted(xs) [1]."},
    ]
    assert row[rows.EMBEDDING_MODEL] == EMBEDDING_MODEL and row[rows.LLM_MODEL] == MODEL
    assert row[rows.TOKENS_PROMPT] == 120 and row[rows.TOKENS_COMPLETION] == 8
    assert row[rows.SESSION] == "conv-1"
    assert row[rows.METADATA] == {"turn_id": "turn-1", "status": "ok", "prompt_version": "v3"}


def test_span_row_error_turn_without_answer_or_trace() -> None:
    row = rows.span_row(_turn(status="error", answer=None, error="llm_timeout", trace_id=None, span_id=None))
    assert row[rows.STATUS_CODE] == "ERROR" and row[rows.STATUS_MESSAGE] == "llm_timeout"
    assert (row[rows.TRACE_ID], row[rows.SPAN_ID]) == rows.span_ids("turn-1")
    assert [e["embedding.text"] for e in row[rows.EMBEDDINGS]] == [
        "How do I sort a list?"
    ]  # no answer vector
    assert row[rows.OUTPUT] is None


def test_text_policy_content_off_drops_text_keeps_vectors() -> None:
    row = rows.span_row(_turn(), text=rows.TextPolicy(content=False))
    assert row[rows.INPUT] is None and row[rows.OUTPUT] is None
    assert row[rows.EMBEDDINGS] == [{"embedding.vector": [0.5, 0.25, -1.0], "embedding.text": ""}]
    assert rows.TextPolicy(redact=False)("ann@example.com") == "ann@example.com"


def test_evaluation_rows_known_values() -> None:
    payloads = [
        {
            "turn_id": "t",
            "evaluator": "faithfulness_local",
            "score": 0.25,
            "span_id": "s" * 16,
            "trace_id": "x" * 32,
        },
        {"turn_id": "t", "evaluator": "llm-judge", "score": 0.9, "span_id": "s" * 16, "trace_id": "x" * 32},
        {
            "turn_id": "u",
            "evaluator": "faithfulness_local",
            "score": 0.5,
            "span_id": "u" * 16,
            "trace_id": "x" * 32,
        },
    ]
    assert rows.evaluation_rows(payloads, threshold=0.5) == [
        {
            "context.span_id": "s" * 16,
            "eval.faithfulness_local.score": 0.25,
            "eval.faithfulness_local.label": "unfaithful",
            "eval.llm_judge.score": 0.9,
        },
        {
            "context.span_id": "u" * 16,
            "eval.faithfulness_local.score": 0.5,
            "eval.faithfulness_local.label": "faithful",
        },
    ]


def test_annotation_rows_known_values() -> None:
    payloads = [
        {
            "turn_id": "t",
            "rater": "ui:abc",
            "value": -1,
            "comment": "wrong, call me 555-123-4567",
            "span_id": "s" * 16,
        },
        {"turn_id": "u", "rater": "api", "value": 1, "comment": None, "span_id": "u" * 16},
    ]
    got = rows.annotation_rows(payloads, updated_at_ms=1_700_000_000_000)
    assert got == [
        {
            "context.span_id": "s" * 16,
            "annotation.user_feedback.label": "thumbs_down",
            "annotation.user_feedback.score": -1.0,
            "annotation.user_feedback.text": "wrong, call me [PHONE]",
            "annotation.user_feedback.updated_by": "ui:abc",
            "annotation.user_feedback.updated_at": 1_700_000_000_000,
        },
        {
            "context.span_id": "u" * 16,
            "annotation.user_feedback.label": "thumbs_up",
            "annotation.user_feedback.score": 1.0,
            "annotation.user_feedback.text": None,
            "annotation.user_feedback.updated_by": "api",
            "annotation.user_feedback.updated_at": 1_700_000_000_000,
        },
    ]
    with pytest.raises(ValueError, match="1 or -1"):
        rows.annotation_rows([{"turn_id": "t", "value": 0}], 0)


def test_parse_since_known_values() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T08:00+01:00", now) == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    for bad in ("yesterday", "7x", "2027-01-01", ""):
        with pytest.raises(ValueError):
            parse_since(bad, now)


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "arize", None)
    with pytest.raises(az.ArizeNotInstalledError, match=r"pip install 'ragloop\[arize\]'"):
        az.make_client(Settings(arize_api_key="k", arize_space_id="s"))


def test_from_settings_is_none_unless_key_and_space(tmp_path: Path) -> None:
    log = ChatLog(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert az.from_settings(Settings(data_dir=tmp_path), log) is None
        assert az.from_settings(Settings(data_dir=tmp_path, arize_api_key="k"), log) is None
        assert az.from_settings(Settings(data_dir=tmp_path, arize_space_id="s"), log) is None
        sink = az.from_settings(Settings(data_dir=tmp_path, arize_api_key="k", arize_space_id="s"), log)
        assert sink is not None and sink.name == "arize" and sink.kinds == {"turn", "feedback", "evaluation"}
    finally:
        log.close()


# --- the real SDK against the loopback receiver --------------------------------------------------------
@pytest.fixture(scope="module")
def embedder() -> Any:
    from retrieval import get_embedder

    return get_embedder(Settings())


@pytest.fixture()
def receiver() -> Iterator[ArizeReceiver]:
    rec = ArizeReceiver().start()
    try:
        yield rec
    finally:
        rec.stop()


@pytest.fixture()
def arize_settings(tmp_path: Path, receiver: ArizeReceiver) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        arize_api_key="test-api-key",
        arize_space_id="space-1",
        arize_project_name="ragloop-tests",
        outbox_backoff_s=0.01,
        outbox_backoff_max_s=0.05,
        **receiver.client_settings(),
    )


@pytest.fixture()
def chatlog(arize_settings: Settings) -> Iterator[ChatLog]:
    log = ChatLog(arize_settings.chatlog_url)
    log.set_routes(ROUTES)
    try:
        yield log
    finally:
        log.close()


QUESTIONS = [
    ("How do I sort a list?", "Use sorted(xs) for a new list or xs.sort() in place [1]."),
    ("How do I copy a file?", "shutil.copy(src, dst) copies the contents and permissions [1]."),
    ("How do I delete a file?", "Call os.remove(path) [1]."),
]


def _log_turn(log: ChatLog, embedder: Any, question: str, answer: str, **over: Any) -> str:
    fields: dict[str, Any] = {
        "conversation_id": "conv-1",
        "user_message": question,
        "standalone_question": question,
        "query_embedding": embedder.embed_query(question),
        "embedding_model": EMBEDDING_MODEL,
        "model": MODEL,
        "trace_id": rows.span_ids(question)[0],
        "span_id": rows.span_ids(question)[1],
    }
    fields.update(over)
    turn_id = log.start_turn(**fields)
    log.finish_turn(turn_id, "ok", answer=answer, input_tokens=100, output_tokens=12)
    return turn_id


def _enqueue_turn(log: ChatLog, turn_id: str) -> None:
    # The producer line the chat service's finish_turn needs (see docs/arize.md).
    with write_transaction(log.engine) as conn:
        enqueue(conn, kind="turn", key=turn_id, payload={"turn_id": turn_id}, sinks=log.routes("turn"))


def _enqueue_eval(log: ChatLog, turn_id: str, score: float | None) -> None:
    turn = log.get_turn(turn_id)
    assert turn is not None
    payload = {
        "turn_id": turn_id,
        "evaluator": "faithfulness_local",
        "score": score,
        "trace_id": turn["trace_id"],
        "span_id": turn["span_id"],
    }
    with write_transaction(log.engine) as conn:
        enqueue(
            conn, kind="evaluation", key=f"{turn_id}:faithfulness_local", payload=payload, sinks=["arize"]
        )


def _worker(log: ChatLog, sink: az.ArizeSink, max_attempts: int = 8) -> OutboxWorker:
    return OutboxWorker(
        log.engine, [sink], max_attempts=max_attempts, backoff_initial_s=0.01, backoff_max_s=0.05
    )


def _statuses(log: ChatLog) -> dict[tuple[str, str], str]:
    return {(r["kind"], r["key"]): r["status"] for r in items(log.engine, sink="arize", limit=1000)}


def test_turns_feedback_and_scores_reach_arize_on_the_wire(
    chatlog: ChatLog, arize_settings: Settings, receiver: ArizeReceiver, embedder: Any
) -> None:
    turn_ids = [_log_turn(chatlog, embedder, q, a) for q, a in QUESTIONS]
    for turn_id in turn_ids:
        _enqueue_turn(chatlog, turn_id)
    chatlog.add_feedback(turn_ids[0], -1, "that is not what I asked", rater="ui:s1", source="ui")
    chatlog.add_feedback(turn_ids[1], 1, rater="api:k", source="api")
    _enqueue_eval(chatlog, turn_ids[0], 0.2)
    _enqueue_eval(chatlog, turn_ids[2], 0.9)
    # A turn and a comment full of PII and key shapes (tests/pii.py): redacted on the wire.
    pii_turn = _log_turn(chatlog, embedder, PII_TEXT, f"Sure: {PII_TEXT}")
    _enqueue_turn(chatlog, pii_turn)
    chatlog.add_feedback(pii_turn, -1, f"see {PII_TEXT}", rater="ui:s2", source="ui")
    sink = az.from_settings(arize_settings, chatlog)
    assert sink is not None
    assert _worker(chatlog, sink).drain(timeout_s=60)
    assert set(_statuses(chatlog).values()) == {DELIVERED}

    # spans: one HTTP upload with the OpenInference columns, the key and space in the headers
    (spans,) = receiver.of_kind("spans")
    assert spans.headers["authorization"] == "test-api-key"
    assert spans.headers["arize-space-id"] == "space-1"
    assert spans.meta["arize-schema"]["constants"] == {
        "model_id": "ragloop-tests",
        "environment": "TRACING",
        "model_type": "GENERATIVE_LLM",
    }
    assert {
        "context.span_id",
        "context.trace_id",
        "name",
        "start_time",
        "end_time",
        "attributes.input.value",
        "attributes.output.value",
        "attributes.embedding.embeddings",
        "attributes.embedding.model_name",
        "attributes.llm.model_name",
    } <= set(spans.table.column_names)
    by_span = {r["context.span_id"]: r for r in spans.rows()}
    for turn_id, (question, answer) in zip(turn_ids, QUESTIONS, strict=True):
        turn = chatlog.get_turn(turn_id)
        assert turn is not None
        row = by_span[turn["span_id"]]
        assert row["context.trace_id"] == turn["trace_id"]
        assert row["attributes.input.value"] == question and row["attributes.output.value"] == answer
        assert row["attributes.llm.model_name"] == MODEL
        assert row["attributes.embedding.model_name"] == EMBEDDING_MODEL
        query_emb, answer_emb = (json.loads(e) for e in row["attributes.embedding.embeddings"])
        assert query_emb["embedding.text"] == question and answer_emb["embedding.text"] == answer
        assert len(query_emb["embedding.vector"]) == len(answer_emb["embedding.vector"]) == 384
        # float32 survives the JSON round trip bit for bit
        assert np.array_equal(
            np.asarray(query_emb["embedding.vector"], dtype=np.float32), turn["query_embedding"]
        )
        expected_answer = embedder.embed_documents([answer])[0]
        assert np.allclose(
            np.asarray(answer_emb["embedding.vector"], dtype=np.float32), expected_answer, atol=1e-5
        )
        assert row["start_time"] > 0 and row["end_time"] >= row["start_time"]

    # evaluations and annotations: Flight DoPut with the same span ids
    (evals,) = receiver.of_kind("evaluation")
    assert evals.meta["write_span_evaluation_request"] == {
        "external_model_id": "ragloop-tests",
        "space_id": "space-1",
    }
    assert evals.headers["auth-token-bin"] == "test-api-key"
    span_of = {t: chatlog.get_turn(t)["span_id"] for t in turn_ids}  # type: ignore[index]
    got = {
        r["context.span_id"]: (r["eval.faithfulness_local.score"], r["eval.faithfulness_local.label"])
        for r in evals.rows()
    }
    assert got == {span_of[turn_ids[0]]: (0.2, "unfaithful"), span_of[turn_ids[2]]: (0.9, "faithful")}
    (notes,) = receiver.of_kind("annotation")
    assert notes.meta["write_span_annotation_request"]["space_id"] == "space-1"
    got_notes = {
        r["context.span_id"]: (
            r["annotation.user_feedback.label"],
            r["annotation.user_feedback.score"],
            r["annotation.user_feedback.updated_by"],
            r["annotation.user_feedback.text"],
        )
        for r in notes.rows()
    }
    pii_note = got_notes.pop(chatlog.get_turn(pii_turn)["span_id"])  # type: ignore[index]
    assert pii_note[3].startswith("see Reply to [EMAIL]") and ORDER_NUMBER in pii_note[3]
    wire = json.dumps([spans.rows(), notes.rows()], default=str)
    assert leaked(wire) == [] and "[CARD]" in wire and "[API_KEY]" in wire
    assert got_notes == {
        span_of[turn_ids[0]]: ("thumbs_down", -1.0, "ui:s1", "that is not what I asked"),
        span_of[turn_ids[1]]: ("thumbs_up", 1.0, "api:k", None),
    }
    assert set(receiver.evaluations) | set(receiver.annotations) <= set(receiver.spans)


def test_a_bad_row_is_rejected_by_the_sdk_validators_before_any_network_call(
    chatlog: ChatLog, arize_settings: Settings, receiver: ArizeReceiver, embedder: Any
) -> None:
    from arize.exceptions.base import ValidationFailure

    q, a = QUESTIONS[0]
    bad = _log_turn(chatlog, embedder, "bad " + q, a, model="m" * 150)  # over the SDK's 100-char limit
    sink = az.from_settings(arize_settings, chatlog)
    assert sink is not None
    frame = az._frame([rows.span_row(chatlog.get_turn(bad))])  # type: ignore[arg-type]
    with pytest.raises(ValidationFailure):  # the SDK's own check, before its POST
        sink.client.spans.log(space_id="space-1", project_name="ragloop-tests", dataframe=frame)
    assert az.validate_spans(frame, "ragloop-tests")  # ours runs the same validators

    item = OutboxItem(id=1, sink="arize", kind="turn", key=bad, payload={"turn_id": bad})
    assert sink.send([item]) == [False]
    assert "llm.model_name" in sink.errors[bad] and "validators" in sink.errors[bad]
    assert receiver.requests == []  # nothing left the process

    # in a mixed batch the good turn goes, the bad one stays in the outbox, dead, with the reason
    good = _log_turn(chatlog, embedder, q, a)
    _enqueue_turn(chatlog, bad)
    _enqueue_turn(chatlog, good)
    _worker(chatlog, sink, max_attempts=1).drain(timeout_s=30)
    assert _statuses(chatlog) == {("turn", bad): DEAD, ("turn", good): DELIVERED}
    (dead,) = items(chatlog.engine, sink="arize", status_=DEAD)
    assert "llm.model_name" in dead["last_error"]
    assert [r["context.span_id"] for r in receiver.of_kind("spans")[0].rows()] == [
        chatlog.get_turn(good)["span_id"]
    ]  # type: ignore[index]


def test_receiver_down_loses_nothing_and_delivers_once_back(
    chatlog: ChatLog, arize_settings: Settings, receiver: ArizeReceiver, embedder: Any
) -> None:
    turn_ids = [_log_turn(chatlog, embedder, q, a) for q, a in QUESTIONS]
    for turn_id in turn_ids:
        _enqueue_turn(chatlog, turn_id)
    chatlog.add_feedback(turn_ids[0], -1, rater="ui:s1", source="ui")
    _enqueue_eval(chatlog, turn_ids[1], 0.3)
    sink = az.from_settings(arize_settings, chatlog)
    assert sink is not None
    worker = _worker(chatlog, sink)
    receiver.stop()
    report = worker.deliver_once()  # never raises: every item fails and stays pending
    assert report.claimed == 5 and report.delivered == 0 and report.failed == 5
    assert set(_statuses(chatlog).values()) == {PENDING}
    assert receiver.requests == []

    receiver.start()
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while set(_statuses(chatlog).values()) != {DELIVERED} and datetime.now(UTC) < deadline:
        worker.deliver_once()
    assert set(_statuses(chatlog).values()) == {DELIVERED}
    spans = [r["context.span_id"] for req in receiver.of_kind("spans") for r in req.rows()]
    assert sorted(spans) == sorted(chatlog.get_turn(t)["span_id"] for t in turn_ids)  # type: ignore[index]
    assert len(receiver.evaluations) == len(receiver.annotations) == 1


def test_a_score_before_its_turn_waits_for_the_span(
    chatlog: ChatLog, arize_settings: Settings, receiver: ArizeReceiver, embedder: Any
) -> None:
    turn_id = _log_turn(chatlog, embedder, *QUESTIONS[0])
    sink = az.from_settings(arize_settings, chatlog)
    assert sink is not None
    turn = chatlog.get_turn(turn_id)
    assert turn is not None
    score = OutboxItem(
        1,
        "arize",
        "evaluation",
        f"{turn_id}:faithfulness_local",
        {
            "turn_id": turn_id,
            "evaluator": "faithfulness_local",
            "score": 0.4,
            "trace_id": turn["trace_id"],
            "span_id": turn["span_id"],
        },
    )
    assert sink.send([score]) == [False]
    assert "no span" in sink.errors[score.key]
    span = OutboxItem(2, "arize", "turn", turn_id, {"turn_id": turn_id})
    assert sink.send([score, span]) == [True, True]  # the turn goes first within a batch
    assert score.key not in sink.errors
    assert receiver.evaluations[turn["span_id"]]["eval.faithfulness_local.score"] == 0.4
    unscored = OutboxItem(
        3, "arize", "evaluation", "x", {"turn_id": turn_id, "evaluator": "e", "score": None}
    )
    assert sink.send([unscored]) == [True]  # an evaluator error has no score to send


def test_backfill_sends_each_key_once_per_run_and_is_idempotent(
    chatlog: ChatLog,
    arize_settings: Settings,
    receiver: ArizeReceiver,
    embedder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turn_ids = [_log_turn(chatlog, embedder, q, a) for q, a in QUESTIONS]
    # A rating enqueued live before the backfill (its item comes first, before its turn's span is
    # sent) and a score that only the backfill enqueues.
    chatlog.set_routes({"feedback": ["arize"]})
    chatlog.add_feedback(turn_ids[2], -1, "wrong", rater="ui:s1", source="ui")
    from eval._results import EvalResult
    from eval._store import EvaluationStore

    EvaluationStore(chatlog).record(turn_ids[0], "faithfulness_local", EvalResult(score=0.1), flagged=True)
    env = {
        "RAGLOOP_DATA_DIR": str(arize_settings.data_dir),
        "ARIZE_API_KEY": "test-api-key",
        "ARIZE_SPACE_ID": "space-1",
        "ARIZE_PROJECT_NAME": "ragloop-tests",
        "ARIZE_API_HOST": "127.0.0.1",
        "ARIZE_API_PORT": str(receiver.http_port),
        "ARIZE_API_SCHEME": "http",
        "ARIZE_FLIGHT_HOST": "127.0.0.1",
        "ARIZE_FLIGHT_PORT": str(receiver.flight_port),
        "ARIZE_FLIGHT_SCHEME": "grpc",
    }
    runner = CliRunner()
    for run in range(2):
        receiver.clear()
        result = runner.invoke(
            ragloop_app, ["arize", "backfill", "--since", "1d", "--batch-size", "2"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "enqueued 3 turns, 1 ratings and 1 evaluations" in result.output
        assert "delivered 5 of 5 items" in result.output
        spans = [r["context.span_id"] for req in receiver.of_kind("spans") for r in req.rows()]
        assert sorted(spans) == sorted(chatlog.get_turn(t)["span_id"] for t in turn_ids), run  # type: ignore[index]
        annotated = [r["context.span_id"] for req in receiver.of_kind("annotation") for r in req.rows()]
        assert set(annotated) == {chatlog.get_turn(turn_ids[2])["span_id"]}  # type: ignore[index]
        assert [r["context.span_id"] for req in receiver.of_kind("evaluation") for r in req.rows()] == [
            chatlog.get_turn(turn_ids[0])["span_id"]  # type: ignore[index]
        ]
    assert len(receiver.spans) == 3


def test_a_payload_without_span_ids_lands_on_the_traced_span(
    chatlog: ChatLog, arize_settings: Settings, receiver: ArizeReceiver, embedder: Any
) -> None:
    from chatlog.outbox import Sink

    turn_id = _log_turn(chatlog, embedder, *QUESTIONS[1])
    turn = chatlog.get_turn(turn_id)
    assert turn is not None and turn["span_id"] != rows.span_ids(turn_id)[1]
    sink = az.from_settings(arize_settings, chatlog)
    assert isinstance(sink, Sink)
    bare = {"turn_id": turn_id, "evaluator": "faithfulness_local", "score": 0.75}  # no trace/span ids
    batch = [
        OutboxItem(1, "arize", "turn", turn_id, {"turn_id": turn_id}),
        OutboxItem(2, "arize", "evaluation", f"{turn_id}:faithfulness_local", bare),
        OutboxItem(
            3, "arize", "feedback", f"{turn_id}:api", {"turn_id": turn_id, "rater": "api", "value": 1}
        ),
    ]
    assert sink.send(batch) == [True, True, True]
    assert set(receiver.evaluations) == set(receiver.annotations) == {turn["span_id"]}


def _ragloop(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real entry point, as users run it (user errors become one line there)."""
    return subprocess.run(
        [sys.executable, "-m", "ragloop.cli", *args],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args", [["backfill", "--since", "last tuesday"], ["backfill", "--since", "3000-01-01"]]
)
def test_backfill_bad_input_is_one_line(args: list[str], tmp_path: Path) -> None:
    result = _ragloop(["arize", *args], {"RAGLOOP_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --since"), result.stderr


def test_backfill_unconfigured_is_one_line(tmp_path: Path) -> None:
    env = {"RAGLOOP_DATA_DIR": str(tmp_path), "ARIZE_API_KEY": "", "ARIZE_SPACE_ID": ""}
    result = _ragloop(["arize", "backfill", "--since", "7d"], env)
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: Arize is not configured: set ARIZE_API_KEY and ARIZE_SPACE_ID"
