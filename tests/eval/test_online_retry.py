"""The online worker's two promises (issue 9, fault 9), against a real chat log and real endpoints.

1. A transient failure (judge endpoint down, database locked) is retried, not recorded as final;
   a deterministic one (an unparsable judge reply) is recorded with its error.
2. The same turn always gets the same score: alone, or among other turns in any order.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np

from chatlog import STATUS_OK, ChatLog
from eval import EvaluationStore, OnlineEvaluator
from eval._online import ANSWER_RELEVANCE, CONTEXT_RELEVANCE, JUDGE, LOCAL
from ragloop.process import free_port
from ragloop.settings import Settings

CONTEXT = [
    {
        "chunk_id": "c1",
        "score": 0.8,
        "source": "tower.txt",
        "title": "Tower",
        "text": "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall. "
        "Gustave Eiffel's company designed and built it for the 1889 World's Fair.",
    }
]
OTHERS = [
    ("Who built it?", "Gustave Eiffel's company built the tower for the World's Fair of 1889 in Paris."),
    ("How tall is it?", "It is 330 metres tall, roughly the height of an 81-storey building."),
    ("Where is it?", "The Colosseum in Rome was finished by Napoleon Bonaparte in 1921."),
]
TARGET = ("When was the Eiffel Tower completed?", "The Eiffel Tower was completed in 1889, in Paris.")


def _turn(log: ChatLog, question: str, answer: str) -> str:
    tid = log.start_turn(user_message=question, retrieved=CONTEXT)
    log.finish_turn(tid, STATUS_OK, answer=answer)
    return tid


def _scores(settings: Settings, db: str, turns: list[tuple[str, str]], target_index: int, batch: int) -> dict:
    log = ChatLog(f"sqlite:///{db}")
    ids = [_turn(log, q, a) for q, a in turns]
    worker = OnlineEvaluator(settings, log, batch_size=batch)  # the default (real) scorers
    while worker.run_once():
        pass
    rows = EvaluationStore(log).for_turn(ids[target_index])
    log.close()
    return {name: rows[name]["score"] for name in (LOCAL, ANSWER_RELEVANCE, CONTEXT_RELEVANCE)}


def test_the_same_turn_gets_the_same_score_alone_and_in_any_batch(
    settings: Settings, tmp_path, encoder
) -> None:
    # The encoder: a text's vector does not depend on what else is embedded with it.
    text = TARGET[1]
    alone = encoder.embed_documents([text])[0]
    for batch in ([text, OTHERS[0][1]], [OTHERS[2][1], "x", text, OTHERS[1][1] * 3]):
        assert np.array_equal(encoder.embed_documents(batch)[batch.index(text)], alone)
    # The worker: the same turn scored alone, after other turns, and in batches of other sizes.
    settings = settings.model_copy(update={"judge_sample_rate": 0.0})
    alone_scores = _scores(settings, str(tmp_path / "a.db"), [TARGET], 0, 1)
    after = _scores(settings, str(tmp_path / "b.db"), [*OTHERS, TARGET], 3, 10)
    between = _scores(settings, str(tmp_path / "c.db"), [OTHERS[1], TARGET, OTHERS[2], OTHERS[0]], 1, 2)
    assert all(v is not None for v in alone_scores.values())
    assert after == alone_scores
    assert between == alone_scores


def test_a_judge_endpoint_down_is_retried_and_a_bad_reply_is_recorded(settings: Settings, encoder) -> None:
    from monitoring._instant_llm import InstantLLM

    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    settings = settings.model_copy(
        update={"judge_sample_rate": 1.0, "openai_base_url": down, "llm_timeout_s": 5.0, "eval_poll_s": 1.0}
    )
    log = ChatLog(settings.chatlog_url)
    tid = _turn(log, *TARGET)
    store = EvaluationStore(log)
    worker = OnlineEvaluator(settings, log)
    worker.run_once()
    rows = store.for_turn(tid)
    assert rows[LOCAL]["needs_judge"] and JUDGE not in rows  # not recorded: still pending
    assert worker.transient_failures == 1 and "Connection" in str(worker.last_transient_error)
    worker.run_once()
    assert worker.transient_failures == 2 and worker.retry_delay_s() > settings.eval_poll_s
    assert JUDGE not in store.for_turn(tid)
    # The endpoint is back, but answers in no verdict format: a deterministic failure, recorded.
    with InstantLLM() as llm:
        worker._judge = None
        worker.settings = settings.model_copy(update={"openai_base_url": llm.base_url})
        assert worker.run_once() == 1
    judged = store.for_turn(tid)[JUDGE]
    assert judged["score"] is None and "no verdict" in judged["error"]
    assert worker.transient_failures == 0 and worker.retry_delay_s() == settings.eval_poll_s


def test_a_locked_database_is_retried_not_recorded(settings: Settings, encoder) -> None:
    settings = settings.model_copy(update={"judge_sample_rate": 0.0})
    log = ChatLog(settings.chatlog_url)
    tid = _turn(log, *TARGET)
    worker = OnlineEvaluator(settings, log)
    worker._scorers()  # load the encoder before the lock is taken
    locked, release = threading.Event(), threading.Event()

    def hold_write_lock() -> None:
        conn = sqlite3.connect(log.engine.url.database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(30)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        assert worker.run_once() == 0  # waits out busy_timeout, then gives the pass up
        assert time.monotonic() - started >= 4
    finally:
        release.set()
        holder.join()
    assert worker.transient_failures == 1 and "locked" in str(worker.last_transient_error)
    assert EvaluationStore(log).for_turn(tid).get(LOCAL) is None
    assert worker.run_once() == 1
    assert EvaluationStore(log).for_turn(tid)[LOCAL]["score"] is not None
