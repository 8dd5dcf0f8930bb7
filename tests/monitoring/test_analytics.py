"""Known values of every analytics query, on a small real chat log (SQLite and PostgreSQL).

The log is written through the product's own stores (ChatLog turns and feedback, the evaluation
store, the drift store, the labeling store), so the queries run on the migrated schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import chatlog as cl
from eval import EvalResult, EvaluationStore
from labeling import PairStore
from monitoring import semconv as sc
from monitoring._analytics import Window, latest_drift, load_analytics
from monitoring._attributes import parse_prices
from monitoring.drift._store import save_run
from tests.chatlog.conftest import fresh_postgres_url

PRICES = parse_prices("m1=1:2,*=0.5:1")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[cl.ChatLog]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chat.db'}"
    else:
        url = fresh_postgres_url(request.getfixturevalue("postgres_url"))
    chat = cl.ChatLog(url, auto_upgrade=True)
    yield chat
    chat.close()


# (day offset, status, question, total_ms, ttft_ms, input_tokens, output_tokens, model)
TURNS: list[tuple[Any, ...]] = [
    (-3, "ok", "outside the window", 99_999.0, 9_999.0, 1_000, 1_000, "m1"),
    (0, "ok", "q1", 100.0, 10.0, 10, 5, "m1"),
    (0, "ok", "q2", 200.0, 20.0, 20, 5, "m1"),
    (0, "ok", "q3", 300.0, 30.0, 30, 5, "m1"),
    (0, "ok", "q4", 400.0, 40.0, 40, 5, "m1"),
    (1, "ok", "q5", 1000.0, 50.0, 100, 50, "m2"),
    (1, "no_context", "How do I fly?", None, None, 7, 0, "m2"),
    (1, "no_context", "  how do i FLY? ", None, None, 7, 0, "m2"),
    (2, "refusal", "What is love?", None, None, None, None, "m2"),
    (2, "error", "q6", None, None, None, None, "m2"),
    (2, "rejected", "", None, None, None, None, None),
    (2, "ok", "q7", 500.0, None, None, None, "m2"),
]


def _build(log: cl.ChatLog) -> tuple[Window, dict[str, str], datetime]:
    """Write the small log; returns the window, turn ids by question, and the window's first day."""
    stamp = cl.now()
    day0 = datetime.combine(stamp.date() - timedelta(days=2), datetime.min.time(), UTC)
    ids: dict[str, str] = {}
    for k, (offset, status, question, total, ttft, inp, out, model) in enumerate(TURNS):
        at = day0 + timedelta(days=offset, hours=1, minutes=k)
        tid = log.start_turn(created_at=at, user_message=question, model=model)
        log.finish_turn(
            tid, status, total_ms=total, ttft_ms=ttft, input_tokens=inp, output_tokens=out, answer="a [1]"
        )
        ids[question] = tid
    # Feedback through the product's path: one row per rater, edited in place.
    log.add_feedback(ids["q1"], 1, rater="r1")
    log.add_feedback(ids["q1"], -1, "misses the point", rater="r2")
    log.add_feedback(ids["q2"], 1, "great", rater="r1")
    log.add_feedback(ids["q5"], -1, "wrong", rater="r1")
    log.add_feedback(ids["q5"], 1, "right after all", rater="r1")  # edit: still one row, now up
    store = EvaluationStore(log)
    local = dict(zip(["q1", "q2", "q3", "q4", "q5", "q7"], [0.05, 0.15, 0.45, 0.5, 0.95, 1.0], strict=True))
    for q, score in local.items():
        store.record(ids[q], sc.SCORE_FAITHFULNESS_LOCAL, EvalResult(score=score))
    store.record(ids["q1"], sc.SCORE_FAITHFULNESS_LLM, EvalResult(score=0.7))
    store.record(ids["q2"], sc.SCORE_FAITHFULNESS_LLM, EvalResult.failed("judge down"))
    store.record(ids["q3"], sc.SCORE_ANSWER_RELEVANCE, EvalResult(score=0.1))  # not faithfulness
    older = {"run_id": "old", "created_at": stamp - timedelta(days=1), "alarm": False, "tests": []}
    save_run(log.engine, older, [])
    newest = {
        "run_id": "new",
        "created_at": stamp,
        "alarm": True,
        "n_reference": 100,
        "n_current": 120,
        "query_p_value": 0.001,
        "tests": [{"name": "query_embedding", "status": "decided", "alarm": True}],
    }
    clusters = [
        {"rank": r, "size": s, "current_share": cs, "reference_share": rs, "excess": cs - rs, "examples": ex}
        for r, s, cs, rs, ex in [
            (2, 30, 0.25, 0.20, ["b1"]),
            (1, 40, 0.50, 0.10, ["a1", "a2"]),
            (3, 10, 0.05, 0.05, ["c1"]),
        ]
    ]
    save_run(log.engine, newest, clusters)
    pairs = PairStore(log)
    pairs.record_selections({ids[q]: ["thumbs_down"] for q in ("q1", "q2", "q3", "q5")}, run_id="sel")
    for q in ("q1", "q2", "q3"):
        pairs.save_pair(
            {
                "pair_id": ids[q],
                "question": q,
                "response_a": "a",
                "response_b": "b",
                "a_is_original": True,
                "strategy": "strict",
            }
        )
    pairs.record_label(ids["q2"], backend="argilla", annotator="ann", choice="B")
    pairs.record_label(ids["q2"], backend="labelstudio", annotator="ann", choice="B")  # still one pair
    return Window(day0, cl.now() + timedelta(minutes=1)), ids, day0


def test_every_figure_has_its_known_value(log: cl.ChatLog) -> None:
    window, ids, day0 = _build(log)
    a = load_analytics(log.engine, window, prices=PRICES, faithfulness_threshold=0.5, top=2, comments=10)
    d = [(day0 + timedelta(days=i)).date().isoformat() for i in range(3)]
    by_day = {r["day"]: r for r in a.turns_per_day}
    assert [r["day"] for r in a.turns_per_day] == window.days() and window.days()[:3] == d
    assert [by_day[x]["turns"] for x in d] == [4, 3, 3]  # the rejected request is no turn
    assert [by_day[x]["ok"] for x in d] == [4, 1, 1]
    assert [by_day[x]["refused"] for x in d] == [0, 2, 1]
    assert [(by_day[d[2]][k]) for k in ("errors", "rejected", "cancelled")] == [1, 1, 0]
    assert a.totals()["turns"] == 10 and a.totals()["rejected"] == 1 and a.totals()["refused"] == 3
    assert a.totals()["refusal_share"] == pytest.approx(3 / 9)

    # Feedback: q1 up (r1) + down (r2), q2 up, q5 edited down -> up: 3 up, 1 down.
    assert a.feedback == {"up": 3, "down": 1, "up_share": 0.75}
    assert sum(r["up"] for r in a.feedback_per_day) == 3 and sum(r["down"] for r in a.feedback_per_day) == 1
    assert [(c["comment"], c["value"], c["question"]) for c in a.comments] == [
        ("right after all", 1, "q5"),
        ("great", 1, "q2"),
        ("misses the point", -1, "q1"),
    ]

    local, llm = a.faithfulness
    assert local["evaluator"] == sc.SCORE_FAITHFULNESS_LOCAL and local["n"] == 6
    assert local["bins"] == [1, 1, 0, 0, 1, 1, 0, 0, 0, 2]  # 0.05 0.15 0.45 0.5 0.95 1.0
    assert (local["low"], local["low_share"]) == (3, 0.5)  # below 0.5: 0.05, 0.15, 0.45
    assert (llm["evaluator"], llm["n"], llm["low"], llm["bins"][7]) == (sc.SCORE_FAITHFULNESS_LLM, 1, 0, 1)

    assert [(r["question"], r["count"]) for r in a.refused] == [("how do i fly?", 2), ("what is love?", 1)]

    # Nearest-rank percentiles, checked against numpy's inverted-CDF definition.
    totals, ttfts = [100, 200, 300, 400, 1000, 500], [10, 20, 30, 40, 50]
    for got, values in ((a.latency, totals), (a.ttft, ttfts)):
        want = [float(np.percentile(values, p, method="inverted_cdf")) for p in (50, 95)]
        assert (got.n, got.p50, got.p95) == (len(values), *want)
    assert (a.latency.p50, a.latency.p95, a.ttft.p50, a.ttft.p95) == (300, 1000, 30, 50)
    lat = {r["day"]: r for r in a.latency_per_day}
    assert [lat[d[0]][k] for k in ("n", "total_p50", "total_p95", "ttft_p50", "ttft_p95")] == [
        4,
        200,
        400,
        20,
        40,
    ]
    assert [lat[d[1]][k] for k in ("total_p50", "total_p95", "ttft_p50")] == [1000, 1000, 50]
    assert [lat[d[2]][k] for k in ("n", "total_p50", "ttft_p50")] == [1, 500, None]

    use = {r["day"]: r for r in a.usage_per_day}
    assert (use[d[0]]["input_tokens"], use[d[0]]["output_tokens"]) == (100, 20)
    assert use[d[0]]["cost_usd"] == pytest.approx((100 * 1 + 20 * 2) / 1e6)  # m1 = 1:2 per million
    assert (use[d[1]]["input_tokens"], use[d[1]]["output_tokens"]) == (114, 50)
    assert use[d[1]]["cost_usd"] == pytest.approx((114 * 0.5 + 50 * 1) / 1e6)  # m2 -> '*' = 0.5:1
    assert use[d[2]]["unknown_usage"] == 1 and use[d[2]]["cost_usd"] == 0  # q7 answered, no usage

    assert a.drift is not None and a.drift["run_id"] == "new" and a.drift["status"] == "alarm"
    assert a.drift["query_p_value"] == pytest.approx(0.001)
    assert [(c["rank"], c["size"], c["examples"]) for c in a.drift_clusters] == [
        (1, 40, ["a1", "a2"]),
        (2, 30, ["b1"]),
    ]
    assert a.labeling == {"selected": 4, "pairs": 3, "labeled": 1, "pending": 2}


def test_an_empty_log_reads_as_zeros_and_no_drift_run(log: cl.ChatLog) -> None:
    window = Window.last_days(7)
    a = load_analytics(log.engine, window)
    assert len(a.turns_per_day) == 7 and all(r["turns"] == 0 for r in a.turns_per_day)
    assert a.feedback["up_share"] is None and a.faithfulness == [] and a.refused == []
    assert (a.latency.n, a.latency.p50) == (0, None) and a.drift is None and a.drift_clusters == []
    assert a.labeling == {"selected": 0, "pairs": 0, "labeled": 0, "pending": 0}
    assert a.totals()["refusal_share"] is None


def test_a_drift_run_without_enough_data_says_so(log: cl.ChatLog) -> None:
    tests = [{"name": "query_embedding", "status": "insufficient_data", "reason": "12 < 50 rows"}]
    save_run(log.engine, {"run_id": "r", "created_at": cl.now(), "alarm": False, "tests": tests}, [])
    with log.engine.connect() as conn:
        run = latest_drift(conn)
    assert (
        run is not None
        and run["status"] == "insufficient data"
        and run["insufficient"] == ["query_embedding"]
    )


def test_window_of_last_days() -> None:
    until = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    w = Window.last_days(3, until)
    assert w.since == datetime(2026, 2, 27, tzinfo=UTC) and w.until == until
    assert w.days() == ["2026-02-27", "2026-02-28", "2026-03-01"]
    with pytest.raises(ValueError, match="at least one day"):
        Window.last_days(0, until)


def test_free_text_is_read_for_its_owner_only(log: cl.ChatLog) -> None:
    """With ``owner``, comments, refused questions and drift examples are that user's; counts stay global."""
    members = []
    for who in ("alice", "bob"):
        conv = log.create_conversation(user_id=who, title=who)
        tid = log.start_turn(conversation_id=conv, user_message=f"{who} asks", model="m1")
        log.finish_turn(tid, "ok", total_ms=10.0)
        log.add_feedback(tid, -1, f"{who} remarks", rater=who)
        members.append(tid)
        ref = log.start_turn(conversation_id=conv, user_message=f"{who} is refused")
        log.finish_turn(ref, "no_context")
    theirs = log.start_turn(conversation_id=log.create_conversation(user_id="bob"), user_message="x")
    log.finish_turn(theirs, "ok", total_ms=10.0)
    log.add_feedback(theirs, 1, "alice on bob's turn", rater="alice")  # not alice's question
    run = {"run_id": "r1", "created_at": cl.now(), "alarm": False, "n_reference": 5, "n_current": 5}
    cluster = {"rank": 1, "size": 2, "current_share": 0.5, "reference_share": 0.5, "excess": 0.0}
    save_run(log.engine, run, [{**cluster, "examples": ["alice asks", "bob asks"], "turn_ids": members}])
    window = Window.last_days(1)
    everyone = load_analytics(log.engine, window)
    alice = load_analytics(log.engine, window, owner="alice")
    assert {c["comment"] for c in everyone.comments} == {
        "alice remarks",
        "bob remarks",
        "alice on bob's turn",
    }
    assert [c["comment"] for c in alice.comments] == ["alice remarks"]
    assert [r["question"] for r in alice.refused] == ["alice is refused"]
    assert len(everyone.refused) == 2
    assert alice.drift_clusters[0]["examples"] == ["alice asks"]
    assert everyone.drift_clusters[0]["examples"] == ["alice asks", "bob asks"]
    assert alice.totals() == everyone.totals() and alice.feedback == everyone.feedback
    assert load_analytics(log.engine, window, owner="nobody").drift_clusters[0]["examples"] == []
