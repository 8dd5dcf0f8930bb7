"""Pure feature extraction for the local faithfulness scorer.

Per answer sentence: how much evidence for it the retrieved context holds.
Most features are shares (coverage in [0, 1]); the two counts are of *unsupported* tokens only
(content words and names found neither in the context nor in the question), so a long answer that
is fully supported is not penalised: the scorer reads evidence, not length (the benchmark reports a
length-only baseline beside it to check that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from eval._text import Tokens, bigrams, coverage, split_sentences, tokenize

#: Feature names, in the order of :meth:`SentenceFeatures.vector` and of the combiner's weights.
SENTENCE_FEATURES = (
    "content_coverage",
    "context_only_coverage",
    "name_coverage",
    "number_coverage",
    "bigram_coverage",
    "best_sentence_coverage",
    "embedding_similarity",
    "no_novel_name",
    "no_novel_number",
    "novel_words",
    "novel_names",
    "context_name_coverage",
    "new_context_names",
    "question_coverage",
)
#: Sentence features that are counts of tokens: summed over the answer, then log1p.
COUNT_FEATURES = ("novel_words", "novel_names", "new_context_names")
#: Answer features: the content-weighted mean of every share feature, log1p of the summed counts, then
#: the minimum over sentences of the shares where a single unsupported sentence should count.
MIN_FEATURES = ("content_coverage", "best_sentence_coverage", "embedding_similarity")
FEATURE_NAMES = SENTENCE_FEATURES + tuple(f"min_{n}" for n in MIN_FEATURES)
_MIN_IDX = [SENTENCE_FEATURES.index(n) for n in MIN_FEATURES]
_COUNT_IDX = {SENTENCE_FEATURES.index(n) for n in COUNT_FEATURES}


@dataclass(frozen=True)
class ContextIndex:
    """The retrieved context, tokenized once per check and shared by every answer sentence."""

    sentences: list[str]
    """Context sentences, in order."""
    sentence_source: list[int]
    """For each sentence, the index of the context passage it came from."""
    sentence_tokens: list[set[str]]
    """Content tokens of each sentence."""
    vocab: frozenset[str]
    """Every content token of the context."""
    given: frozenset[str]
    """Content tokens of the question or dialogue history: restating them is not a new claim."""
    numbers: frozenset[str]
    """Numbers in the context and the question."""
    pairs: frozenset[tuple[str, str]]
    """Content bigrams of the context."""


def index_context(contexts: list[str], question: str | None = None) -> ContextIndex:
    """Split and tokenize the context passages (and the question) once."""
    sentences: list[str] = []
    sources: list[int] = []
    toks: list[set[str]] = []
    vocab: set[str] = set()
    numbers: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for i, passage in enumerate(contexts):
        for sent in split_sentences(passage):
            t = tokenize(sent)
            sentences.append(sent)
            sources.append(i)
            toks.append(set(t.content))
            vocab.update(t.content)
            numbers.update(t.numbers)
            pairs.update(bigrams(t.content))
    q = tokenize(question or "")
    numbers.update(q.numbers)
    return ContextIndex(
        sentences, sources, toks, frozenset(vocab), frozenset(q.content), frozenset(numbers), frozenset(pairs)
    )


def best_sentences(tokens: Tokens, ctx: ContextIndex, k: int) -> list[int]:
    """Indices of the ``k`` context sentences sharing most content tokens with ``tokens``."""
    words = set(tokens.content)
    scored = sorted(((len(words & st), -i) for i, st in enumerate(ctx.sentence_tokens)), reverse=True)
    return [-neg for _, neg in scored[:k]]


def sentence_features(tokens: Tokens, ctx: ContextIndex, similarity: float) -> list[float]:
    """The :data:`SENTENCE_FEATURES` of one answer sentence, given its best embedding similarity."""
    words = set(tokens.content)
    known = ctx.vocab | ctx.given
    best = max((coverage(words, st, 0.0) for st in ctx.sentence_tokens), default=0.0) if words else 1.0
    names = set(tokens.names)
    numbers = set(tokens.numbers)
    return [
        coverage(words, known),
        coverage(words - ctx.given, ctx.vocab),
        coverage(names, known),
        coverage(numbers, ctx.numbers),
        coverage(bigrams(tokens.content), ctx.pairs),
        best,
        similarity,
        float(names <= known),
        float(numbers <= ctx.numbers),
        float(len(words - known)),
        float(len(names - known)),
        # Names backed by the context itself, not merely repeated from the question or dialogue
        # history: a hallucinated dialogue turn often reuses names the user said, a right one
        # brings in the knowledge's own.
        coverage(names, ctx.vocab),
        float(len((names & ctx.vocab) - ctx.given)),
        coverage(words, ctx.given, 0.0),
    ]


def answer_features(rows: list[list[float]], weights: list[float]) -> list[float]:
    """Aggregate sentence feature rows into the :data:`FEATURE_NAMES` vector of the whole answer.

    Args:
        rows: one :func:`sentence_features` row per answer sentence (at least one).
        weights: each sentence's weight (its number of content tokens).
    """
    total = sum(weights) or 1.0
    out = []
    for j in range(len(rows[0])):
        if j in _COUNT_IDX:
            # How much unsupported material there is, whatever the answer's length: a fully
            # supported long answer has none.
            out.append(math.log1p(sum(r[j] for r in rows)))
        else:
            out.append(sum(w * r[j] for r, w in zip(rows, weights, strict=True)) / total)
    return out + [min(r[j] for r in rows) for j in _MIN_IDX]


def answer_sentences(answer: str, max_sentences: int = 12) -> list[tuple[str, Tokens]]:
    """The answer's sentences that carry content, with their tokens (at most ``max_sentences``)."""
    out = []
    for sent in split_sentences(answer):
        toks = tokenize(sent)
        if toks.content or toks.numbers:
            out.append((sent, toks))
    return out[:max_sentences]
