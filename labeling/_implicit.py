"""Implicit feedback: does the user's next message say the previous answer failed?

Two signals, both cheap enough for every turn:

* **rules**: phrases that reject an answer ("no, that's wrong", "that's not what I asked", "still
  doesn't work", "I get an error"), matched as word-bounded regular expressions;
* **rephrase**: the follow-up asks the previous question again in other words, measured as the
  cosine similarity of the two question embeddings (the chat log stores the query embedding of every
  turn, so no model runs at selection time). A follow-up that thanks the assistant or opens a new
  angle ("thanks, and what about X?", "how about for dicts?") is not a rephrase.

The thresholds were tuned on the ``tune`` split of ``labeling/data/followups.jsonl`` and are
measured on its ``test`` split by ``bench/bench_loop_core.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Version of the rules and threshold, recorded with each implicit-feedback reason.
IMPLICIT_VERSION = "implicit-1"
#: Cosine similarity of the follow-up to the previous question at or above which it is a rephrase
#: (tuned on the ``tune`` split: see the module docstring).
REPHRASE_SIMILARITY = 0.7

_NEGATIVE = [
    r"^\s*(no|nope|nah|wrong|incorrect|false)\b\s*[,.!:;-]",
    r"^\s*(no|nope|wrong|incorrect)\s*$",
    r"\b(that|this|it|that answer|your answer)('?s| is| was)\s+(just\s+|completely\s+|totally\s+|still\s+)?"
    r"(wrong|incorrect|not (right|true|correct|it|accurate|helpful|what i)|false|nonsense|useless|"
    r"outdated|made up|irrelevant|unhelpful|a hallucination)",
    r"\byou('re| are)\s+(wrong|mistaken|confused|not answering)",
    r"\bnot what i (asked|meant|wanted|was asking|was looking for|need)",
    r"\b(doesn'?t|does not|didn'?t|did not|won'?t|will not)\s+(work|help|exist|answer|run|compile)",
    r"\bstill\s+(doesn'?t|not|broken|fails?|failing|get|getting|wrong|the same)",
    r"\b(raises?|throws?|gives?( me)?|get|getting|got|seeing)\s+"
    r"(an?\s+|the\s+)?(\w+\s)?\w*(error|exception)\b",
    r"\btraceback \(most recent call last\)",
    r"\b(makes|made) no sense\b",
    r"\b(you|it) (didn'?t|did not|don'?t|do not) (answer|understand|read)",
    r"\byou misunderstood\b|\bmisread\b",
    r"\bthere('?s| is) no (such|method|function|module|attribute|option|parameter)",
    r"\bno such (thing|method|function|module|attribute|option|parameter)",
    r"\b(hallucinat\w*|made that up|making (that|things|stuff) up)",
    r"\bnot (helpful|useful|relevant|correct|accurate|true)\b",
    r"\b(useless|wrong answer|bad answer|nonsense)\b",
    r"\b(answer|read) the question\b",
    r"\b(try|please try) again\b",
    r"^\s*i (said|asked|meant)\b",
    r"\bi('m| am) (asking|talking) about\b",
    r"\bthat('?s| is) (for|from) python ?2\b",
    r"^\s*(huh|what)\s*\?+\s*$",
    r"\?\s*!|!\s*\?",
    r"\bwhy (did|do) you (say|mention|talk about)\b",
    r"\b(wasn'?t|was not|isn'?t|is not) (my|the) question\b",
]
_POSITIVE = [
    r"^\s*(thanks|thank you|thx|great|perfect|awesome|nice|cool|got it|ok(ay)?|understood|makes sense|"
    r"that (works|worked|helps|helped)|it works|brilliant|excellent)\b",
    r"^\s*(and|also|what about|how about|now|next|then|one more|another)\b",
    r"\b(what|how) about\b",
    r"\b(can|could) you (also|give|show) (me )?(an? )?(example|more|another)",
    r"\bfollow[- ]up\b",
]
_NEGATIVE_RE = [re.compile(p, re.I) for p in _NEGATIVE]
_POSITIVE_RE = [re.compile(p, re.I) for p in _POSITIVE]

#: ``embed(texts) -> (n, dim)`` unit rows, e.g. ``retrieval.get_embedder(settings).embed_documents``.
Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class ImplicitVerdict:
    """Whether a follow-up shows dissatisfaction with the previous answer, and why."""

    dissatisfied: bool
    reason: str | None
    """``rule:<pattern number>``, ``rephrase`` or None."""
    similarity: float | None
    """Cosine similarity of the follow-up to the previous question, when embeddings were given."""


def negative_rule(followup: str) -> int | None:
    """The number of the first rejection rule ``followup`` matches, or None."""
    for i, pattern in enumerate(_NEGATIVE_RE):
        if pattern.search(followup):
            return i
    return None


def positive_cue(followup: str) -> bool:
    """True when ``followup`` thanks the assistant or moves on ("and what about ...")."""
    return any(p.search(followup) for p in _POSITIVE_RE)


def detect(
    previous_question: str,
    followup: str,
    similarity: float | None = None,
    threshold: float = REPHRASE_SIMILARITY,
) -> ImplicitVerdict:
    """Classify one follow-up.

    Args:
        previous_question: the question the answer replied to.
        followup: the user's next message in the same conversation.
        similarity: cosine similarity of the two questions' embeddings (None: rules only).
        threshold: similarity at or above which a follow-up without a positive cue is a rephrase.

    Returns:
        The verdict: a rejection rule wins; else a rephrase (similar, no positive cue, not identical
        to a one-word acknowledgement) counts as dissatisfied.
    """
    text = (followup or "").strip()
    if not text:
        return ImplicitVerdict(False, None, similarity)
    rule = negative_rule(text)
    if rule is not None:
        return ImplicitVerdict(True, f"rule:{rule}", similarity)
    if (
        similarity is not None
        and similarity >= threshold
        and not positive_cue(text)
        and previous_question.strip()
    ):
        return ImplicitVerdict(True, "rephrase", similarity)
    return ImplicitVerdict(False, None, similarity)


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Cosine similarity of two vectors (None when either is missing or zero)."""
    if a is None or b is None or len(a) != len(b):
        return None
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return None
    return float(np.dot(a, b) / (na * nb))


def detect_many(
    items: Sequence[tuple[str, str]], embed: Embed | None, threshold: float = REPHRASE_SIMILARITY
) -> list[ImplicitVerdict]:
    """Classify (previous question, follow-up) pairs, embedding them in one batch when ``embed`` is given."""
    sims: list[float | None] = [None] * len(items)
    if embed is not None and items:
        vecs = embed([t for pair in items for t in pair])
        sims = [cosine(vecs[2 * i], vecs[2 * i + 1]) for i in range(len(items))]
    return [detect(q, f, s, threshold) for (q, f), s in zip(items, sims, strict=True)]
