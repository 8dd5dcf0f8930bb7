"""Seams: the real drift run over windows holding bad rows, and over windows of 0, 1, 2 and 5 turns.

Each scenario writes turns into a real SQLite chat log (two days: reference and current) and calls
``monitoring.drift.run_drift`` on them, Evidently report included, exactly as ``ragloop drift run``
does. Good turns are real HaluEval questions and answers embedded by the project's embedder; the bad
rows are what a chat log really holds: rejected empty messages, errors, in-progress and cancelled
turns, answered turns with an empty question, NaN, infinite or all-zero vectors, infinite latencies.
Small windows are run with the default minimum (RAGLOOP_DRIFT_MIN_ROWS=20: "insufficient data") and
with the smallest allowed minimum (2: the statistics themselves run on 2 and 5 rows).

A run "failed" when it raised, wrote a NaN or infinite metric point, or raised an alarm on a window
it reported as insufficient data. Writes ``drift_runs_failed_on_bad_rows`` (and the per-scenario
outcome) into bench/results/seams.json: a count, not a timing (``Run("seams", timing=False)``).

Usage:
    python bench/bench_seams_drift.py [--good 40]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._common import Run, table  # noqa: E402
from chatlog import ChatLog  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DIM = 384


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--good", type=int, default=40, help="good turns per window beside the bad rows")
    p.add_argument("--no-evidently", action="store_true", help="skip the Evidently report in each run")
    return p.parse_args()


class Corpus:
    """Real questions and answers, embedded once."""

    def __init__(self, settings: Settings, n: int) -> None:
        """Embed ``n`` HaluEval QA questions and their answers with the project's embedder."""
        from monitoring.drift._sources import load_questions
        from retrieval import get_embedder

        questions, answers = load_questions(settings, "halueval-qa")
        idx = np.random.default_rng(0).choice(len(questions), size=n, replace=False)
        self.questions = [questions[i] for i in idx]
        self.answers = [str(answers[i]) for i in idx]
        embedder = get_embedder(settings)
        self.query = embedder.embed_documents(self.questions)
        self.answer = embedder.embed_documents(self.answers)


def _turn(log: ChatLog, day: int, j: int, **fields: Any) -> None:
    start = T0 + timedelta(days=day, seconds=60 * j)
    row = {
        "turn_id": f"s{day}-{j}",
        "conversation_id": f"c{day}-{j // 2}",
        "created_at": start,
        "completed_at": start + timedelta(seconds=2),
        "status": "ok",
        "user_message": "",
    }
    log.start_turn(**{**row, **fields})


def _good(log: ChatLog, corpus: Corpus, day: int, n: int, offset: int) -> None:
    rng = np.random.default_rng(day)
    for j in range(n):
        i = (offset + j) % len(corpus.questions)
        _turn(
            log,
            day,
            j,
            user_message=corpus.questions[i],
            standalone_question=corpus.questions[i],
            query_embedding=corpus.query[i],
            answer=corpus.answers[i],
            answer_embedding=corpus.answer[i],
            retrieved=[{"score": float(rng.uniform(0.3, 0.8))}],
            cited=[1],
            total_ms=float(rng.gamma(4.0, 300.0)),
            input_tokens=int(rng.integers(300, 600)),
            output_tokens=int(rng.integers(20, 120)),
        )


def _bad_rows(kind: str) -> list[dict[str, Any]]:
    """The bad turns of one scenario (added to the current window)."""
    nan, inf = np.full(DIM, np.nan, np.float32), np.full(DIM, np.inf, np.float32)
    rows: dict[str, list[dict[str, Any]]] = {
        "rejected_empty_message": [{"status": "rejected", "error_type": "empty_message"}] * 3,
        "rejected_with_text": [{"status": "rejected", "user_message": "x" * 5000, "error_type": "too_long"}],
        "error_turn": [{"status": "error", "user_message": "what is a list?", "error_type": "llm_error"}],
        "in_progress_turn": [{"status": "in_progress", "user_message": "still running"}],
        "cancelled_turn": [{"status": "cancelled", "user_message": "stop", "answer": "partial"}],
        "ok_empty_question": [{"user_message": "", "answer": None}, {"user_message": "   ", "answer": ""}],
        "nan_vectors": [{"user_message": "", "query_embedding": nan, "answer_embedding": nan, "answer": ""}],
        "inf_vectors": [
            {"user_message": "inf", "query_embedding": inf, "answer": "a", "answer_embedding": inf}
        ],
        "zero_vectors": [{"user_message": "", "query_embedding": np.zeros(DIM, np.float32), "answer": None}],
        "nan_features": [{"user_message": "how?", "answer": "so", "total_ms": math.inf, "retrieved": []}],
    }
    if kind == "all_bad_rows":
        return [r for k, v in rows.items() for r in v]
    return rows[kind]


def _check(settings: Settings, window: str, insufficient_expected: bool, evidently: bool) -> str:
    """Run drift once; "ok" or what went wrong."""
    from prometheus_client.parser import text_string_to_metric_families

    from monitoring.drift import run_drift

    try:
        report, explanation = run_drift(settings, window=window, reference="previous", evidently=evidently)
    except Exception as exc:  # noqa: BLE001 - the count is of runs that raised
        traceback.print_exc()
        return f"raised {type(exc).__name__}: {exc}"
    text = explanation.metrics_path.read_text() if explanation.metrics_path else ""
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    if not samples or not all(math.isfinite(s.value) for s in samples):
        return "a NaN/inf (or no) metric point"
    alarmed = {s.labels.get("ragloop_drift_target") for s in samples if "alarm" in s.name and s.value}
    insufficient = set(getattr(report, "insufficient", {}))  # (the pre-issue report had no such field)
    if alarmed & insufficient or (report.alarm and not report.tests):
        return "alarm on insufficient data"
    if insufficient_expected and not insufficient:
        return "decided on a window below the minimum"
    return "ok"


def _window(day: int) -> str:
    start = T0 + timedelta(days=day)
    return f"{start.isoformat()}/{(start + timedelta(days=1)).isoformat()}"


def scenarios(
    work: Path, corpus: Corpus, good: int
) -> list[tuple[str, Callable[[], tuple[Settings, str, bool]]]]:
    """(name, setup) pairs; a setup fills a chat log, returns (settings, window, expects insufficient)."""
    out: list[tuple[str, Callable[[], tuple[Settings, str, bool]]]] = []
    kinds = (
        "rejected_empty_message",
        "rejected_with_text",
        "error_turn",
        "in_progress_turn",
        "cancelled_turn",
        "ok_empty_question",
        "nan_vectors",
        "inf_vectors",
        "zero_vectors",
        "nan_features",
        "all_bad_rows",
    )
    for kind in kinds:

        def bad(kind: str = kind) -> tuple[Settings, str, bool]:
            settings = Settings(data_dir=work / kind)
            log = ChatLog(settings.chatlog_url)
            _good(log, corpus, 0, good, 0)
            _good(log, corpus, 1, good, good)
            for j, fields in enumerate(_bad_rows(kind)):
                _turn(log, 1, good + j, **fields)
            log.close()
            return settings, _window(1), False

        out.append((kind, bad))
    for n in (0, 1, 2, 5):
        for min_rows in (20, 2):

            def small(n: int = n, min_rows: int = min_rows) -> tuple[Settings, str, bool]:
                settings = Settings(data_dir=work / f"small-{n}-{min_rows}", drift_min_rows=min_rows)
                log = ChatLog(settings.chatlog_url)
                _good(log, corpus, 0, n, 0)
                _good(log, corpus, 1, n, n)
                _turn(log, 1, n, status="rejected", error_type="empty_message")  # and one rejected row
                log.close()
                return settings, _window(1), n < max(2, min_rows)

            out.append((f"window_{n}_turns_min_rows_{min_rows}", small))
    return out


def main() -> None:
    """Run every scenario and merge the count into seams.json."""
    args = _parse()
    run = Run("seams", timing=False)
    corpus = Corpus(Settings(), max(2 * args.good, 20))
    rows = []
    with tempfile.TemporaryDirectory(prefix="ragloop-seams-drift-") as tmp:
        for name, setup in scenarios(Path(tmp), corpus, args.good):
            settings, window, expect_insufficient = setup()
            outcome = _check(settings, window, expect_insufficient, evidently=not args.no_evidently)
            rows.append({"scenario": name, "outcome": outcome})
            print(f"{name}: {outcome}", flush=True)
    failed = sum(r["outcome"] != "ok" for r in rows)
    path = run.merge(
        {
            "drift_runs_failed_on_bad_rows": failed,
            "drift_bad_rows_runs": len(rows),
            "drift_bad_rows_outcomes": {r["scenario"]: r["outcome"] for r in rows},
        },
        name="seams",
    )
    print(table(rows))
    print(f"drift_runs_failed_on_bad_rows = {failed} of {len(rows)} runs; written {path}")


if __name__ == "__main__":
    main()
