"""Deleting a conversation over the API removes its content everywhere (issue 12, "Security and privacy").

The real app over HTTP, in front of a real OpenAI-compatible server (InstantLLM), with outbox routes
to Arize (no worker: its items stay pending) and to Argilla at an address where nothing listens (a
worker tries, fails and backs off: its items are pending with attempts). After
``DELETE /api/conversations/{id}``: no turn, feedback, labeling selection (the candidate index),
pair or outbox row of that conversation is left, and the other conversation keeps everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from chatbot import build_service, create_app
from chatlog import feedback, turns
from chatlog.outbox import OutboxWorker, outbox
from labeling._backend import BackendSink
from labeling._store import PairStore, pairs, selections
from labeling.argilla import ArgillaBackend
from monitoring._instant_llm import InstantLLM
from ragloop.process import ThreadedServer, free_port
from tests.chatbot.conftest import _app_settings


def _count(log: Any, table: Any, *where: Any) -> int:
    with log.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


@pytest.mark.timeout(600)
def test_api_delete_removes_turns_feedback_candidates_and_pending_outbox_rows(
    indexed_dir: Path, tmp_path: Path
) -> None:
    with InstantLLM() as llm:
        settings = _app_settings(
            indexed_dir, openai_base_url=llm.base_url, database_url=f"sqlite:///{tmp_path / 'c.db'}"
        )
        service = build_service(settings)
        log = service.chatlog
        log.set_routes({"turn": ["arize"], "feedback": ["arize"], "pair": ["argilla"]})
        with (
            ThreadedServer(create_app(settings, service), "/healthz", name="purge-app") as server,
            httpx.Client(base_url=server.base, timeout=180) as client,  # keeps the anonymous cookie
        ):
            conv: dict[str, str] = {}
            turn: dict[str, str] = {}
            for name in ("gone", "stay"):
                conv[name] = client.post("/api/conversations").json()["conversation_id"]
                resp = client.post(
                    "/api/chat",
                    json={"message": f"How do I copy a file? ({name})", "conversation_id": conv[name]},
                )
                assert resp.status_code == 200, resp.text
                turn[name] = resp.json()["turn_id"]
                fb = client.post("/api/feedback", json={"turn_id": turn[name], "value": -1, "comment": name})
                assert fb.status_code == 201, fb.text
            store = PairStore(log)
            store.record_selections({t: ["thumbs_down"] for t in turn.values()}, run_id="r1")
            for t in turn.values():
                store.save_pair(
                    {
                        "pair_id": t,
                        "question": "q",
                        "context": [],
                        "response_a": "a",
                        "response_b": "b",
                        "a_is_original": True,
                        "strategy": "strict",
                        "judge": None,
                    }
                )
            down = BackendSink(ArgillaBackend(f"http://127.0.0.1:{free_port()}", "key", timeout_s=2), store)
            worker = OutboxWorker(log.engine, [down], backoff_initial_s=60)
            assert not worker.drain(timeout_s=5)  # Argilla is down: its items stay pending
            worker.stop(timeout_s=5)
            with log.engine.connect() as conn:
                tried = conn.execute(
                    select(outbox.c.attempts).where(outbox.c.key == turn["gone"], outbox.c.sink == "argilla")
                ).scalar_one()
            assert tried >= 1
            assert _count(log, outbox, outbox.c.key.startswith(turn["gone"])) >= 3  # turn, feedback, pair

            resp = client.delete(f"/api/conversations/{conv['gone']}")
            assert resp.status_code == 200 and resp.json()["deleted"] is True, resp.text
            gone, stay = turn["gone"], turn["stay"]
            assert _count(log, turns, turns.c.conversation_id == conv["gone"]) == 0
            assert _count(log, feedback, feedback.c.turn_id == gone) == 0
            assert _count(log, selections, selections.c.turn_id == gone) == 0
            assert _count(log, pairs, pairs.c.pair_id == gone) == 0
            assert _count(log, outbox, outbox.c.key.startswith(gone)) == 0
            assert client.delete(f"/api/conversations/{conv['gone']}").status_code == 404
            # The other conversation keeps everything, pending outbox rows included.
            assert _count(log, turns, turns.c.turn_id == stay) == 1
            assert _count(log, selections, selections.c.turn_id == stay) == 1
            assert _count(log, outbox, outbox.c.key.startswith(stay)) >= 3
        log.close()
