"""Deleting a conversation leaves none of its text in the SQLite files, and asks sinks to erase it.

A user deleted a conversation and its question was still readable in ``chatlog.db-wal`` (and, once
checkpointed, in the freed pages of ``chatlog.db``). After ``ChatLog.purge_conversation`` the bytes
of the database file and of its WAL hold none of the deleted texts (SQLite ``secure_delete`` and a
``wal_checkpoint(TRUNCATE)``), while the other conversation's text is still there. A sink routed
``erase`` gets one item now and one after the settle delay, carrying the turns' trace ids.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

import chatlog as cl
from chatlog.outbox import outbox

GONE_Q = "Who won the 1998 World Cup? marker-q-7f3a"
GONE_A = "France won it, 3-0 against Brazil. marker-a-7f3a"
GONE_C = "wrong team marker-c-7f3a"
STAY_Q = "Who won the 2002 World Cup? marker-stay-91b2"


def _files(db: Path) -> bytes:
    """The bytes of the database and of its WAL (and rollback journal), as they are on disk."""
    out = b""
    for suffix in ("", "-wal", "-journal"):
        p = db.with_name(db.name + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


def _turn(log: cl.ChatLog, conv: str, question: str, answer: str, trace: str) -> str:
    turn = log.start_turn(conversation_id=conv, user_message=question, standalone_question=question)
    log.finish_turn(turn, cl.STATUS_OK, answer=answer, trace_id=trace, retrieved=[{"text": answer}])
    return turn


def test_purge_leaves_no_text_in_the_sqlite_files_and_queues_erasure(tmp_path: Path) -> None:
    db = tmp_path / "chatlog.db"
    log = cl.ChatLog(f"sqlite:///{db}", auto_upgrade=True)
    log.set_routes({"erase": ["phoenix"], "feedback": ["langsmith"]})
    try:
        gone = log.create_conversation(user_id="u1", title=GONE_Q)
        stay = log.create_conversation(user_id="u1", title=STAY_Q)
        t1 = _turn(log, gone, GONE_Q, GONE_A, "a" * 32)
        _turn(log, gone, GONE_Q + " again", GONE_A, "b" * 32)
        _turn(log, stay, STAY_Q, "Brazil.", "c" * 32)
        log.add_feedback(t1, -1, GONE_C, rater="r1")
        # Part of the text checkpointed into the main file, part only in the WAL: both must go.
        with log.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        log.add_feedback(t1, -1, GONE_C + " edited", rater="r2")
        before = _files(db)
        assert b"marker-q-7f3a" in before and b"marker-c-7f3a" in before  # the test can fail

        counts = log.purge_conversation(gone, "u1")

        assert counts is not None and counts["turns"] == 2 and counts["conversations"] == 1
        after = _files(db)
        for marker in (b"marker-q-7f3a", b"marker-a-7f3a", b"marker-c-7f3a"):
            assert marker not in after, f"{marker!r} is still in the SQLite files after the purge"
        assert b"marker-stay-91b2" in after  # the other conversation is intact
        assert log.get_turn(t1) is None

        # One erase item now, one after the settle delay, both with the two turns' trace ids.
        with log.engine.connect() as conn:
            rows = conn.execute(select(outbox).where(outbox.c.kind == "erase")).mappings().all()
        assert sorted(r["sink"] for r in rows) == ["phoenix", "phoenix"]
        for r in rows:
            assert sorted(r["payload"]["trace_ids"]) == ["a" * 32, "b" * 32]
            assert r["payload"]["conversation_id"] == gone
        first, late = sorted(rows, key=lambda r: r["next_attempt_at"])
        assert late["next_attempt_at"] - first["next_attempt_at"] >= timedelta(seconds=10)
        assert counts["erase:phoenix"] == 1
    finally:
        log.close()
