"""A labeling backend that dies in the middle of a push loses nothing and gets nothing twice.

The real server is SIGKILLed while the outbox worker is delivering; items stay pending (with the
error recorded) while it is down, and are delivered once it is back. The server then holds exactly
one record/task per pair.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from chatlog.outbox import OutboxWorker, counts
from labeling._backend import BackendSink
from labeling.argilla import ArgillaBackend
from labeling.labelstudio import LabelStudioBackend

pytestmark = pytest.mark.slow


def _by_status(engine, sink: str) -> dict[str, int]:
    return {status: n for (name, status), n in counts(engine).items() if name == sink}


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _kill_midway_and_recover(server, backend, chatlog, store, pairs, batch_size: int) -> None:
    sink = BackendSink(backend, store)
    chatlog.set_routes({"pair": [sink.name]})
    for pair in pairs:
        store.save_pair(pair)
    n = len(pairs)
    worker = OutboxWorker(
        chatlog.engine,
        [sink],
        batch_size=batch_size,
        poll_s=0.2,
        backoff_initial_s=0.2,
        backoff_max_s=2.0,
        max_attempts=10_000,
        lease_s=120,
    ).start()
    try:
        _wait(
            lambda: _by_status(chatlog.engine, sink.name).get("delivered", 0) >= 2 * batch_size,
            300,
            "first items",
        )
        server.kill_server()
        at_kill = _by_status(chatlog.engine, sink.name)
        assert at_kill.get("pending", 0) > 0, f"everything was delivered before the kill: {at_kill}"
        from chatlog.outbox import status

        def errors() -> list[str]:
            return [row["last_error"] for row in status(chatlog.engine) if row["sink"] == sink.name]

        # The worker keeps trying against a dead server: wait for its first failed delivery (a
        # vendor client's own connection retries can take seconds, more on a busy machine).
        _wait(lambda: any(errors()), 120, "a failed delivery recorded while the server was down")
        time.sleep(1)  # and a retry or two more
        down = _by_status(chatlog.engine, sink.name)
        assert down.get("dead", 0) == 0 and down.get("pending", 0) > 0, down
        assert sum(down.values()) == n  # nothing lost
        server.start_server()
        _wait(
            lambda: _by_status(chatlog.engine, sink.name).get("delivered", 0) == n,
            600,
            "every item delivered",
        )
    finally:
        worker.stop()
    assert _by_status(chatlog.engine, sink.name) == {"delivered": n}


def test_argilla_killed_midway(argilla_server, unique, chatlog, store, pairs_factory) -> None:
    pairs = pairs_factory(500)
    backend = ArgillaBackend(argilla_server.url, argilla_server.api_key, workspace=unique, dataset=unique)
    _kill_midway_and_recover(argilla_server, backend, chatlog, store, pairs, batch_size=25)
    assert argilla_server.alive
    check = ArgillaBackend(argilla_server.url, argilla_server.api_key, workspace=unique, dataset=unique)
    with httpx.Client(
        base_url=argilla_server.url, headers={"X-Argilla-Api-Key": argilla_server.api_key}
    ) as h:
        ids: list[str] = []
        for offset in range(0, 1000, 1000):
            page = h.get(
                f"/api/v1/datasets/{check.dataset().id}/records", params={"offset": offset, "limit": 1000}
            ).json()
            ids += [r["external_id"] for r in page["items"]]
    assert Counter(ids) == Counter(p["pair_id"] for p in pairs)  # each pair exactly once


def test_label_studio_killed_midway(label_studio_server, unique, chatlog, store, pairs_factory) -> None:
    pairs = pairs_factory(300)
    backend = LabelStudioBackend(label_studio_server.url, label_studio_server.api_key, project=unique)
    _kill_midway_and_recover(label_studio_server, backend, chatlog, store, pairs, batch_size=10)
    check = LabelStudioBackend(label_studio_server.url, label_studio_server.api_key, project=unique)
    ids = [data_id for data_id in _task_pair_ids(label_studio_server, check.project_id())]
    assert Counter(ids) == Counter(p["pair_id"] for p in pairs)  # each pair exactly once


def _task_pair_ids(server, project_id: int) -> list[str]:
    out: list[str] = []
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {server.api_key}"}, timeout=60
    ) as h:
        page = 1
        while True:
            resp = h.get("/api/tasks", params={"project": project_id, "page": page, "page_size": 100})
            if resp.status_code == 404:
                return out
            resp.raise_for_status()
            body = resp.json()
            tasks = body["tasks"] if isinstance(body, dict) else body
            out += [t["data"]["pair_id"] for t in tasks]
            if len(tasks) < 100:
                return out
            page += 1
