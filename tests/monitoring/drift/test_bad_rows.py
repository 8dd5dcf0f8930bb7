"""Fault 2: a drift run over a real chat log whose windows hold empty, rejected, broken or too few turns.

Each test names the class it covers: unfinished turns left out, NaN-safe statistics, "insufficient
data" below the documented minimum, identical windows, the run-level false-alarm rate,
conversation-respecting permutations, and the faithfulness feature read from ``evaluations``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatlog import ChatLog
from monitoring import semconv
from monitoring.drift import WindowData, drift_report, extract_windows, latest_runs, run_drift
from ragloop.settings import Settings

from .conftest import T0, day


def _turn(log: ChatLog, day_index: int, j: int, **fields) -> str:
    start = T0 + timedelta(days=day_index, seconds=30 + 60 * j)
    turn_id = fields.pop("turn_id", f"x{day_index}-{j}")
    row = {
        "turn_id": turn_id,
        "conversation_id": f"xc{day_index}-{j}",
        "created_at": start,
        "completed_at": start + timedelta(seconds=1),
        "status": "ok",
        "user_message": "",
    }
    log.start_turn(**{**row, **fields})
    return turn_id


def _metric_values(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def _assert_finite_metrics(explanation) -> list[tuple[str, dict[str, str], float]]:
    text = explanation.metrics_path.read_text()
    assert "NaN" not in text and "Inf" not in text, text
    values = _metric_values(text)
    assert values and all(math.isfinite(v) for _, _, v in values)
    return values


def test_rejected_and_unfinished_turns_are_left_out(drift_settings):
    """Rejected (empty message), error, in-progress and cancelled turns never enter a window."""
    log = ChatLog(drift_settings.chatlog_url)
    for j, status in enumerate(("rejected", "rejected", "error", "in_progress", "cancelled")):
        _turn(log, 1, j, status=status, user_message="" if j == 0 else "   ", error_type="empty_message")
    log.close()
    report, explanation = run_drift(drift_settings, window=day(1), reference="previous", evidently=False)
    assert {t.name for t in report.tests} == {"query_embedding", "answer_embedding", "features"}
    assert report.test("query_embedding").n_current == 150
    assert report.test("features").n_current == 150
    assert not report.alarm
    runs = latest_runs(ChatLog(drift_settings.chatlog_url).engine)
    assert runs[0]["n_current"] == 150
    _assert_finite_metrics(explanation)


def test_ok_turns_with_empty_or_broken_vectors_do_not_stop_the_run(drift_settings, drift_corpus):
    """An empty question (nothing to embed), inf, zero and NaN vectors, a NaN answer vector: the run decides."""
    dim = drift_corpus.query.shape[1]
    log = ChatLog(drift_settings.chatlog_url)
    _turn(log, 1, 0, user_message="", standalone_question=None, answer=None)
    _turn(log, 1, 1, user_message="inf", query_embedding=np.full(dim, np.inf, np.float32), answer="a")
    _turn(log, 1, 2, user_message="zero", query_embedding=np.zeros(dim, np.float32), answer="b")
    nan_vector = np.full(dim, np.nan, np.float32)
    _turn(log, 1, 3, user_message="", query_embedding=nan_vector, answer_embedding=nan_vector, answer="")
    _turn(log, 1, 4, user_message="big", total_ms=float("inf"), input_tokens=-1, answer="c")
    log.close()
    report, explanation = run_drift(drift_settings, window=day(1), reference="previous")
    assert {t.name for t in report.tests} == {"query_embedding", "answer_embedding", "features"}
    for test in report.tests:
        assert 0.0 < test.p_value <= 1.0 and math.isfinite(test.statistic), test
    assert not report.alarm
    assert explanation.clusters and explanation.plot_path is not None
    _assert_finite_metrics(explanation)


def _small_log(tmp_path: Path, drift_corpus, n: int, **overrides) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", **overrides)
    log = ChatLog(settings.chatlog_url)
    for d in (9, 10):
        for j in range(n):
            i = (d - 9) * 50 + j
            _turn(
                log,
                d,
                j,
                user_message=drift_corpus.questions[i],
                query_embedding=drift_corpus.query[i],
                answer=drift_corpus.answers[i],
                answer_embedding=drift_corpus.answer[i],
                retrieved=[{"score": 0.5}],
                total_ms=1000.0 + j,
            )
    log.close()
    return settings


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_small_windows_report_insufficient_data(tmp_path, drift_corpus, n):
    """Below RAGLOOP_DRIFT_MIN_ROWS (default 20): no decision, no alarm, no NaN gauge, said plainly."""
    settings = _small_log(tmp_path, drift_corpus, n)
    assert settings.drift_min_rows == 20
    report, explanation = run_drift(settings, window=day(10), reference="previous")
    assert not report.alarm and report.tests == []
    assert set(report.insufficient) == {"query_embedding", "answer_embedding", "features"}
    assert all("insufficient data" in reason for reason in report.insufficient.values())
    values = _assert_finite_metrics(explanation)
    any_alarm = [v for name, labels, v in values if labels.get("ragloop_drift_target") == "any"]
    assert any_alarm == [0.0]
    insufficient = {
        labels["ragloop_drift_target"]
        for name, labels, v in values
        if name == "ragloop_drift_insufficient_data" and v == 1.0
    }
    assert insufficient == {"query_embedding", "answer_embedding", "features"}
    runs = latest_runs(ChatLog(settings.chatlog_url).engine)
    assert runs[0]["alarm"] is False and runs[0]["n_current"] == n


@pytest.mark.parametrize("n", [2, 5])
def test_tiny_windows_decide_without_nan_when_the_minimum_allows(tmp_path, drift_corpus, n):
    """With RAGLOOP_DRIFT_MIN_ROWS=2 the statistics themselves must cope with 2 and 5 rows."""
    settings = _small_log(tmp_path, drift_corpus, n, drift_min_rows=2)
    report, explanation = run_drift(settings, window=day(10), reference="previous")
    assert {t.name for t in report.tests} == {"query_embedding", "answer_embedding", "features"}
    for test in report.tests:
        assert 0.0 < test.p_value <= 1.0 and math.isfinite(test.statistic)
    _assert_finite_metrics(explanation)


def test_identical_windows_never_alarm(drift_settings):
    """The same window as reference and current: every statistic is at its no-drift minimum."""
    for window in (day(1), day(2)):
        report, _ = run_drift(drift_settings, window=window, reference=window, evidently=False)
        assert len(report.tests) == 3
        assert not report.alarm, [t.as_dict() for t in report.tests]
        assert all(t.p_value >= 0.5 for t in report.tests)


def _null_window(rng: np.random.Generator, n: int, label: str) -> WindowData:
    return WindowData(
        label=label,
        start=None,
        end=None,
        turn_ids=[f"{label}{i}" for i in range(n)],
        questions=["q"] * n,
        answers=["a"] * n,
        query=rng.normal(size=(n, 12)).astype(np.float32),
        answer=rng.normal(size=(n, 12)).astype(np.float32),
        features={"length": rng.normal(50, 5, n), "score": rng.uniform(0, 1, n)},
    )


def test_false_alarm_rate_is_alpha_for_the_whole_run(tmp_path):
    """Three tests each at alpha alarm in ~14% of no-drift runs; the run as a whole must stay at alpha."""
    settings = Settings(data_dir=tmp_path, drift_min_rows=10, drift_alpha=0.05, drift_permutations=199)
    rng = np.random.default_rng(42)
    runs = 160
    alarms = 0
    for seed in range(runs):
        settings = settings.model_copy(update={"drift_seed": seed})
        report = drift_report(
            settings, _null_window(rng, 30, "r"), _null_window(rng, 30, "c"), evidently=False
        )
        assert len(report.tests) == 3
        alarms += report.alarm
    # Nominal 5% of 160 = 8 (sd 2.8); three tests at 5% each give ~22 (P(<= 15) < 1%).
    assert alarms <= 15, alarms


def _conversation_log(tmp_path: Path, drift_corpus, seed: int) -> Settings:
    """Two days, 30 conversations each; a conversation's 4 follow-ups stay on its opening question's topic."""
    settings = Settings(data_dir=tmp_path / f"conv{seed}", drift_min_rows=20)
    rng = np.random.default_rng(seed)
    log = ChatLog(settings.chatlog_url)
    topics = rng.permutation(len(drift_corpus.questions) - 30)[:60]  # HaluEval questions only
    for d, chosen in ((20, topics[:30]), (21, topics[30:])):
        j = 0
        for c, i in enumerate(chosen):
            for _ in range(4):
                q = drift_corpus.query[i] + rng.normal(0, 0.01, drift_corpus.query.shape[1])
                a = drift_corpus.answer[i] + rng.normal(0, 0.01, drift_corpus.answer.shape[1])
                _turn(
                    log,
                    d,
                    j,
                    conversation_id=f"conv{d}-{c}",
                    user_message=drift_corpus.questions[i],
                    query_embedding=(q / np.linalg.norm(q)).astype(np.float32),
                    answer=drift_corpus.answers[i],
                    answer_embedding=(a / np.linalg.norm(a)).astype(np.float32),
                    retrieved=[{"score": float(rng.uniform(0.3, 0.8))}],
                    total_ms=float(rng.gamma(4.0, 300.0)),
                )
                j += 1
    log.close()
    return settings


def test_follow_ups_of_a_conversation_move_together(tmp_path, drift_corpus):
    """Same-source days whose conversations each stay on one topic: row-level shuffles see drift that isn't."""
    alarms = []
    for seed in range(3):
        settings = _conversation_log(tmp_path, drift_corpus, seed)
        report, _ = run_drift(settings, window=day(21), reference=day(20), evidently=False)
        alarms.append(report.test("query_embedding").p_value)
    # Rows shuffled one by one: p = 0.005 every time (follow-ups are each other's nearest neighbours).
    assert min(alarms) > 0.05, alarms


def test_faithfulness_feature_comes_from_the_evaluations_table(drift_settings):
    """The local scorer's row (evaluator ``faithfulness_local``) per turn; other evaluators are ignored."""
    from eval import EvalResult, EvaluationStore

    log = ChatLog(drift_settings.chatlog_url)
    store = EvaluationStore(log)
    ids = [t["turn_id"] for t in log.iter_turns() if t["turn_id"].startswith("d1-")]
    scores = {tid: round(0.1 + 0.8 * (k % 10) / 9, 3) for k, tid in enumerate(ids[:100])}
    for tid, score in scores.items():
        store.record(tid, semconv.SCORE_FAITHFULNESS_LOCAL, EvalResult(score=score))
        store.record(tid, semconv.SCORE_FAITHFULNESS_LLM, EvalResult(score=1.0 - score))
    store.record(ids[100], semconv.SCORE_FAITHFULNESS_LOCAL, EvalResult.failed("timeout"))
    log.close()
    _, current = extract_windows(drift_settings, window=day(1), reference="previous")
    got = dict(zip(current.turn_ids, current.features["faithfulness"], strict=True))
    assert {tid: got[tid] for tid in scores} == pytest.approx(scores)
    assert all(math.isnan(got[tid]) for tid in ids[100:])  # no score (or a failed one): unknown
