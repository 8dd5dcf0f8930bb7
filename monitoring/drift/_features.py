"""Scalar input and output features of chat-log turns (pure: a turn dict in, numbers out).

Missing values are NaN (a turn with no answer has no answer length, a turn not scored yet has no
faithfulness, a turn logged before ``turns.language`` existed has no language); the drift test skips
them. The faithfulness score is read by the window loader from the
``evaluations`` table (evaluator ``faithfulness_local``) and passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: Input-side features: what users ask.
INPUT_FEATURES = ("query_chars", "query_non_english", "no_relevant_retrieval")
#: Output-side features: what the bot answers and how.
OUTPUT_FEATURES = (
    "answer_chars",
    "retrieval_top_score",
    "cited_sources",
    "refusal",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "thumbs_down",
    "faithfulness",
)
#: The language of the indexed documents: a question in any other counts for ``query_non_english``.
DOCS_LANGUAGE = "en"
#: Statuses counted as a refusal (the bot declined to answer from the corpus). Rejected input never
#: reaches a drift window (see ``monitoring.drift._windows.DRIFT_STATUSES``).
REFUSAL_STATUSES = frozenset({"no_context"})


def non_english(language: Any) -> float:
    """1.0 for a question in a language other than :data:`DOCS_LANGUAGE`, 0.0 for English, NaN if unknown.

    ``language`` is the turn's ``turns.language`` (ISO 639-1, detected by lingua when the turn ran:
    ``eval._language``); turns logged before the column existed have none.
    """
    if not isinstance(language, str) or not language:
        return float("nan")
    return float(language != DOCS_LANGUAGE)


def _num(value: Any) -> float:
    """A finite number, else NaN (None, text, bool, NaN and inf are all "unknown")."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return float("nan")
    return float(value) if np.isfinite(value) else float("nan")


def _top_score(retrieved: Sequence[Mapping[str, Any]] | None) -> float:
    scores = [_num(r.get("score")) for r in (retrieved or []) if isinstance(r, Mapping)]
    scores = [s for s in scores if not np.isnan(s)]
    return max(scores) if scores else float("nan")


def turn_features(
    turn: Mapping[str, Any],
    score_threshold: float,
    thumbs_down: bool = False,
    faithfulness: float | None = None,
) -> dict[str, float]:
    """Scalar features of one chat-log turn.

    Args:
        turn: a turn dict as :meth:`chatlog.ChatLog.iter_turns` yields it.
        score_threshold: retrieval score below which a chunk counts as not relevant.
        thumbs_down: whether the turn received negative feedback.
        faithfulness: the turn's local faithfulness score in [0, 1] (None: not scored).

    Returns:
        Feature name -> value (NaN when unknown), keys :data:`INPUT_FEATURES` + :data:`OUTPUT_FEATURES`.
    """
    question = turn.get("standalone_question") or turn.get("user_message") or ""
    answer = turn.get("answer")
    top = _top_score(turn.get("retrieved"))
    status = turn.get("status")
    no_relevant = (
        status == "no_context" or (not np.isnan(top) and top < score_threshold) or not turn.get("retrieved")
    )
    return {
        "query_chars": float(len(question)),
        "query_non_english": non_english(turn.get("language")),
        "no_relevant_retrieval": float(no_relevant),
        "answer_chars": float(len(answer)) if answer is not None else float("nan"),
        "retrieval_top_score": top,
        "cited_sources": float(len(turn.get("cited") or [])) if answer is not None else float("nan"),
        "refusal": float(status in REFUSAL_STATUSES),
        "latency_ms": _num(turn.get("total_ms")),
        "input_tokens": _num(turn.get("input_tokens")),
        "output_tokens": _num(turn.get("output_tokens")),
        "thumbs_down": float(thumbs_down),
        "faithfulness": _num(faithfulness),
    }


def feature_columns(rows: Iterable[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Turn a sequence of feature dicts into one float array per feature."""
    rows = list(rows)
    names = INPUT_FEATURES + OUTPUT_FEATURES
    return {name: np.array([r.get(name, np.nan) for r in rows], dtype=np.float64) for name in names}
