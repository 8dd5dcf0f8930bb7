"""Dependencies killed under the app (issue 12, "Faults"): quick versions of bench/bench_faults.py.

Each test SIGKILLs a real server the app uses, checks what users see while it is down (the
documented JSON error shape, or an SSE ``error`` event with a code and a message), that
``/readyz`` names it, and that nothing accepted is lost once it is back.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from monitoring._instant_llm import Behaviour, InstantLLM
from ragloop.process import ManagedProcess, ThreadedServer, free_port, http_ok, port_open
from tests.chatbot.conftest import _app_settings
from tests.fault_servers import RestartablePostgres, kill_tree

pytestmark = pytest.mark.slow


@pytest.fixture()
def faults_app(indexed_dir: Path) -> Iterator[Callable[..., Any]]:
    """``with faults_app(**overrides) as base:`` the full application (``ragloop serve``'s) in a thread."""
    import contextlib

    @contextlib.contextmanager
    def serve(**overrides: Any) -> Iterator[str]:
        from ragloop.app import create_asgi_app

        base = {"eval_online": False, "ready_cache_s": 0.0, "ready_timeout_s": 2.0}
        settings = _app_settings(indexed_dir, **{**base, **overrides})
        with ThreadedServer(create_asgi_app(settings), "/healthz", name="faults-app") as server:
            yield server.base

    yield serve


def _error(response: httpx.Response) -> dict[str, Any]:
    """The documented error shape: ``{"error": {"code", "message", ...}}``."""
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert set(body["error"]) >= {"code", "message"}, body
    assert body["error"]["message"].strip(), body
    return dict(body["error"])


def _sse(response: httpx.Response, on_token: Callable[[], None] | None = None) -> list[tuple[str, Any]]:
    """The events of a streamed turn; ``on_token`` runs once, at the first token."""
    events: list[tuple[str, Any]] = []
    kind = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((str(kind), json.loads(line[6:])))
            if kind == "token" and on_token is not None:
                on_token()
                on_token = None
    return events


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _rows(url: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = (
                conn.execute(text("SELECT turn_id, status, answer, error_type FROM turns")).mappings().all()
            )
    finally:
        engine.dispose()
    return {r["turn_id"]: dict(r) for r in rows}


def test_postgres_killed_accepted_turns_are_kept_and_the_rest_refused_clearly(
    faults_app: Callable[..., Any],
) -> None:
    slow = Behaviour(token_delay_s=0.1)  # ~1 s per answer: time to kill the database mid-turn
    with (
        RestartablePostgres() as pg,
        InstantLLM(slow) as llm,
        faults_app(openai_base_url=llm.base_url, database_url=pg.url) as base,
    ):
        client = httpx.Client(base_url=base, timeout=60)
        first = client.post("/api/chat", json={"message": "How do I copy a file?"})
        assert first.status_code == 200, first.text
        first_id, cid = first.json()["turn_id"], first.json()["conversation_id"]

        # An accepted turn (its row is written, tokens flow) when the database is killed.
        body = {"message": "How do I sort a list?", "conversation_id": cid, "stream": True}
        with client.stream("POST", "/api/chat", json=body) as response:
            assert response.status_code == 200
            events = _sse(response, on_token=pg.kill)
        kinds = [k for k, _ in events]
        assert "error" not in kinds and kinds[-1] == "done", events
        in_flight = events[-1][1]["result"]
        assert in_flight["status"] == "ok" and in_flight["answer"], in_flight

        # While it is down: every write is refused, clearly, with Retry-After; nothing hangs.
        refused = [
            client.post("/api/chat", json={"message": "How do I delete a file?"}),
            client.post("/api/chat", json={"message": "How do I delete a file?", "conversation_id": cid}),
            client.post("/api/chat", json={"message": "How do I delete a file?", "stream": True}),
            client.post("/api/feedback", json={"turn_id": first_id, "value": -1}),
            client.post("/api/conversations"),
        ]
        for response in refused:
            assert response.status_code == 503, response.text[:300]
            assert _error(response)["code"] == "chatlog_unavailable"
            assert int(response.headers["retry-after"]) > 0
        started = time.monotonic()
        ready = client.get("/readyz")
        assert time.monotonic() - started < 10  # bounded by RAGLOOP_READY_TIMEOUT, not a TCP timeout
        assert ready.status_code == 503 and "chatlog" in ready.json()["down"], ready.text
        assert client.get("/healthz").status_code == 200  # liveness: the process is fine

        pg.start()
        # Crash recovery, the pool's reconnect and the spool's backoff: slower on a busy machine.
        _wait(lambda: client.get("/readyz").status_code == 200, 90, "/readyz green again")
        # The in-flight turn's outcome was spooled and lands now; the refused ones left no row.
        rows = _wait(
            lambda: (r := _rows(pg.url)).get(in_flight["turn_id"], {}).get("status") == "ok" and r,
            90,
            "the spooled turn row",
        )
        assert rows[in_flight["turn_id"]]["answer"] == in_flight["answer"]
        assert {r["status"] for r in rows.values()} == {"ok"} and len(rows) == 2, rows
        # The client retries what it was told to retry: now it is stored.
        again = client.post("/api/feedback", json={"turn_id": first_id, "value": -1})
        assert again.status_code == 201, again.text
        assert client.post("/api/chat", json={"message": "How do I delete a file?"}).status_code == 200
        assert client.get("/readyz").json()["chatlog_spool"]["pending"] == 0


def _collector(port: int, http_port: int, log: Path) -> ManagedProcess:
    from monitoring._stack import rotel_binary

    argv = [
        str(rotel_binary()), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{port}",
        "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--exporter", "blackhole",
    ]  # fmt: skip
    proc = ManagedProcess("rotel", argv, log).start()
    proc.wait_ready(lambda: port_open("127.0.0.1", port), timeout=30)
    return proc


def test_collector_killed_turns_go_on_and_readyz_names_it(
    faults_app: Callable[..., Any], instant_llm_url: str, tmp_path: Path
) -> None:
    grpc, http = free_port(), free_port()
    proc = _collector(grpc, http, tmp_path / "rotel.log")
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    try:
        with faults_app(
            openai_base_url=instant_llm_url,
            database_url=db,
            telemetry=True,
            otlp_endpoint=f"http://127.0.0.1:{grpc}",
            ready_timeout_s=15.0,  # live probes may take seconds on a busy machine; the dead one is refused
        ) as base:
            client = httpx.Client(base_url=base, timeout=60)
            assert client.get("/readyz").json()["status"] == "ready"
            kill_tree(proc.proc.pid)  # type: ignore[union-attr]
            statuses = [
                client.post("/api/chat", json={"message": "How do I sort a list?"}).status_code
                for _ in range(5)
            ]
            assert statuses == [200] * 5
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
            assert ready.json()["down"] == ["collector"]
            proc = _collector(grpc, http, tmp_path / "rotel2.log")
            _wait(lambda: client.get("/readyz").json()["status"] == "ready", 60, "/readyz green again")
            assert client.post("/api/chat", json={"message": "How do I sort a list?"}).status_code == 200
        assert len(_rows(db)) == 6  # five turns while it was down, one after
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def instant_llm_url() -> Iterator[str]:
    """A zero-latency OpenAI-compatible endpoint (a real HTTP server)."""
    with InstantLLM() as server:
        yield server.base_url


def test_llm_killed_mid_stream_keeps_the_partial_answer_and_says_why(
    faults_app: Callable[..., Any], tmp_path: Path
) -> None:
    """The real local model, SIGKILLed while it streams an answer."""
    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port), "--parallel", "1"]
    llm = ManagedProcess("llm-fault", argv, tmp_path / "llm.log").start()
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    try:
        llm.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=180)
        with faults_app(
            openai_base_url=f"http://127.0.0.1:{port}/v1", database_url=db, max_tokens=200, gate_enabled=False,
            score_threshold=0.0,
        ) as base:  # fmt: skip
            client = httpx.Client(base_url=base, timeout=120)
            body = {"message": "Explain every way to copy a file, step by step.", "stream": True}
            with client.stream("POST", "/api/chat", json=body) as response:
                assert response.status_code == 200
                events = _sse(response, on_token=lambda: llm.proc.send_signal(signal.SIGKILL))  # type: ignore[union-attr]
            kinds = [k for k, _ in events]
            assert kinds[-2:] == ["error", "done"], kinds
            error = events[-2][1]["error"]
            assert error["code"] in ("llm_unavailable", "llm_error") and error["message"].strip(), error
            result = events[-1][1]["result"]
            partial = "".join(d["text"] for k, d in events if k == "token")
            assert partial and result["answer"] == partial
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "llm" in ready.json()["down"], ready.text
        row = _rows(db)[result["turn_id"]]
        assert row["status"] == "error" and row["answer"] == partial and row["error_type"] == error["code"], (
            row
        )
    finally:
        llm.stop()


def test_chroma_killed_turns_are_refused_as_index_unavailable(
    faults_app: Callable[..., Any], instant_llm_url: str, tmp_path: Path, index_docs: Callable[..., Path]
) -> None:
    from retrieval._server import chroma_binary
    from tests.chatbot.conftest import DOCS

    port = free_port()
    argv = [
        str(chroma_binary()),
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--path",
        str(tmp_path / "c"),
    ]

    def start() -> ManagedProcess:
        proc = ManagedProcess("chroma-fault", argv, tmp_path / "chroma.log").start()
        proc.wait_ready(lambda: port_open("127.0.0.1", port), timeout=60)
        return proc

    proc = start()
    url = f"http://127.0.0.1:{port}"
    try:
        index_docs(tmp_path, DOCS, _app_settings(tmp_path / "data", chroma_url=url))
        db = f"sqlite:///{tmp_path / 'chatlog.db'}"
        # Live probes may take seconds on a busy machine (the exact list of what is down is checked).
        with faults_app(
            openai_base_url=instant_llm_url, database_url=db, chroma_url=url, ready_timeout_s=15.0
        ) as base:
            client = httpx.Client(base_url=base, timeout=60)
            assert client.post("/api/chat", json={"message": "How do I sort a list?"}).status_code == 200
            kill_tree(proc.proc.pid)  # type: ignore[union-attr]
            refused = client.post("/api/chat", json={"message": "How do I sort a list?"})
            assert refused.status_code == 503, refused.text
            assert _error(refused)["code"] == "index_unavailable"  # not "the language model"
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["down"] == ["chroma"], ready.text
            proc = start()
            _wait(lambda: client.get("/readyz").status_code == 200, 60, "/readyz green again")
            assert client.post("/api/chat", json={"message": "How do I sort a list?"}).status_code == 200
    finally:
        proc.stop()
