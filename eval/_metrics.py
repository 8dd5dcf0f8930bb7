"""Pure metrics of the offline harness: retrieval hit@k and MRR, answer correctness, summaries."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def first_hit_rank(relevant: Sequence[bool]) -> int | None:
    """1-based rank of the first relevant retrieved item, or None."""
    for i, rel in enumerate(relevant, 1):
        if rel:
            return i
    return None


def hit_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose first relevant passage is within the top ``k``."""
    if not ranks:
        return 0.0
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def mrr(ranks: Sequence[int | None]) -> float:
    """Mean reciprocal rank (0 for a question with no relevant passage retrieved)."""
    if not ranks:
        return 0.0
    return sum(1.0 / r for r in ranks if r) / len(ranks)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = _ARTICLES.sub(" ", _PUNCT.sub(" ", text.lower()))
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 between a prediction and a reference answer."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def reference_recall(prediction: str, reference: str) -> float:
    """Share of the reference's tokens found in the prediction (long answers are not penalised)."""
    pred, ref = set(normalize_answer(prediction).split()), normalize_answer(reference).split()
    if not ref:
        return 0.0
    return sum(1 for t in ref if t in pred) / len(ref)


def contains_reference(prediction: str, reference: str) -> bool:
    """True when the normalised reference appears verbatim in the normalised prediction."""
    ref = normalize_answer(reference)
    return bool(ref) and f" {ref} " in f" {normalize_answer(prediction)} "


def distribution(values: Sequence[float | None]) -> dict[str, Any]:
    """n, mean, p10/p50/p90, min, max of the non-None values (all None if there are none)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"n": 0, "mean": None, "p10": None, "p50": None, "p90": None, "min": None, "max": None}
    arr = np.asarray(vals)
    return {
        "n": len(vals),
        "mean": round(float(arr.mean()), 4),
        "p10": round(float(np.percentile(arr, 10)), 4),
        "p50": round(float(statistics.median(vals)), 4),
        "p90": round(float(np.percentile(arr, 90)), 4),
        "min": round(float(arr.min()), 4),
        "max": round(float(arr.max()), 4),
    }
