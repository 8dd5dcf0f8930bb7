"""The local faithfulness scorer used pairwise: given one context, which of two answers is better?

Scoring each answer alone and keeping the higher one (the pairwise use of
:class:`eval.LocalFaithfulness` until ``local-pairwise-1``) throws away what a comparison can see:
the two answers share their context and question, so the *differences* of their evidence features
say more than two separate probabilities. HaluEval's dialogue task is where it matters: both
responses there are fluent chit-chat, the right one often with facts of its own, and comparing the
scores alone preferred the right response in 70% of held-out pairs; comparing the features, 85%.

The model is a logistic regression without intercept on the difference of the two answers'
feature vectors (the faithfulness score, its :data:`eval._features.FEATURE_NAMES` evidence, the log
word count, whether the answer hedges ("I don't know") and whether it ends with a question), each
also multiplied by the log word counts of the context and of the question, so that one model weighs
evidence differently for a two-line knowledge snippet and a long document. Being a function of
``a - b`` with no intercept it is antisymmetric: ``P(A over B) = 1 - P(B over A)`` exactly, so the
verdict never depends on which answer is shown first.

Coefficients are constants in :mod:`eval._pairwise_weights`, written by
``bench/bench_judge.py --tune`` from HaluEval's tuning split (the same split the faithfulness
combiner was fitted on); the benchmark measures them on held-out items only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eval import _pairwise_weights
from eval._features import FEATURE_NAMES
from eval._results import sigmoid

#: Version of the pairwise features + coefficients, recorded in every verdict's agent.
LOCAL_PAIRWISE_VERSION = "local-pairwise-1"

_WORD = re.compile(r"[A-Za-z0-9']+")
#: An answer that says it does not know: honest, and in HaluEval never the hallucinated one.
_HEDGE = re.compile(
    r"\b(?:i don'?t know|i do not know|not sure|no idea|unsure|not certain|i'?m not aware|"
    r"i don'?t have (?:any |that |enough )?(?:information|info|details)|i can'?t (?:say|tell))\b",
    re.I,
)

#: Per-answer features, in order.
ANSWER_FEATURES = ("faithfulness", *FEATURE_NAMES, "log_words", "hedges", "ends_with_question")
#: The model's inputs: the answer-feature differences, then each times log context words, then
#: each times log question words.
PAIR_FEATURES = (
    *(f"d_{n}" for n in ANSWER_FEATURES),
    *(f"d_{n}*log_context_words" for n in ANSWER_FEATURES),
    *(f"d_{n}*log_question_words" for n in ANSWER_FEATURES),
)


def words(text: str | None) -> int:
    """Number of word tokens (letters, digits, apostrophes) in ``text``."""
    return len(_WORD.findall(text or ""))


def answer_vector(score: float, features: Mapping[str, float] | None, text: str) -> list[float]:
    """The :data:`ANSWER_FEATURES` of one answer.

    Args:
        score: its local faithfulness in [0, 1].
        features: its :data:`FEATURE_NAMES` evidence (``FaithfulnessResult.details["features"]``);
            None for an answer without content (every evidence feature is then 0).
        text: the answer.
    """
    evidence = [float(features[n]) for n in FEATURE_NAMES] if features else [0.0] * len(FEATURE_NAMES)
    return [
        float(score),
        *evidence,
        math.log1p(words(text)),
        1.0 if _HEDGE.search(text or "") else 0.0,
        1.0 if (text or "").strip().endswith("?") else 0.0,
    ]


def pair_features(
    vec_a: Sequence[float], vec_b: Sequence[float], context_words: int, question_words: int
) -> list[float]:
    """The :data:`PAIR_FEATURES` of answers A and B given their shared context and question sizes."""
    if len(vec_a) != len(ANSWER_FEATURES) or len(vec_b) != len(ANSWER_FEATURES):
        raise ValueError(f"answer vectors must have {len(ANSWER_FEATURES)} features")
    d = [a - b for a, b in zip(vec_a, vec_b, strict=True)]
    zc, zq = math.log1p(max(0, context_words)), math.log1p(max(0, question_words))
    return d + [x * zc for x in d] + [x * zq for x in d]


def preference(x: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """P(A better than B) for the :data:`PAIR_FEATURES` ``x``: ``sigmoid(w . x)``, no intercept.

    Raises:
        ValueError: ``x`` and the weights differ in length.
    """
    w = _pairwise_weights.WEIGHTS if weights is None else weights
    if len(w) != len(x):
        raise ValueError(f"{len(x)} pair features but {len(w)} weights")
    return sigmoid(sum(wi * xi for wi, xi in zip(w, x, strict=True)))


@dataclass(frozen=True)
class PairwisePreference:
    """The local comparison of answers A and B."""

    p_a: float
    """P(A better than B), in [0, 1]; ``1 - p_a`` for B."""
    score_a: float
    """A's local faithfulness."""
    score_b: float
    """B's local faithfulness."""


class LocalPairwise:
    """Compares two answers to one question and context with the local faithfulness evidence."""

    name = "local-pairwise"
    version = LOCAL_PAIRWISE_VERSION

    def __init__(self, scorer: object) -> None:
        """Use ``scorer``, an :class:`eval.LocalFaithfulness` (its ``score`` gives the evidence)."""
        self.scorer = scorer

    def vector(self, answer: str, contexts: Sequence[str], question: str | None) -> tuple[float, list[float]]:
        """One answer's faithfulness and :data:`ANSWER_FEATURES`.

        Raises:
            RuntimeError: the faithfulness scorer failed on this answer.
        """
        result = self.scorer.score(answer, contexts, question)  # type: ignore[attr-defined]
        if result.score is None:
            raise RuntimeError(f"local faithfulness failed: {result.error}")
        feats = (result.details or {}).get("features")
        return float(result.score), answer_vector(result.score, feats, answer)

    def compare(self, a: str, b: str, contexts: Sequence[str], question: str | None) -> PairwisePreference:
        """P(A better than B) given the shared ``contexts`` and ``question``.

        Raises:
            RuntimeError: the faithfulness scorer failed on either answer.
        """
        sa, va = self.vector(a, contexts, question)
        sb, vb = self.vector(b, contexts, question)
        x = pair_features(va, vb, words(" ".join(contexts)), words(question))
        return PairwisePreference(p_a=preference(x), score_a=sa, score_b=sb)
