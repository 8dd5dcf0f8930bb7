"""Pure telemetry logic on small inputs: redaction, privacy filter, prices, attributes, routes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitoring import semconv as sc
from monitoring._attributes import (
    Price,
    estimate_cost,
    feedback_label,
    feedback_moves,
    filter_attributes,
    is_content_key,
    parse_kv,
    parse_prices,
    redact,
    resource_attributes,
    retrieval_attributes,
    turn_end_attributes,
)
from monitoring._http import normalize_method, route_template
from monitoring._langsmith import run_id_for
from monitoring._stack import rotel_command
from monitoring._tracing import RateLimitFilter, _vector_summary


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ann.lee+x@example.co.uk today", "write to [EMAIL] today"),
        ("call +1 (555) 123-4567 or 030 1234567", "call [PHONE] or [PHONE]"),
        ("key sk-proj-abcdefghijklmnop1234", "key [API_KEY]"),
        ("aws AKIAABCDEFGHIJKLMNOP here", "aws [API_KEY] here"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "token [API_KEY]"),
        ("bearer Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LmNb", "bearer [API_KEY]"),
        # Left alone: years, short numbers, lowercase hex ids, version strings, plain prose.
        ("in 2024, use 3 items", "in 2024, use 3 items"),
        ("chunk f629a40ab2754df5a8931c515bbd5125", "chunk f629a40ab2754df5a8931c515bbd5125"),
        ("python 3.11.7 and shutil.copy(src, dst)", "python 3.11.7 and shutil.copy(src, dst)"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_content_keys() -> None:
    assert is_content_key(sc.INPUT_VALUE) and is_content_key("gen_ai.prompt.0.content")
    assert is_content_key("retrieval.documents.3.document.content")
    assert is_content_key("db.query.result.document")
    assert not is_content_key("retrieval.documents.3.document.id")
    assert not is_content_key(sc.GEN_AI_USAGE_INPUT_TOKENS) and not is_content_key(sc.TURN_ID)


def test_filter_attributes_content_off_and_redaction() -> None:
    attrs = {sc.INPUT_VALUE: "mail bob@x.org", sc.TURN_ID: "t1", "gen_ai.output.messages": ("a@b.co",)}
    assert filter_attributes(attrs, trace_content=False, redaction=True) == {sc.TURN_ID: "t1"}
    assert filter_attributes(attrs, trace_content=True, redaction=True) == {
        sc.INPUT_VALUE: "mail [EMAIL]",
        sc.TURN_ID: "t1",
        "gen_ai.output.messages": ("[EMAIL]",),
    }
    assert filter_attributes(attrs, trace_content=True, redaction=False) is None  # unchanged
    assert filter_attributes({sc.TURN_ID: "t"}, trace_content=False, redaction=True) is None


def test_parse_kv_and_prices() -> None:
    assert parse_kv("signoz-ingestion-key=abc, x = y ,bad,,=v") == {"signoz-ingestion-key": "abc", "x": "y"}
    assert parse_kv(None) == {}
    table = parse_prices("gpt-4o-mini=0.15:0.6, *=1:2")
    assert table == {"gpt-4o-mini": Price(0.15, 0.6), "*": Price(1.0, 2.0)}
    assert estimate_cost(table, "gpt-4o-mini", 1_000_000, 500_000) == pytest.approx(0.45)
    assert estimate_cost(table, "other", 1000, 1000) == pytest.approx(0.003)
    assert estimate_cost({}, "other", 1000, None) == 0.0
    with pytest.raises(ValueError):
        parse_prices("gpt=1")


def test_resource_attributes_otel_resource_attributes_win() -> None:
    attrs = resource_attributes(
        "svc", "1.0", "prod", "m", "rag-v1", "idx1", {"deployment.environment.name": "x"}
    )
    assert attrs[sc.SERVICE_NAME] == "svc" and attrs[sc.RAGLOOP_INDEX_VERSION] == "idx1"
    assert attrs[sc.DEPLOYMENT_ENVIRONMENT] == "x" and attrs[sc.DEPLOYMENT_ENVIRONMENT_LEGACY] == "prod"
    assert sc.RAGLOOP_INDEX_VERSION not in resource_attributes("s", "1", "e", "m", "p", None, {})


@dataclass
class _Chunk:
    chunk_id: str
    score: float
    text: str


def test_retrieval_and_turn_end_attributes() -> None:
    chunks = [_Chunk("a", 0.5, "x"), _Chunk("b", 0.75, "y")]
    attrs = dict(retrieval_attributes(chunks, trace_content=False))
    assert attrs["retrieval.documents.1.document.id"] == "b"
    assert attrs["retrieval.documents.0.document.score"] == 0.5
    assert attrs[sc.RETRIEVAL_TOP_SCORE] == 0.75
    assert not [k for k in attrs if k.endswith("content")]
    assert dict(retrieval_attributes(chunks, True))["retrieval.documents.0.document.content"] == "x"
    record = {"status": "ok", "input_tokens": 10, "output_tokens": 3, "ttft_ms": 250.0, "retrieval_ms": 5.0}
    end = dict(turn_end_attributes(record, cost=0.01))
    assert end == {
        sc.TURN_STATUS: "ok",
        sc.GEN_AI_USAGE_INPUT_TOKENS: 10,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 3,
        sc.GEN_AI_SERVER_TTFT: 0.25,
        sc.RETRIEVAL_MS: 5.0,
        sc.COST_USD: 0.01,
    }
    assert dict(turn_end_attributes({"status": "error", "error_type": "llm_timeout"}, 0.0)) == {
        sc.TURN_STATUS: "error",
        sc.ERROR_TYPE: "llm_timeout",
    }
    assert feedback_label(1) == "up" and feedback_label(-1) == "down"


def test_route_template_bounds_cardinality() -> None:
    class Route:
        path = "/api/conversations/{conversation_id}"

    assert route_template({"route": Route(), "path": "/api/conversations/abc"}) == Route.path
    # Unmatched paths share one value, whatever the path: no label value comes from the request.
    for path in ("/gradio_api/queue/join", "/", "/nope-1f3a", "/nope-9c2b/x?y=1", "/%00"):
        assert route_template({"path": path}) == sc.HTTP_ROUTE_UNMATCHED
    assert route_template({"path": "/metrics"}) == "/metrics"
    # A declared mount is a template of its own; a lookalike prefix is not under it.
    mounts = ("/static",)
    assert route_template({"path": "/static/app.js"}, mounts) == "/static/{path}"
    assert route_template({"path": "/staticx"}, mounts) == sc.HTTP_ROUTE_UNMATCHED
    assert normalize_method("GET") == "GET" and normalize_method("FOO-BAR") == "_OTHER"


def test_feedback_counts_raters_not_clicks() -> None:
    assert feedback_moves(None, 1) == [("given", "up")]
    assert feedback_moves(1, 1) == []  # the same rating again, or a comment added to it
    assert feedback_moves(-1, -1) == []
    assert feedback_moves(1, -1) == [("retracted", "up"), ("given", "down")]
    assert feedback_moves(-1, None) == [("retracted", "down")]
    assert feedback_moves(None, None) == []


def test_unknown_tokens_make_an_unknown_cost() -> None:
    prices = parse_prices("*=1:2")
    assert estimate_cost(prices, "m", 1_000_000, 1_000_000) == 3.0
    assert estimate_cost(prices, "m", None, 10) is None
    assert estimate_cost(prices, "m", 10, None) is None
    assert estimate_cost(parse_prices(""), "m", None, None) == 0.0


def test_langsmith_run_ids() -> None:
    # (Delivery backoff moved to the outbox: tests/chatlog.)
    tid = uuid.uuid4().hex
    assert run_id_for(tid) == uuid.UUID(hex=tid)
    assert run_id_for("not-a-uuid") == run_id_for("not-a-uuid") != run_id_for("other")


def test_rotel_command_routes_traces_and_drops_the_rest(tmp_path: Path) -> None:
    argv, env = rotel_command(4317, 4318, "http://127.0.0.1:4320", tmp_path / "r.pid")
    assert argv[argv.index("--exporters-traces") + 1] == "traces"
    assert argv[argv.index("--exporters-metrics") + 1] == "drop"
    assert env == {"ROTEL_EXPORTER_TRACES_ENDPOINT": "http://127.0.0.1:4320"}
    sink, env = rotel_command(1, 2, None, tmp_path / "r.pid")
    assert sink[-2:] == ["--exporter", "blackhole"] and env == {}


def test_rate_limit_filter_and_vector_summary() -> None:
    import logging

    import numpy as np

    f = RateLimitFilter(interval_s=60)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", None, None)
    assert [f.filter(record) for _ in range(3)] == [True, False, False] and f.suppressed == 2
    assert _vector_summary(np.zeros(384, dtype="float32")) == "<vector shape=(384,) dtype=float32>"
    assert _vector_summary([1.0, 2.0]) is None
