"""Drift fixtures: real questions (HaluEval QA, Python FAQ), really embedded once per session, in a real chat log.

Windows in the log (150 turns each, one per UTC day from ``T0``):
    day 0: HaluEval questions (reference);  day 1: other HaluEval questions (same source);
    day 2: HaluEval questions with 20% Python-FAQ questions injected (shifted).
One answer embedding in ten is left NULL so the drift run has to compute them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from chatlog import ChatLog
from monitoring.drift._sources import load_questions
from ragloop.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = 150
INJECTED = 30


def day(i: int) -> str:
    """The ISO window of day ``i``."""
    return f"{(T0 + timedelta(days=i)).isoformat()}/{(T0 + timedelta(days=i + 1)).isoformat()}"


@dataclass
class Corpus:
    questions: list[str]
    answers: list[str]
    query: np.ndarray
    answer: np.ndarray
    topic: list[str]


@pytest.fixture(scope="session")
def drift_corpus() -> Corpus:
    """450 HaluEval + 30 FAQ questions with answers, embedded by the project's embedder (cached)."""
    from retrieval import get_embedder

    base = Settings()
    hq, ha = load_questions(base, "halueval-qa")
    fq, fa = load_questions(base, "python-faq")
    rng = np.random.default_rng(7)
    h_idx = rng.choice(len(hq), size=3 * WINDOW - INJECTED, replace=False)
    f_idx = rng.choice(len(fq), size=INJECTED, replace=False)
    questions = [hq[i] for i in h_idx] + [fq[i] for i in f_idx]
    answers = [str(ha[i]) for i in h_idx] + [str(fa[i])[:400] for i in f_idx]
    # Cached on disk across sessions (keyed by the texts): reruns skip ~1k embeddings.
    key = hashlib.sha256("\n".join(questions + answers).encode()).hexdigest()[:16]
    cache = base.cache_dir / "datasets" / f"drift-test-embeddings-{key}.npz"
    if cache.exists():
        data = np.load(cache)
        query, answer = data["query"], data["answer"]
    else:
        embedder = get_embedder(base)
        query, answer = embedder.embed_documents(questions), embedder.embed_documents(answers)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, query=query, answer=answer)
    return Corpus(questions, answers, query, answer, topic=["halueval"] * len(h_idx) + ["faq"] * len(f_idx))


def _fill(log: ChatLog, corpus: Corpus, rows: list[int], day_index: int, rng: np.random.Generator) -> None:
    start = T0 + timedelta(days=day_index)
    for j, i in enumerate(rows):
        log.start_turn(
            turn_id=f"d{day_index}-{j}-{corpus.topic[i]}",
            conversation_id=f"c{day_index}-{j // 3}",  # three turns per conversation
            created_at=start + timedelta(seconds=60 * j),
            completed_at=start + timedelta(seconds=60 * j + 2),
            status="ok",
            user_message=corpus.questions[i],
            standalone_question=corpus.questions[i],
            query_embedding=corpus.query[i],
            answer=corpus.answers[i],
            answer_embedding=corpus.answer[i] if j % 10 else None,
            retrieved=[{"score": float(rng.uniform(0.3, 0.8))}],
            cited=[1],
            total_ms=float(rng.gamma(4.0, 300.0)),
            input_tokens=int(rng.integers(300, 600)),
            output_tokens=int(rng.integers(20, 120)),
        )


@pytest.fixture()
def drift_settings(tmp_path: Path, drift_corpus: Corpus) -> Iterator[Settings]:
    """Settings whose chat log holds the three days of turns."""
    settings = Settings(data_dir=tmp_path / "data", drift_min_rows=20)
    log = ChatLog(settings.chatlog_url)
    rng = np.random.default_rng(11)
    n_h = 3 * WINDOW - INJECTED
    _fill(log, drift_corpus, list(range(0, WINDOW)), 0, rng)
    _fill(log, drift_corpus, list(range(WINDOW, 2 * WINDOW)), 1, rng)
    shifted = list(range(2 * WINDOW, n_h)) + list(range(n_h, n_h + INJECTED))
    _fill(log, drift_corpus, [shifted[i] for i in np.random.default_rng(3).permutation(len(shifted))], 2, rng)
    log.close()
    yield settings
