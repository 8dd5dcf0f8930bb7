"""Answer relevance and context relevance: local, embedding based, same result type as faithfulness.

Answer relevance: does the answer address the question? Context relevance: did retrieval bring
what was needed?
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from eval._embed import CachedEmbedder
from eval._features import answer_sentences
from eval._results import EvalResult, SentenceEvidence, TextEmbedder
from monitoring import semconv

log = logging.getLogger(__name__)

RELEVANCE_VERSION = "local-relevance-1"


def cosine_to_score(cos: float) -> float:
    """Map a cosine similarity to [0, 1]; negative similarity is no relevance."""
    return float(min(1.0, max(0.0, cos)))


class AnswerRelevance:
    """Cosine similarity of the answer to the question; per sentence, which ones address it."""

    name = semconv.SCORE_ANSWER_RELEVANCE
    version = RELEVANCE_VERSION

    def __init__(self, embedder: TextEmbedder, threshold: float = 0.3) -> None:
        """``threshold``: a sentence at least this similar to the question counts as on topic."""
        self.cache = CachedEmbedder(embedder, size=0)
        self.threshold = threshold

    def score(self, answer: str, question: str) -> EvalResult:
        """Score = similarity of the whole answer to the question, in [0, 1]."""
        try:
            if not answer.strip() or not question.strip():
                return EvalResult.failed("answer relevance needs a question and an answer")
            sents = [s for s, _ in answer_sentences(answer)]
            vecs = self.cache.embed([question, answer, *sents])
            q, whole = vecs[0], vecs[1]
            evidence = []
            for s, v in zip(sents, vecs[2:], strict=True):
                sc = cosine_to_score(float(q @ v))
                evidence.append(SentenceEvidence(s, sc >= self.threshold, sc))
            return EvalResult(
                score=cosine_to_score(float(q @ whole)), sentences=evidence, details={"version": self.version}
            )
        except Exception as exc:  # noqa: BLE001 - evaluators record failures, never raise into a turn
            log.warning("answer relevance failed: %s", exc)
            return EvalResult.failed(f"{type(exc).__name__}: {exc}")


class ContextRelevance:
    """How well the retrieved passages match the question: the best passage's similarity."""

    name = semconv.SCORE_CONTEXT_RELEVANCE
    version = RELEVANCE_VERSION

    def __init__(self, embedder: TextEmbedder, threshold: float = 0.3) -> None:
        """``threshold``: a passage at least this similar to the question counts as relevant."""
        self.cache = CachedEmbedder(embedder)
        self.threshold = threshold

    def score(self, question: str, contexts: Sequence[str]) -> EvalResult:
        """Score = max similarity of a passage to the question; details hold precision@k."""
        try:
            if not question.strip():
                return EvalResult.failed("context relevance needs a question")
            if not contexts:
                return EvalResult(score=0.0, details={"version": self.version, "precision": 0.0})
            vecs = self.cache.embed([question, *contexts], cache=[False] + [True] * len(contexts))
            sims = np.clip(vecs[1:] @ vecs[0], 0.0, 1.0)
            evidence = [
                SentenceEvidence(c[:200], bool(s >= self.threshold), float(s), source_index=i)
                for i, (c, s) in enumerate(zip(contexts, sims, strict=True))
            ]
            precision = float(np.mean(sims >= self.threshold))
            return EvalResult(
                score=float(sims.max()),
                sentences=evidence,
                details={"version": self.version, "precision": precision},
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("context relevance failed: %s", exc)
            return EvalResult.failed(f"{type(exc).__name__}: {exc}")
