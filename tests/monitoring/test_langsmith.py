"""The real ``langsmith`` SDK against a local HTTP endpoint that records what it receives.

A live LangSmith is not reachable here: the recorder speaks just enough of its API (``/info``,
``/runs/batch``, ``/runs``, ``/feedback``) for the SDK to deliver runs and feedback.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from chatbot import build_service
from monitoring import Telemetry
from monitoring._langsmith import LangSmithReporter, run_id_for
from ragloop.process import free_port, http_ok
from tests.monitoring.conftest import telemetry_settings

pytestmark = pytest.mark.slow

INFO = {
    "version": "0.7.0",
    "batch_ingest_config": {
        "use_multipart_endpoint": False,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 4,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
    },
}


class Recorder:
    """Requests received, by kind; ``fail_feedback`` simulates a LangSmith outage."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.feedback: list[dict[str, Any]] = []
        self.other: list[str] = []
        self.fail_feedback = False
        self.lock = threading.Lock()

    def add_runs(self, runs: list[dict[str, Any]]) -> None:
        with self.lock:
            for run in runs:
                self.runs.setdefault(str(run["id"]), {}).update(run)


def _app(rec: Recorder) -> FastAPI:
    app = FastAPI()

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return INFO

    @app.post("/runs/batch")
    async def batch(request: Request) -> dict[str, Any]:
        body = json.loads(await request.body())
        rec.add_runs(list(body.get("post", [])) + list(body.get("patch", [])))
        return {}

    @app.post("/runs")
    async def create_run(request: Request) -> dict[str, Any]:
        rec.add_runs([json.loads(await request.body())])
        return {}

    @app.patch("/runs/{run_id}")
    async def patch_run(run_id: str, request: Request) -> dict[str, Any]:
        rec.add_runs([{**json.loads(await request.body()), "id": run_id}])
        return {}

    @app.post("/feedback")
    async def feedback(request: Request) -> Any:
        if rec.fail_feedback:
            return JSONResponse({"detail": "down for maintenance"}, status_code=503)
        body = json.loads(await request.body())
        with rec.lock:
            rec.feedback.append(body)
        return body

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT"])
    async def anything(path: str) -> dict[str, Any]:
        rec.other.append(path)
        return {}

    return app


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[str, Recorder]]:
    import uvicorn

    rec = Recorder()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(rec), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not http_ok(f"{url}/info"):
        assert time.monotonic() < deadline, "recorder did not start"
        time.sleep(0.05)
    yield url, rec
    server.should_exit = True
    thread.join(timeout=10)


def _wait(cond: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_runs_and_feedback_reach_langsmith_and_survive_an_outage(
    recorder: tuple[str, Recorder], instant_llm: str, indexed_dir: Path, shared_retriever: Any, tmp_path: Path
) -> None:
    url, rec = recorder
    settings = telemetry_settings(
        indexed_dir,
        openai_base_url=instant_llm,
        database_url=f"sqlite:///{tmp_path / 'chatlog.db'}",
        langsmith_api_key="lsv2_pt_test",
        langsmith_endpoint=url,
        langsmith_project="ragloop-tests",
        langsmith_retry_s=0.2,
    )
    tel = Telemetry(settings)
    service = build_service(settings, observer=tel, retriever=shared_retriever)

    async def two_turns() -> tuple[Any, Any]:
        first = await service.run_turn("How do I copy a file?")
        return first, await service.run_turn("and delete it?", first.conversation_id)

    first, second = asyncio.run(two_turns())
    root_id = str(run_id_for(second.turn_id))
    service.add_feedback(second.turn_id, 1, "helpful")
    tel.record_score(second.turn_id, None, "faithfulness", 0.75)
    tel.force_flush()

    # Runs: one tree per turn, rooted at the turn's run id, turn id in the metadata.
    assert _wait(lambda: root_id in rec.runs and rec.runs[root_id].get("end_time"))
    root = rec.runs[root_id]
    assert root["name"] == "rag_chain" and root.get("session_name") == "ragloop-tests"
    assert root["extra"]["metadata"]["turn_id"] == second.turn_id
    expected = {"condense_question", "retrieve", "ChatOpenAI"}

    def tree() -> dict[str, dict[str, Any]]:
        return {rid: r for rid, r in list(rec.runs.items()) if r.get("trace_id") == root_id}

    assert _wait(lambda: expected <= {r.get("name") for r in tree().values()}), ",".join(
        sorted(str(r.get("name")) for r in tree().values())
    )
    runs = tree()
    for rid, run in runs.items():
        assert rid == root_id or run.get("parent_run_id") in runs, run.get("name")
    assert str(run_id_for(first.turn_id)) in rec.runs  # the first turn is its own tree

    # Feedback: thumbs and the evaluation score, on the turn's root run.
    assert _wait(lambda: len(rec.feedback) >= 2)
    by_key = {f["key"]: f for f in rec.feedback}
    assert by_key["user_score"]["run_id"] == root_id and by_key["user_score"]["score"] == 1
    assert by_key["user_score"]["comment"] == "helpful"
    assert by_key["faithfulness"]["score"] == 0.75

    # Outage: feedback waits in the chat log's outbox, survives a restart, then is delivered once.
    rec.fail_feedback = True
    service.add_feedback(first.turn_id, -1, "wrong")
    reporter = tel.langsmith
    assert _wait(lambda: any(r["attempts"] >= 1 for r in reporter.pending()))
    (pending,) = reporter.pending()
    assert pending["last_error"] and pending["turn_id"] == first.turn_id
    assert tel.errors.counts["langsmith"] >= 1
    tel.shutdown()  # the app stops during the outage
    rec.fail_feedback = False
    again = LangSmithReporter(settings)  # the app starts again
    try:
        assert _wait(lambda: not again.pending(), timeout=30)
    finally:
        again.shutdown()
        service.chatlog.close()
    delivered = [f for f in rec.feedback if f["id"] == pending["feedback_uuid"]]
    assert len(delivered) == 1 and delivered[0]["score"] == 0 and delivered[0]["comment"] == "wrong"
    assert delivered[0]["run_id"] == str(uuid.UUID(hex=first.turn_id))
