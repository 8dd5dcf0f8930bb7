"""The online worker against a real chat log (SQLite, and the real local LLM for the judged share)."""

from __future__ import annotations

import time

import pytest

from chatlog import STATUS_IN_PROGRESS, STATUS_OK, ChatLog
from eval import EvaluationStore, LocalFaithfulness, OnlineEvaluator
from eval._online import JUDGE, LOCAL, sampled
from ragloop.settings import Settings

CONTEXT = [
    {
        "chunk_id": "c1",
        "score": 0.8,
        "source": "tower.txt",
        "title": "Tower",
        "text": "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall.",
    }
]


def _turn(log: ChatLog, answer: str, status: str = STATUS_OK) -> str:
    tid = log.start_turn(user_message="When was the Eiffel Tower completed?", retrieved=CONTEXT)
    if status != STATUS_IN_PROGRESS:
        log.finish_turn(tid, status, answer=answer)
    return tid


def test_sampling_is_deterministic():
    assert not sampled("abc", 0.0) and sampled("abc", 1.0)
    share = sum(sampled(f"t{i}", 0.3) for i in range(2000)) / 2000
    assert 0.25 < share < 0.35
    assert sampled("t7", 0.3) == sampled("t7", 0.3)


def test_worker_scores_flags_and_survives_restart(settings: Settings, encoder):
    settings = settings.model_copy(update={"faithfulness_threshold": 0.5, "eval_poll_s": 0.1})
    log = ChatLog(settings.chatlog_url)
    good = _turn(log, "The Eiffel Tower was completed in 1889.")
    bad = _turn(log, "The Colosseum in Rome was finished by Napoleon Bonaparte in 1921.")
    pending = _turn(log, "", status=STATUS_IN_PROGRESS)
    seen: list[tuple[str, str]] = []
    worker = OnlineEvaluator(
        settings,
        log,
        faithfulness=LocalFaithfulness(encoder),
        callbacks=[lambda t, n, r: seen.append((t["turn_id"], n)), _broken_callback],
    )
    worker.start()
    _wait(lambda: len(EvaluationStore(log).for_turn(bad)) == 3)
    worker.stop()
    store = EvaluationStore(log)
    rows = store.for_turn(good)
    assert set(rows) == {LOCAL, "answer_relevance", "context_relevance"}
    assert rows[LOCAL]["score"] >= 0.5 and not rows[LOCAL]["flagged"]
    assert rows[LOCAL]["details"]["sentences"][0]["source_index"] == 0
    assert store.for_turn(bad)[LOCAL]["score"] < 0.5
    assert store.flagged([LOCAL]) == [bad]
    assert store.for_turn(pending) == {}  # an unfinished turn waits
    assert (good, LOCAL) in seen  # callbacks ran despite the broken one
    # Restart: a fresh worker finds only the turn finished meanwhile; nothing is scored twice.
    log.finish_turn(pending, STATUS_OK, answer="It is 330 metres tall.")
    again = OnlineEvaluator(settings, log, faithfulness=LocalFaithfulness(encoder))
    assert again.run_once() == 1
    assert again.run_once() == 0
    assert store.for_turn(pending)[LOCAL]["score"] is not None


def _broken_callback(turn, name, result):
    raise RuntimeError("exporter down")


def _wait(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


# An unreachable judge is retried, not recorded; a bad reply is recorded: tests/eval/test_online_retry.py.


@pytest.mark.llm
def test_judged_share_uses_the_real_llm(settings: Settings, encoder, llm_server):
    settings = settings.model_copy(update={"judge_sample_rate": 1.0, "openai_base_url": llm_server})
    log = ChatLog(settings.chatlog_url)
    tid = _turn(log, "The Eiffel Tower was completed in 1889.")
    assert OnlineEvaluator(settings, log, faithfulness=LocalFaithfulness(encoder)).run_once() == 2
    row = EvaluationStore(log).for_turn(tid)[JUDGE]
    assert (row["score"] is not None and 0 <= row["score"] <= 1) or row["error"]
    assert row["details"]["model"] == settings.llm_model
