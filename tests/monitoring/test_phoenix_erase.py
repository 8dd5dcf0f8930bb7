"""Deleting a conversation deletes its traces from Phoenix (issues 11 and 12: deletion everywhere).

App -> real rotel collector -> real Phoenix, as ``ragloop run`` wires them, with content tracing on
(the default) and a real OpenAI-compatible server (InstantLLM). A user asked "Who won the 1998
World Cup?", deleted the conversation, and Phoenix's spans API still returned the question. Here,
after ``DELETE /api/conversations/{id}``, the Phoenix sink (loaded through the composition root's
registry, delivering the chat log's ``erase`` outbox items) removes every trace of the deleted
conversation, also after the settle delay, and the other conversation's traces stay.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chatbot import build_service, create_app
from chatlog.outbox import DELIVERED, OutboxWorker, outbox
from monitoring import Telemetry
from ragloop.app import load_sinks, routes_of
from ragloop.process import ThreadedServer
from tests.monitoring.conftest import phoenix_spans, telemetry_settings

pytestmark = pytest.mark.slow

GONE = "Who won the 1998 World Cup? erase-marker-5d1c"
STAY = "How do I sort a list? keep-marker-8e2f"


def _all_spans(phoenix: str) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        body = httpx.get(f"{phoenix}/v1/projects/default/spans", params=params, timeout=10).json()
        spans += body["data"]
        cursor = body.get("next_cursor")
        if not cursor:
            return spans


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.mark.timeout(600)
def test_deleting_a_conversation_deletes_its_traces_in_phoenix(
    otel_stack: dict, instant_llm: str, indexed_dir: Path, shared_retriever: Any, tmp_path: Path
) -> None:
    phoenix = otel_stack["phoenix"]
    settings = telemetry_settings(
        indexed_dir,
        openai_base_url=instant_llm,
        database_url=f"sqlite:///{tmp_path / 'chatlog.db'}",
        otlp_endpoint=otel_stack["grpc"],
        phoenix_url=phoenix,
        phoenix_erase_settle_s=3.0,
    )
    tel: Any = Telemetry(settings)  # the observer hooks, structurally
    service = build_service(settings, observer=tel, retriever=shared_retriever)
    log = service.chatlog
    sinks = load_sinks(settings, log, ("monitoring._phoenix:from_settings",))
    assert [s.name for s in sinks] == ["phoenix"]
    log.set_routes(routes_of(sinks))
    worker = OutboxWorker(log.engine, sinks, poll_s=0.2, backoff_initial_s=0.5, backoff_max_s=2)
    log.on_enqueue(worker.wake)
    worker.start()
    app = create_app(settings, service=service, observer=tel)
    try:
        with (
            ThreadedServer(app, "/healthz", name="erase-app") as server,
            httpx.Client(base_url=server.base, timeout=120) as client,  # keeps the anonymous cookie
        ):
            conv: dict[str, str] = {}
            for name, question in (("gone", GONE), ("stay", STAY)):
                conv[name] = client.post("/api/conversations").json()["conversation_id"]
                for q in (question, question + " (again)"):
                    resp = client.post("/api/chat", json={"message": q, "conversation_id": conv[name]})
                    assert resp.status_code == 200, resp.text
            assert tel.force_flush()
            traces = {
                name: {t["trace_id"] for t in log.conversation_turns(conv[name]) if t["trace_id"]}
                for name in conv
            }
            assert len(traces["gone"]) == 2 and len(traces["stay"]) == 2
            for name in conv:  # both conversations' turns, with their text, are in Phoenix
                for trace in traces[name]:
                    phoenix_spans(phoenix, trace, min_count=5, timeout=120)
            _wait(
                lambda: "erase-marker-5d1c" in json.dumps(_all_spans(phoenix)), 120, "the question in Phoenix"
            )

            resp = client.delete(f"/api/conversations/{conv['gone']}")
            assert resp.status_code == 200, resp.text

            def erased() -> bool:
                spans = _all_spans(phoenix)
                ids = {s["context"]["trace_id"] for s in spans}
                return not ids & traces["gone"] and "erase-marker-5d1c" not in json.dumps(spans)

            _wait(erased, 60, "the deleted conversation's traces to leave Phoenix")

            # The second request (after the settle delay) is delivered too, and nothing came back.
            def statuses() -> list[str]:
                with log.engine.connect() as c:
                    return [r[0] for r in c.execute(select(outbox.c.status).where(outbox.c.kind == "erase"))]

            _wait(lambda: statuses() == [DELIVERED, DELIVERED], 60, "both erasures")
            assert erased()
            kept = {s["context"]["trace_id"] for s in _all_spans(phoenix)}
            assert traces["stay"] <= kept  # the other conversation's traces stay
    finally:
        worker.stop(timeout_s=5)
        for sink in sinks:
            sink.shutdown()
        tel.shutdown()
        log.close()
