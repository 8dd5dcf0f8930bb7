"""The chat log against real SQLite (WAL) and a real PostgreSQL server."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

import chatlog as cl


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path) -> cl.ChatLog:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chat.db'}"
    else:
        base = request.getfixturevalue("postgres_url")
        # A fresh schema per test keeps PostgreSQL tests independent.
        schema = f"t{cl.new_id()[:12]}"
        from sqlalchemy import create_engine

        eng = create_engine(base)
        with eng.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        eng.dispose()
        url = f"{base}?options=-csearch_path%3D{schema}"
    chat_log = cl.ChatLog(url)
    yield chat_log
    chat_log.close()


def test_turn_round_trip_keeps_every_field(log: cl.ChatLog) -> None:
    cid = log.create_conversation()
    emb = np.linspace(-1, 1, 384, dtype=np.float32)
    tid = log.start_turn(conversation_id=cid, user_message="What is a list?", query_embedding=emb)
    assert log.get_turn(tid)["status"] == cl.STATUS_IN_PROGRESS
    retrieved = [
        {"chunk_id": "c1", "score": 0.71, "text": "Lists are mutable.", "source": "a.rst", "title": "Lists"}
    ]
    log.finish_turn(
        tid,
        cl.STATUS_OK,
        answer="A mutable sequence [1].",
        retrieved=retrieved,
        cited=[1],
        input_tokens=120,
        output_tokens=9,
        retrieval_ms=12.5,
        ttft_ms=800.0,
        total_ms=1100.0,
    )
    row = log.get_turn(tid)
    assert row["status"] == cl.STATUS_OK
    assert row["retrieved"] == retrieved and row["cited"] == [1]
    assert (row["input_tokens"], row["output_tokens"]) == (120, 9)
    np.testing.assert_array_equal(row["query_embedding"], emb)
    assert row["completed_at"] is not None and row["completed_at"] >= row["created_at"]
    assert log.history(cid, 5) == [("What is a list?", "A mutable sequence [1].")]


def test_feedback_needs_a_known_turn_and_a_valid_value(log: cl.ChatLog) -> None:
    tid = log.start_turn(conversation_id="c", user_message="q")
    res = log.add_feedback(tid, -1, "wrong answer", source="ui")
    assert (res.created, res.previous_value, res.value) == (True, None, -1)
    rows = log.feedback_for(tid)
    assert [(r["feedback_id"], r["value"], r["comment"], r["source"], r["rater"]) for r in rows] == [
        (res.feedback_id, -1, "wrong answer", "ui", "anonymous")
    ]
    with pytest.raises(cl.UnknownTurnError):
        log.add_feedback("nope", 1)
    with pytest.raises(ValueError):
        log.add_feedback(tid, 0)


def test_conversations_can_be_deleted_and_turns_stay(log: cl.ChatLog) -> None:
    cid = log.create_conversation()
    tid = log.start_turn(conversation_id=cid, user_message="q")
    assert log.conversation_exists(cid)
    assert log.delete_conversation(cid)
    assert not log.conversation_exists(cid)
    assert not log.delete_conversation(cid)
    assert log.get_turn(tid) is not None


def test_iter_turns_filters_by_status_in_creation_order(log: cl.ChatLog) -> None:
    ids = [log.start_turn(conversation_id="c", user_message=f"q{i}") for i in range(5)]
    log.finish_turn(ids[1], cl.STATUS_ERROR, error="boom")
    for i in (0, 2, 3, 4):
        log.finish_turn(ids[i], cl.STATUS_OK, answer="a")
    ok = [t["turn_id"] for t in log.iter_turns(statuses=[cl.STATUS_OK], batch_size=2)]
    assert ok == [ids[0], ids[2], ids[3], ids[4]]
    assert log.count_turns() == 5


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    chat_log = cl.ChatLog(f"sqlite:///{tmp_path / 'wal.db'}")
    with chat_log.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_vectors_encode_as_float32_bytes() -> None:
    v = [0.5, -1.25, 3.0]
    blob = cl.encode_vector(v)
    assert blob == np.array(v, dtype="<f4").tobytes() and len(blob) == 12
    np.testing.assert_array_equal(cl.decode_vector(blob), np.array(v, dtype=np.float32))
    assert cl.encode_vector(None) is None and cl.decode_vector(None) is None


def test_turns_left_in_progress_by_a_crash_are_closed_as_cancelled(log: cl.ChatLog) -> None:
    crashed = log.start_turn(conversation_id="c", user_message="q1")
    log.update_turn(crashed, answer="Use sor")  # the partial answer streamed before the crash
    never = log.start_turn(conversation_id="c", user_message="q2")
    done = log.start_turn(conversation_id="c", user_message="q3")
    log.finish_turn(done, cl.STATUS_OK, answer="ok")
    assert log.close_interrupted_turns() == 2
    for tid, answer in ((crashed, "Use sor"), (never, None)):
        row = log.get_turn(tid)
        assert row is not None
        assert (row["status"], row["error_type"], row["answer"]) == (
            cl.STATUS_CANCELLED,
            "interrupted",
            answer,
        )
        assert row["completed_at"] is not None
    assert log.get_turn(done)["status"] == cl.STATUS_OK  # type: ignore[index]
    assert log.close_interrupted_turns() == 0
    assert cl.STATUS_CANCELLED == "cancelled"


def test_a_starting_peer_leaves_turns_that_live_processes_are_still_answering(log: cl.ChatLog) -> None:
    from datetime import timedelta

    old = log.start_turn(conversation_id="c", user_message="q1", created_at=cl.now() - timedelta(minutes=10))
    live = log.start_turn(conversation_id="c", user_message="q2")
    assert log.close_interrupted_turns(older_than_s=300) == 1
    assert log.get_turn(old)["status"] == cl.STATUS_CANCELLED  # type: ignore[index]
    assert log.get_turn(live)["status"] == cl.STATUS_IN_PROGRESS  # type: ignore[index]


def test_the_app_closes_only_old_turns_on_a_shared_database() -> None:
    from ragloop.app import interrupted_after_s
    from ragloop.settings import Settings

    assert interrupted_after_s(Settings(database_url="sqlite:///x.db")) == 0.0
    shared = Settings(
        database_url="postgresql+psycopg2://u@127.0.0.1/db", llm_timeout_s=120, queue_max_wait_s=30
    )
    assert interrupted_after_s(shared) == 330.0  # queue wait + condense + answer + a minute


def test_the_sweeper_closes_a_dead_peers_turns_while_the_app_runs(log: cl.ChatLog) -> None:
    """A peer died mid-turn: the surviving process closes its turn, not the live ones."""
    import time
    from datetime import timedelta

    dead = log.start_turn(conversation_id="c", user_message="q1", created_at=cl.now() - timedelta(minutes=10))
    live = log.start_turn(conversation_id="c", user_message="q2")
    sweeper = cl.TurnSweeper(log, older_than_s=300, interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while log.get_turn(dead)["status"] != cl.STATUS_CANCELLED and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.05)
    finally:
        sweeper.stop()
    row = log.get_turn(dead)
    assert row is not None and (row["status"], row["error_type"]) == (cl.STATUS_CANCELLED, "interrupted")
    assert log.get_turn(live)["status"] == cl.STATUS_IN_PROGRESS  # type: ignore[index]
    assert sweeper.closed == 1
    # A turn closed too early heals: finishing it overwrites the status.
    log.finish_turn(dead, cl.STATUS_OK, answer="late but done")
    assert log.get_turn(dead)["status"] == cl.STATUS_OK  # type: ignore[index]


def test_a_sweep_survives_a_chat_log_that_is_down(tmp_path) -> None:
    broken = cl.ChatLog(f"sqlite:///{tmp_path / 'log.db'}")
    broken.engine.dispose()
    (tmp_path / "log.db").unlink()
    (tmp_path / "log.db").mkdir()  # the file is now a folder: every query fails
    assert cl.TurnSweeper(broken, older_than_s=0, interval_s=1).sweep() == 0


def test_the_app_runs_the_sweeper_with_the_live_turn_bound(tmp_path) -> None:
    from ragloop.app import _build_sweeper, live_turn_max_s
    from ragloop.settings import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", turn_sweep_interval_s=30)
    sweeper = _build_sweeper(settings, cl.ChatLog(settings.chatlog_url))
    assert sweeper is not None and sweeper.older_than_s == live_turn_max_s(settings) > 0
    assert sweeper.interval_s == 30
    off = settings.model_copy(update={"turn_sweep_interval_s": 0})
    assert _build_sweeper(off, cl.ChatLog(settings.chatlog_url)) is None
