"""Conversations per user in the chat log: list, search, rename, and deletion of the content
everywhere the product stores it (turns, feedback, evaluations, labeling rows, outbox items, drift
examples), on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

import chatlog as cl
from chatlog.outbox import outbox
from eval._results import EvalResult
from eval._store import EvaluationStore
from labeling._store import PairStore, labels, pairs, selections
from monitoring.drift._store import drift_clusters, save_run


def _count(log: cl.ChatLog, table: Any, *where: Any) -> int:
    with log.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _turn(log: cl.ChatLog, conv: str, question: str, answer: str, **extra: Any) -> str:
    return log.start_turn(
        conversation_id=conv, user_message=question, status=cl.STATUS_OK, answer=answer, **extra
    )


def test_users_list_and_search_only_their_own_conversations(db_url: str, chatlog_for: Any) -> None:
    log = chatlog_for(db_url)
    a1 = log.create_conversation(user_id="alice", title="Sorting")
    _turn(log, a1, "How do I sort a list?", "Use sorted() [1].")
    a2 = log.create_conversation(user_id="alice", title="Files")
    _turn(log, a2, "How do I copy a file?", "shutil.copy 100% works [1].")
    b1 = log.create_conversation(user_id="bob", title="Sorting too")
    _turn(log, b1, "How do I sort a list?", "sorted()")
    log.touch_conversation(a1)  # a1 updated last: listed first
    assert [c["conversation_id"] for c in log.list_conversations("alice")] == [a1, a2]
    assert [c["conversation_id"] for c in log.list_conversations("bob")] == [b1]
    assert log.list_conversations("mallory") == []
    # Search: title, question or answer text, case-insensitive; LIKE wildcards are literal.
    assert [c["conversation_id"] for c in log.list_conversations("alice", query="SHUTIL")] == [a2]
    assert [c["conversation_id"] for c in log.list_conversations("alice", query="sorting")] == [a1]
    assert [c["conversation_id"] for c in log.list_conversations("alice", query="100%")] == [a2]
    assert (
        log.list_conversations("alice", query="%%") == [] and log.list_conversations("bob", query="_") == []
    )
    # Rename: only the owner.
    assert not log.rename_conversation(a1, "bob", "hijacked")
    assert log.rename_conversation(a1, "alice", "Lists")
    assert log.get_conversation(a1)["title"] == "Lists"
    # touch sets a title only where there is none.
    log.touch_conversation(a1, title="ignored")
    assert log.get_conversation(a1)["title"] == "Lists"


def test_deleting_a_conversation_removes_its_content_everywhere(db_url: str, chatlog_for: Any) -> None:
    log = chatlog_for(db_url)
    log.set_routes(
        {"turn": ["arize"], "feedback": ["langsmith"], "pair": ["argilla"], "evaluation": ["arize"]}
    )
    mine = log.create_conversation(user_id="alice", title="to delete")
    kept = log.create_conversation(user_id="alice", title="kept")
    gone = [_turn(log, mine, f"secret question {i}?", f"secret answer {i}") for i in range(2)]
    stay = _turn(log, kept, "other question?", "other answer")
    for t in [*gone, stay]:
        log.finish_turn(t, cl.STATUS_OK)  # a 'turn' outbox item per turn
        log.add_feedback(t, -1, "bad", rater="alice")  # a 'feedback' item keyed turn:rater
        EvaluationStore(log).record(t, "faithfulness", EvalResult(score=0.2))
    store = PairStore(log)
    store.record_selections({gone[0]: ["thumbs_down"], stay: ["thumbs_down"]}, run_id="r1")
    for t in (gone[0], stay):
        store.save_pair(
            {
                "pair_id": t,
                "question": "q",
                "context": [],
                "response_a": "a",
                "response_b": "b",
                "a_is_original": True,
                "strategy": "retry",
            }
        )
        store.record_label(t, backend="argilla", annotator="ann", choice="A")
    run = {"run_id": "d1", "created_at": cl.now(), "alarm": True}
    save_run(
        log.engine,
        run,
        [
            {
                "rank": 1,
                "size": 3,
                "examples": ["secret question 0?", "other question?"],
                "turn_ids": [gone[0], gone[1], stay],
            }
        ],
    )

    assert log.purge_conversation(mine, "bob") is None  # not Bob's: nothing happens
    assert log.get_conversation(mine) is not None
    counts = log.purge_conversation(mine, "alice")
    assert counts is not None and counts["turns"] == 2 and counts["feedback"] == 2 and counts["pairs"] == 1
    for t in gone:
        assert log.get_turn(t) is None and log.feedback_for(t) == []
        assert _count(log, outbox, outbox.c.key.startswith(t)) == 0
        assert _count(log, selections, selections.c.turn_id == t) == 0
        assert _count(log, pairs, pairs.c.pair_id == t) == 0
        assert _count(log, labels, labels.c.pair_id == t) == 0
        assert EvaluationStore(log).for_turn(t) == {}
    assert log.get_conversation(mine) is None and log.list_conversations("alice", query="secret") == []
    with log.engine.connect() as conn:
        cluster = conn.execute(select(drift_clusters)).mappings().one()
    assert cluster["examples"] == ["other question?"] and cluster["turn_ids"] == [stay]
    # The other conversation keeps everything.
    assert log.get_turn(stay) is not None and log.feedback_for(stay)
    assert _count(log, outbox, outbox.c.key.startswith(stay)) >= 3
    assert _count(log, labels, labels.c.pair_id == stay) == 1


def test_a_retried_turn_leaves_the_history_the_model_sees(db_url: str, chatlog_for: Any) -> None:
    log = chatlog_for(db_url)
    conv = log.create_conversation(user_id="u")
    old = _turn(log, conv, "q1", "first answer")
    _turn(log, conv, "q1", "second answer", retry_of=old)
    assert log.history(conv, 5) == [("q1", "second answer")]
