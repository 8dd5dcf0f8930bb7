"""The outbox on real SQLite and real PostgreSQL: transactional enqueue, delivery, retries, dead letters.

The sinks here are :class:`HttpSink` against a real HTTP receiver on loopback, and a recording sink
(a fake implementing the Sink interface) where a test must choose each send's outcome.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import func, insert, select

import chatlog as cl
from chatlog import outbox as ob
from tests.chatlog.outbox_harness import HttpSink, Receiver, run_processes


class ScriptedSink:
    """Implements the Sink interface; each send's outcome comes from ``outcomes`` (default: ok)."""

    kinds = frozenset({"feedback", "test"})

    def __init__(self, name: str = "scripted") -> None:
        self.name = name
        self.outcomes: list[bool] = []
        self.sent: list[ob.OutboxItem] = []
        self.during_send: Any = None
        self.closed = False

    def send(self, items: Sequence[ob.OutboxItem]) -> list[bool]:
        if self.during_send is not None:
            self.during_send()
        self.sent.extend(items)
        return [self.outcomes.pop(0) if self.outcomes else True for _ in items]

    def shutdown(self, timeout_s: float = 5.0) -> None:
        self.closed = True


@pytest.fixture
def log(db_url: str) -> Iterator[cl.ChatLog]:
    chat_log = cl.ChatLog(db_url)
    yield chat_log
    chat_log.close()


def _items(log: cl.ChatLog) -> list[dict[str, Any]]:
    return ob.items(log.engine, limit=10_000)


def test_the_sink_interface_is_a_protocol() -> None:
    assert isinstance(ScriptedSink(), ob.Sink)
    assert isinstance(HttpSink("http://127.0.0.1:1"), ob.Sink)


def test_enqueue_commits_or_rolls_back_with_the_producer_row(log: cl.ChatLog) -> None:
    tid = log.start_turn(user_message="q")
    with pytest.raises(RuntimeError), log.engine.begin() as conn:
        conn.execute(
            insert(cl.feedback).values(
                turn_id=tid, rater="r", value=1, created_at=cl.now(), updated_at=cl.now()
            )
        )
        ob.enqueue(conn, kind="feedback", key=f"{tid}:r", payload={"v": 1}, sinks=["a", "b"])
        raise RuntimeError("the producer fails after enqueuing")
    assert _items(log) == [] and log.feedback_for(tid) == []
    with log.engine.begin() as conn:
        assert ob.enqueue(conn, kind="feedback", key=f"{tid}:r", payload={"v": 1}, sinks=["a", "b", "a"]) == 2
        assert ob.enqueue(conn, kind="feedback", key="x", payload={}, sinks=[]) == 0
    assert sorted(i["sink"] for i in _items(log)) == ["a", "b"]


def test_a_key_enqueued_again_is_one_item_updated_and_pending_again(log: cl.ChatLog) -> None:
    sink = ScriptedSink()
    worker = ob.OutboxWorker(log.engine, [sink])
    with log.engine.begin() as conn:
        ob.enqueue(conn, kind="test", key="k", payload={"v": 1}, sinks=["scripted"])
    assert worker.deliver_once().delivered == 1
    with log.engine.begin() as conn:
        ob.enqueue(conn, kind="test", key="k", payload={"v": 2}, sinks=["scripted"])
    (item,) = _items(log)
    assert (item["status"], item["version"], item["payload"], item["attempts"]) == ("pending", 2, {"v": 2}, 0)
    assert worker.deliver_once().delivered == 1
    assert [(i.key, i.payload, i.version) for i in sink.sent] == [("k", {"v": 1}, 1), ("k", {"v": 2}, 2)]
    assert worker.deliver_once().claimed == 0


def test_an_item_edited_while_in_flight_is_sent_again_with_the_new_payload(log: cl.ChatLog) -> None:
    sink = ScriptedSink()
    worker = ob.OutboxWorker(log.engine, [sink])
    with log.engine.begin() as conn:
        ob.enqueue(conn, kind="test", key="k", payload={"v": 1}, sinks=["scripted"])

    def edit() -> None:
        sink.during_send = None
        with log.engine.begin() as conn:
            ob.enqueue(conn, kind="test", key="k", payload={"v": 2}, sinks=["scripted"])

    sink.during_send = edit
    report = worker.deliver_once()
    assert (report.delivered, report.superseded) == (0, 1)
    assert worker.deliver_once().delivered == 1
    assert [i.payload for i in sink.sent] == [{"v": 1}, {"v": 2}]
    assert _items(log)[0]["status"] == "delivered"


def test_failures_back_off_then_go_dead_and_retry_requeues(log: cl.ChatLog) -> None:
    sink = ScriptedSink()
    worker = ob.OutboxWorker(
        log.engine, [sink], max_attempts=3, backoff_initial_s=0.0001, backoff_max_s=0.001
    )
    with log.engine.begin() as conn:
        ob.enqueue(conn, kind="test", key="k", payload={}, sinks=["scripted"])
    sink.outcomes = [False, False, False]
    assert worker.deliver_once().failed == 1
    (item,) = _items(log)
    assert item["status"] == "pending" and item["attempts"] == 1 and item["next_attempt_at"] is not None
    worker.drain(timeout_s=10)
    (item,) = _items(log)
    assert (item["status"], item["attempts"]) == ("dead", 3)
    assert ob.counts(log.engine) == {("scripted", "dead"): 1}
    assert worker.deliver_once().claimed == 0  # dead items stay put
    assert ob.retry(log.engine, sink="other") == 0
    assert ob.retry(log.engine, sink="scripted") == 1
    assert worker.deliver_once().delivered == 1
    assert ob.counts(log.engine) == {("scripted", "delivered"): 1}


def test_backoff_grows_from_tenacity_wait_strategy(log: cl.ChatLog) -> None:
    worker = ob.OutboxWorker(log.engine, [ScriptedSink()], backoff_initial_s=1.0, backoff_max_s=30.0)
    waits = [ob.backoff_s(worker.wait, n) for n in range(1, 9)]
    assert 1.0 <= waits[0] <= 2.0 and waits[-1] <= 30.0 + 1.0
    assert waits[3] > waits[0]


def test_a_sink_that_raises_is_retried_not_fatal(log: cl.ChatLog) -> None:
    class Raising(ScriptedSink):
        def send(self, items: Sequence[ob.OutboxItem]) -> list[bool]:
            raise ConnectionError("vendor down")

    worker = ob.OutboxWorker(log.engine, [Raising("r")], backoff_initial_s=60)
    with log.engine.begin() as conn:
        ob.enqueue(conn, kind="test", key="k", payload={}, sinks=["r"])
    report = worker.deliver_once()
    assert report.failed == 1 and "vendor down" in report.errors[0]
    (item,) = _items(log)
    assert item["last_error"] == "ConnectionError: vendor down" and item["status"] == "pending"
    assert worker.deliver_once().claimed == 0  # backing off


def test_a_claimed_item_is_leased_to_one_worker(log: cl.ChatLog) -> None:
    first, second = ScriptedSink(), ScriptedSink()
    w1 = ob.OutboxWorker(log.engine, [first], lease_s=60)
    w2 = ob.OutboxWorker(log.engine, [second], lease_s=60)
    with log.engine.begin() as conn:
        for i in range(3):
            ob.enqueue(conn, kind="test", key=f"k{i}", payload={}, sinks=["scripted"])
    claimed = w1._claim()  # claimed, not yet sent (as if the process stalled mid-send)
    assert len(claimed) == 3
    assert w2.deliver_once().claimed == 0
    expired = ob.OutboxWorker(log.engine, [second], lease_s=60)
    with log.engine.begin() as conn:  # the first worker died: its lease runs out
        conn.execute(ob.outbox.update().values(lease_until=cl.now()))
    assert expired.deliver_once().delivered == 3


def test_the_background_worker_wakes_on_enqueue_and_stops(log: cl.ChatLog) -> None:
    sink = ScriptedSink()
    worker = ob.OutboxWorker(log.engine, [sink], poll_s=30).start()
    log.on_enqueue(worker.wake)
    log.set_routes({"feedback": ["scripted"]})
    tid = log.start_turn(user_message="q")
    done = threading.Event()
    sink.during_send = done.set
    log.add_feedback(tid, 1, rater="u")
    assert done.wait(10), "the worker should wake at once, not after poll_s"
    worker.stop(timeout_s=10)
    assert sink.closed and worker._thread is None


def test_feedback_is_enqueued_in_its_own_transaction_for_each_routed_sink(log: cl.ChatLog) -> None:
    tid = log.start_turn(user_message="q", trace_id="ab" * 16, span_id="cd" * 8)
    log.add_feedback(tid, -1, rater="u")  # no routes: nothing goes out
    assert _items(log) == []
    log.set_routes({"feedback": ["langsmith", "argilla"], "evaluation": ["langsmith"]})
    assert log.routes("feedback") == ("langsmith", "argilla") and log.routes("turn") == ()
    log.add_feedback(tid, -1, "vague", rater="u")
    log.add_feedback(tid, 1, rater="u")
    items = _items(log)
    assert sorted((i["sink"], i["key"], i["version"]) for i in items) == [
        ("argilla", f"{tid}:u", 2),
        ("langsmith", f"{tid}:u", 2),
    ]
    payload = items[0]["payload"]
    assert {k: payload[k] for k in ("turn_id", "rater", "value", "comment", "trace_id", "span_id")} == {
        "turn_id": tid,
        "rater": "u",
        "value": 1,
        "comment": "vague",
        "trace_id": "ab" * 16,
        "span_id": "cd" * 8,
    }


def test_outbox_commands_show_and_retry_dead_items(log: cl.ChatLog, db_url: str) -> None:
    sink = ScriptedSink()
    with log.engine.begin() as conn:
        for k in ("a", "b"):
            ob.enqueue(conn, kind="test", key=k, payload={}, sinks=["scripted"])
    sink.outcomes = [False, True]
    ob.OutboxWorker(log.engine, [sink], max_attempts=1).deliver_once()
    env = {**os.environ, "RAGLOOP_DATABASE_URL": db_url}

    def ragloop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ragloop.cli", "outbox", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    status = ragloop("status", "--dead")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert any(line.split()[:3] == ["scripted", "dead", "1"] for line in lines), status.stdout
    assert any(line.split()[:3] == ["scripted", "delivered", "1"] for line in lines), status.stdout
    assert any(line.startswith("dead #") and "scripted/test/a" in line for line in lines)
    retry = ragloop("retry", "--sink", "scripted")
    assert retry.returncode == 0 and retry.stdout.startswith("1 dead item queued again")
    assert ob.counts(log.engine) == {("scripted", "pending"): 1, ("scripted", "delivered"): 1}


def test_an_http_sink_delivers_through_a_real_receiver_and_survives_its_outage(log: cl.ChatLog) -> None:
    with Receiver(delay_s=0) as receiver:
        worker = ob.OutboxWorker(
            log.engine, [HttpSink(receiver.url)], backoff_initial_s=0.01, backoff_max_s=0.02
        )
        with log.engine.begin() as conn:
            for i in range(12):
                ob.enqueue(conn, kind="test", key=f"k{i}", payload={"i": i}, sinks=["http"])
        receiver.fail_next = 2
        assert worker.drain(timeout_s=30)
    assert receiver.counts() == {f"k{i}": 1 for i in range(12)}
    with log.engine.connect() as conn:
        retried = conn.execute(select(func.count()).where(ob.outbox.c.attempts > 1)).scalar_one()
    assert retried >= 1  # the failed batch was retried, then delivered once


def test_two_worker_processes_deliver_each_item_exactly_once(db_url: str) -> None:
    """The acceptance figure: 2 OS processes, one database, a real receiver: 0 duplicates, 0 lost."""
    result = run_processes(db_url, n_items=200, processes=2)
    assert (result["duplicates"], result["lost"], result["unexpected"], result["left"]) == (0, 0, 0, 0), (
        result
    )
    assert result["received"] == 200
    assert len(result["per_process"]) == 2 and min(result["per_process"]) > 0, result  # both really worked


def test_the_receiver_catches_duplicates_of_workers_without_locks(db_url: str) -> None:
    """The control for the test above: workers that claim without SKIP LOCKED / leases do duplicate."""
    result = run_processes(db_url, n_items=200, processes=2, naive=True)
    assert result["lost"] == 0 and result["duplicates"] > 0, result


def test_a_finished_turn_is_enqueued_for_the_sinks_routed_turn(log: cl.ChatLog) -> None:
    woken: list[int] = []
    log.on_enqueue(lambda: woken.append(1))
    quiet = log.start_turn(user_message="q0")
    log.finish_turn(quiet, cl.STATUS_OK, answer="a")  # no route: nothing
    assert _items(log) == [] and woken == []
    log.set_routes({"turn": ["arize"]})
    tid = log.start_turn(user_message="q")
    log.finish_turn(tid, cl.STATUS_OK, answer="a", query_embedding=[0.5, 0.25])
    (item,) = _items(log)
    assert (item["sink"], item["kind"], item["key"], item["payload"]) == (
        "arize",
        "turn",
        tid,
        {"turn_id": tid, "status": "ok"},
    )
    assert woken == [1]
    assert list(log.get_turn(tid)["query_embedding"]) == [0.5, 0.25]  # type: ignore[index]
