"""The real Prometheus exposition of ragloop's metrics, for checking dashboards and alert rules.

The app's own telemetry (``monitoring.setup_telemetry``: OpenTelemetry MeterProvider, Prometheus
reader, HTTP middleware and ``/metrics`` route) is fed one turn of each outcome, feedback both ways,
evaluation scores and a failed export; the drift job's metrics come from ``monitoring.drift``'s own
textfile renderer. So metric names, unit suffixes and label names are exactly what Prometheus sees.
Needs the app environment (``.venv``, extra ``tracing``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

#: Turn outcomes fed each round: (status, ttft ms, total ms, top score, input tokens, output tokens).
TURNS = (
    ("ok", 900.0, 3200.0, 0.82, 420, 90),
    ("ok", 2500.0, 9000.0, 0.55, 610, 240),
    ("no_context", None, 150.0, 0.12, None, None),
    ("error", None, 30000.0, 0.61, 380, None),
)
#: HTTP statuses of the chat route fed each round (a 5xx for the error panels and alert).
HTTP_STATUSES = (200, 200, 422, 503)
MODEL = "qwen2.5-coder-0.5b-instruct"


def build_app(settings_overrides: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """A FastAPI app instrumented by the real telemetry; returns ``(app, telemetry)``."""
    from fastapi import FastAPI, Response

    from monitoring import drift, setup_telemetry
    from ragloop.settings import Settings

    settings = Settings(
        **{
            "collector": False,
            "phoenix": False,
            "otlp_endpoint": None,
            "langsmith_api_key": None,
            "langsmith_tracing": False,
            "prices": "*=0.15:0.6",
            "llm_model": MODEL,
            "trace_content": False,
            **(settings_overrides or {}),
        }
    )
    telemetry = setup_telemetry(settings, prompt_version="probe")
    telemetry.observe_outbox(outbox_engine())
    app = FastAPI()

    @app.post("/api/chat")
    def chat(status: int = 200) -> Response:
        return Response(status_code=status)

    @app.get("/drift-metrics")
    def drift_metrics() -> Response:
        # What node-exporter's textfile collector serves in the compose deployment.
        return Response(drift_text(drift), media_type="text/plain")

    telemetry.instrument_app(app)
    return app, telemetry


def outbox_engine() -> Any:
    """A chat log (SQLite, temp dir) with one pending outbox item, for the outbox gauge."""
    import tempfile

    from chatlog import ChatLog
    from chatlog.outbox import enqueue

    log = ChatLog(f"sqlite:///{tempfile.mkdtemp(prefix='probe-outbox-')}/chat.db")
    with log.engine.begin() as conn:
        enqueue(conn, kind="evaluation", key="probe:faithfulness_local", payload={}, sinks=["probe"])
    return log.engine


def drift_text(drift: Any) -> str:
    """The drift job's Prometheus textfile for one run with an alarm on the query embeddings."""
    tests = [
        {"name": "query_embedding", "statistic": 3.1, "threshold": 1.9, "p_value": 0.005, "alarm": True},
        {"name": "answer_embedding", "statistic": 0.7, "threshold": 1.8, "p_value": 0.41, "alarm": False},
        {
            "name": "features",
            "statistic": 1.2,
            "threshold": 2.0,
            "p_value": 0.2,
            "alarm": False,
            "components": {
                "answer_chars": {"adjusted_p_value": 0.3},
                "top_score": {"adjusted_p_value": 0.02},
            },
        },
    ]
    for t in tests:
        t.update(alpha=0.05, n_reference=240, n_current=260)
    clusters = [{"excess": 0.18}]
    return str(drift.prometheus_text(drift.drift_metrics(tests, clusters, finished_at=time.time() - 3600)))


def feed(telemetry: Any, client: Any) -> None:
    """One round of every kind of event through the telemetry hooks and the HTTP middleware."""
    from monitoring import semconv

    for i, (status, ttft, total, top, tin, tout) in enumerate(TURNS):
        turn = {"turn_id": f"probe-{time.monotonic_ns()}-{i}", "conversation_id": "probe"}
        chunk = SimpleNamespace(score=top, chunk_id="c1", text="")
        with telemetry.turn_scope(turn):
            telemetry.on_retrieval(turn, SimpleNamespace(retrieved=[chunk], retrieval_ms=25.0 + i))
            if ttft is not None:
                telemetry.on_first_token(turn, ttft)
            record = {"turn_id": turn["turn_id"], "status": status, "total_ms": total, "model": MODEL}
            record.update(
                input_tokens=tin, output_tokens=tout, error_type="LLMTimeout" if status == "error" else None
            )
            telemetry.on_turn_end(record)
        telemetry.on_feedback(turn, 1, None)
        if i % 2:  # the rater changes their mind: one up retracted, one down given
            telemetry.on_feedback(turn, -1, "changed", previous_value=1)
        for name in semconv.SCORE_NAMES:
            telemetry.record_score(turn["turn_id"], None, name, 0.3 + 0.2 * i)
    telemetry.set_gauge("eval.faithfulness.mean", 0.71)
    telemetry.errors.failed("traces", "probe")
    for code in HTTP_STATUSES:
        client.post(f"/api/chat?status={code}")


@contextmanager
def probe_app() -> Iterator[tuple[Any, Any, Any]]:
    """``(app, telemetry, test client)`` after one round of :func:`feed`; telemetry shut down after."""
    from fastapi.testclient import TestClient

    app, telemetry = build_app()
    try:
        with TestClient(app) as client:
            feed(telemetry, client)
            yield app, telemetry, client
    finally:
        telemetry.shutdown()


def exposition() -> str:
    """The app's ``/metrics`` text plus the drift textfile, after one round of every event."""
    with probe_app() as (_, _, client):
        return str(client.get("/metrics").text) + str(client.get("/drift-metrics").text)


def series_labels(text: str) -> dict[str, set[str]]:
    """Exposed sample name (``*_bucket``, ``*_total`` ...) -> label names seen on it."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out
