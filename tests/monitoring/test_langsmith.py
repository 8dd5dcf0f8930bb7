"""The real ``langsmith`` SDK against a local HTTP endpoint that records what it receives.

A live LangSmith is not reachable here: the recorder speaks just enough of its API (``/info``,
``/runs/batch``, ``/runs``, ``POST /feedback``, ``PATCH /feedback/{id}``) for the SDK to deliver
runs and feedback. Like LangSmith, it refuses a second feedback with an id it already holds (409).

Runs come from the tracer telemetry adds to each turn; feedback and scores go through the chat
log's outbox to :class:`LangSmithSink`. Privacy (#6): the content switch and the redaction reach
run inputs/outputs and feedback comments.
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
from chatlog import outbox as ob
from monitoring import Telemetry
from monitoring._langsmith import LangSmithSink, feedback_id_for, run_id_for
from ragloop.process import free_port, http_ok
from ragloop.settings import Settings
from tests.langsmith_info import INFO
from tests.monitoring.conftest import telemetry_settings
from tests.pii import ORDER_NUMBER, PII_TEXT, leaked

pytestmark = pytest.mark.slow


class Recorder:
    """Requests received, by kind; ``fail_feedback`` simulates a LangSmith outage."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.feedback: list[dict[str, Any]] = []  # every accepted POST /feedback
        self.patches: list[dict[str, Any]] = []  # every PATCH /feedback/{id}
        self.store: dict[str, dict[str, Any]] = {}  # feedback id -> current state
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
            if str(body["id"]) in rec.store:
                return JSONResponse({"detail": "feedback already exists"}, status_code=409)
            rec.feedback.append(body)
            rec.store[str(body["id"])] = dict(body)
        return body

    @app.patch("/feedback/{feedback_id}")
    async def patch_feedback(feedback_id: str, request: Request) -> Any:
        if rec.fail_feedback:
            return JSONResponse({"detail": "down for maintenance"}, status_code=503)
        body = json.loads(await request.body())
        with rec.lock:
            if feedback_id not in rec.store:
                return JSONResponse({"detail": "not found"}, status_code=404)
            rec.patches.append({**body, "id": feedback_id})
            rec.store[feedback_id].update(body)
        return rec.store[feedback_id]

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


def _wait(cond: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _stack(
    url: str, tmp_path: Path, instant_llm: str, indexed_dir: Path, retriever: Any, **overrides: Any
) -> tuple[Settings, Telemetry, Any, ob.OutboxWorker]:
    """Telemetry (runs), the chat service, and the outbox worker with the LangSmith sink, as the app wires them."""
    settings = telemetry_settings(
        indexed_dir,
        openai_base_url=instant_llm,
        database_url=f"sqlite:///{tmp_path / 'chatlog.db'}",
        langsmith_api_key="lsv2_pt_test",
        langsmith_endpoint=url,
        langsmith_project="ragloop-tests",
        **overrides,
    )
    tel = Telemetry(settings)
    service = build_service(settings, observer=tel, retriever=retriever)
    sink = LangSmithSink.from_settings(settings, service.chatlog)
    assert sink is not None
    service.chatlog.set_routes({kind: [sink.name] for kind in sink.kinds})
    worker = ob.OutboxWorker(service.chatlog.engine, [sink], backoff_initial_s=0.05, backoff_max_s=0.1)
    return settings, tel, service, worker


def test_the_sink_is_off_without_langsmith_settings(tmp_path: Path) -> None:
    assert LangSmithSink.from_settings(Settings(data_dir=tmp_path, langsmith_api_key=None)) is None


def test_runs_and_feedback_reach_langsmith_once_through_the_outbox(
    recorder: tuple[str, Recorder], instant_llm: str, indexed_dir: Path, shared_retriever: Any, tmp_path: Path
) -> None:
    url, rec = recorder
    settings, tel, service, worker = _stack(url, tmp_path, instant_llm, indexed_dir, shared_retriever)

    async def two_turns() -> tuple[Any, Any]:
        first = await service.run_turn("How do I copy a file?")
        return first, await service.run_turn("and delete it?", first.conversation_id)

    first, second = asyncio.run(two_turns())
    root_id = str(run_id_for(second.turn_id))
    service.add_feedback(second.turn_id, 1, "helpful")
    with service.chatlog.engine.begin() as conn:  # a score, as the online evaluator enqueues it
        payload = {"turn_id": second.turn_id, "evaluator": "faithfulness_local", "score": 0.75}
        key = f"{second.turn_id}:faithfulness_local"
        ob.enqueue(
            conn, kind="evaluation", key=key, payload=payload, sinks=service.chatlog.routes("evaluation")
        )
    tel.force_flush()
    assert worker.drain(timeout_s=30)

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

    # Feedback: the thumbs and the score, on the turn's root run, with ids fixed by the item keys.
    thumbs_id = str(feedback_id_for("feedback", f"{second.turn_id}:anonymous"))
    mine = {f["key"]: f for f in rec.feedback if f["run_id"] == root_id}
    assert mine["user_score"]["score"] == 1 and mine["user_score"]["comment"] == "helpful"
    assert mine["user_score"]["id"] == thumbs_id
    assert mine["faithfulness_local"]["score"] == 0.75

    # Outage: the item waits in the outbox with its error; a restarted app delivers it once.
    rec.fail_feedback = True
    service.add_feedback(first.turn_id, -1, "wrong")
    assert worker.deliver_once().failed == 1
    (pending,) = [i for i in ob.items(service.chatlog.engine) if i["status"] == "pending"]
    assert "503" in pending["last_error"] and pending["payload"]["turn_id"] == first.turn_id
    tel.shutdown()
    rec.fail_feedback = False
    restarted = ob.OutboxWorker(service.chatlog.engine, [LangSmithSink(settings)], backoff_initial_s=0.05)
    assert restarted.drain(timeout_s=30)
    first_id = str(feedback_id_for("feedback", f"{first.turn_id}:anonymous"))
    delivered = [f for f in rec.feedback if f["id"] == first_id]
    assert len(delivered) == 1 and delivered[0]["score"] == 0 and delivered[0]["comment"] == "wrong"
    assert delivered[0]["run_id"] == str(uuid.UUID(hex=first.turn_id))

    # The same rater changes their mind: LangSmith's one feedback is updated, not duplicated.
    service.add_feedback(first.turn_id, 1)
    assert restarted.drain(timeout_s=30)
    assert [f["id"] for f in rec.feedback].count(first_id) == 1
    assert rec.store[first_id]["score"] == 1 and rec.store[first_id]["comment"] == "wrong"
    assert any(p["id"] == first_id for p in rec.patches)

    # A re-send of an item LangSmith already holds (a crash after sending) is absorbed, not doubled.
    with service.chatlog.engine.begin() as conn:
        conn.execute(
            ob.outbox.update()
            .where(ob.outbox.c.key == f"{second.turn_id}:anonymous")
            .values(status="pending")
        )
    assert restarted.drain(timeout_s=30)
    assert [f["id"] for f in rec.feedback].count(thumbs_id) == 1
    restarted.stop(timeout_s=5)
    service.chatlog.close()


EMAIL = "jane.doe@example.com"


@pytest.mark.parametrize(
    ("trace_content", "redact"),
    [(False, True), (True, True), (True, False)],
    ids=["content-off", "redacted", "in-clear"],
)
def test_privacy_switches_reach_runs_and_feedback_comments(
    recorder: tuple[str, Recorder],
    instant_llm: str,
    indexed_dir: Path,
    shared_retriever: Any,
    tmp_path: Path,
    trace_content: bool,
    redact: bool,
) -> None:
    url, rec = recorder
    _, tel, service, worker = _stack(
        url, tmp_path, instant_llm, indexed_dir, shared_retriever, trace_content=trace_content, redact=redact
    )
    result = asyncio.run(service.run_turn(f"My e-mail is {EMAIL}: {PII_TEXT}"))
    service.add_feedback(result.turn_id, -1, f"write to {EMAIL} {PII_TEXT}")
    tel.force_flush()
    assert worker.drain(timeout_s=30)
    root_id = str(run_id_for(result.turn_id))
    assert _wait(lambda: root_id in rec.runs and rec.runs[root_id].get("end_time"))

    def ended() -> set[str]:
        return {
            str(r.get("name"))
            for r in list(rec.runs.values())
            if r.get("trace_id") == root_id and r.get("end_time")
        }

    # The child runs' last patches (a fixed 0.5 s could miss them: fewer runs, less checked).
    assert _wait(lambda: {"retrieve", "ChatOpenAI"} <= ended()), ended()
    runs = [r for r in list(rec.runs.values()) if r.get("trace_id") == root_id]
    (fb,) = [f for f in rec.feedback if f["run_id"] == root_id]
    sent = json.dumps({"runs": runs, "feedback": fb})
    root = rec.runs[root_id]
    if not trace_content:
        assert EMAIL not in sent and "e-mail is" not in sent
        assert fb.get("comment") is None
        assert all(not r.get("inputs") and not r.get("outputs") for r in runs)
    elif redact:  # every kind of PII and key shape is masked (tests/pii.py), the rest is kept
        assert EMAIL not in sent and leaked(sent) == [] and ORDER_NUMBER in sent
        assert "e-mail is" in json.dumps(root.get("inputs"))  # the rest of the text is kept
        assert (
            fb["comment"] is not None and fb["comment"].startswith("write to ") and EMAIL not in fb["comment"]
        )
    else:
        assert EMAIL in json.dumps(root.get("inputs")) and fb["comment"] == f"write to {EMAIL} {PII_TEXT}"
    tel.shutdown()
    worker.stop(timeout_s=5)
    service.chatlog.close()
