"""An evaluation and its outbox items are written in one transaction (the outbox contract)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from chatlog import STATUS_OK, ChatLog
from chatlog.outbox import items
from eval import EvaluationStore
from eval._online import LOCAL
from eval._results import EvalResult
from ragloop.settings import Settings


def _turn(log: ChatLog) -> str:
    tid = log.start_turn(user_message="q", retrieved=[])
    log.finish_turn(tid, STATUS_OK, answer="a")
    return tid


def test_a_score_is_enqueued_for_every_routed_sink_with_its_row(settings: Settings) -> None:
    log = ChatLog(settings.chatlog_url)
    log.set_routes({"evaluation": ["langsmith", "arize"], "feedback": ["langsmith"]})
    store = EvaluationStore(log)
    tid = _turn(log)
    assert store.record(tid, LOCAL, EvalResult(score=0.25), trace_id="a" * 32, span_id="b" * 16)
    queued = items(log.engine)
    assert sorted(i["sink"] for i in queued) == ["arize", "langsmith"]
    assert {i["key"] for i in queued} == {f"{tid}:{LOCAL}"} and {i["kind"] for i in queued} == {"evaluation"}
    payload = queued[0]["payload"]
    assert payload == {
        "turn_id": tid,
        "evaluator": LOCAL,
        "score": 0.25,
        "trace_id": "a" * 32,
        "span_id": "b" * 16,
    }
    # A recorded failure is not delivered; a second result for the same evaluator is not stored.
    other = _turn(log)
    assert store.record(other, LOCAL, EvalResult.failed("no verdict"))
    assert not store.record(tid, LOCAL, EvalResult(score=0.9))
    assert len(items(log.engine)) == 2


def test_no_row_without_its_outbox_items(settings: Settings) -> None:
    log = ChatLog(settings.chatlog_url)
    log.set_routes({"evaluation": ["langsmith"]})
    tid = _turn(log)
    with log.engine.begin() as conn:  # the outbox is unusable: the enqueue fails inside the transaction
        conn.execute(text("ALTER TABLE outbox RENAME TO outbox_gone"))
    with pytest.raises(OperationalError):
        EvaluationStore(log).record(tid, LOCAL, EvalResult(score=0.5))
    assert EvaluationStore(log).for_turn(tid) == {}  # rolled back with it: the worker retries later
