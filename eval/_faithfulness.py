"""Local faithfulness (groundedness): is every sentence of an answer supported by the retrieved context?

Fast enough for every turn (no network, no LLM): each answer sentence gets lexical evidence
(content words, names, numbers and word pairs found in the context, and how much of it a single
context sentence holds) and the embedding similarity to its best lexical candidates among the
context sentences. A logistic combiner turns the features into a probability of "supported".

The combiner (logistic regression on the features and their pairwise products) was fitted once on
a tuning split of HaluEval by ``bench/bench_faithfulness.py --tune``, which writes the coefficients
to ``eval/_weights.py`` as constants; the benchmark measures them on held-out items only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import combinations_with_replacement

from eval import _weights
from eval._embed import CachedEmbedder
from eval._features import (
    FEATURE_NAMES,
    ContextIndex,
    answer_features,
    answer_sentences,
    best_sentences,
    index_context,
    sentence_features,
)
from eval._results import FaithfulnessResult, SentenceEvidence, TextEmbedder, sigmoid
from monitoring import semconv

log = logging.getLogger(__name__)

#: Version of features + coefficients, recorded with every score so runs stay comparable.
LOCAL_FAITHFULNESS_VERSION = "local-faithfulness-5"


def expand(features: Sequence[float]) -> list[float]:
    """Degree-2 expansion: each feature, then every product x_i * x_j (i <= j), in a fixed order.

    Products let one linear combiner weigh evidence differently for short answers to questions
    and long summaries of documents (e.g. a novel name matters more when little else is new).
    """
    x = list(features)
    return x + [a * b for a, b in combinations_with_replacement(x, 2)]


#: Evidence gate: text naming names or numbers the context lacks, with under this share of its
#: content words in the context, scores at most GATE_CAP whatever the combiner says. The learned
#: combiner extrapolates poorly where HaluEval has few examples (no overlap at all).
GATE_COVERAGE = 0.2
GATE_CAP = 0.2
#: Support floor: text whose every content word, name and number is in the context (or question)
#: and whose sentences are all this similar to a context sentence scores at least FLOOR. Without it
#: the combiner, fitted where right QA answers are short spans, distrusts full sentences that merely
#: spread their facts over two context sentences (measured cost on the tuning split: QA -0.025).
FLOOR_SIMILARITY = 0.7
FLOOR = 0.55
_F = {name: i for i, name in enumerate(FEATURE_NAMES)}


def combine(
    features: Sequence[float], weights: Sequence[float] | None = None, bias: float | None = None
) -> float:
    """Probability that text with these :data:`FEATURE_NAMES` features is supported (evidence-gated)."""
    w = _weights.WEIGHTS if weights is None else weights
    b = _weights.BIAS if bias is None else bias
    p = sigmoid(b + sum(wi * xi for wi, xi in zip(w, expand(features), strict=True)))
    novel = features[_F["novel_names"]] > 0 or features[_F["no_novel_number"]] < 1
    if novel and features[_F["content_coverage"]] < GATE_COVERAGE:
        return min(p, GATE_CAP)
    if (
        not novel
        and features[_F["min_content_coverage"]] >= 1.0
        and (features[_F["min_embedding_similarity"]] >= FLOOR_SIMILARITY)
    ):
        return max(p, FLOOR)
    return p


class LocalFaithfulness:
    """Sentence-level support from an embedding model and lexical evidence; no network, no LLM."""

    name = semconv.SCORE_FAITHFULNESS_LOCAL
    version = LOCAL_FAITHFULNESS_VERSION

    def __init__(
        self,
        embedder: TextEmbedder | None,
        threshold: float = 0.5,
        candidates: int = 2,
        cache_size: int = 4096,
    ) -> None:
        """Build the scorer.

        Args:
            embedder: anything with ``embed_documents(list[str]) -> np.ndarray`` of unit rows, e.g.
                ``retrieval.get_embedder(settings)`` or :func:`eval._embed.get_encoder`; None uses
                lexical evidence only (the similarity feature is then 0 and scores are lower).
            threshold: a sentence scoring at least this is "supported".
            candidates: context sentences (chosen lexically) compared by embedding per answer sentence;
                bounding them keeps long documents as cheap as short ones.
            cache_size: context sentence embeddings kept between calls (chunks recur across turns).
        """
        self.cache = CachedEmbedder(embedder, cache_size) if embedder is not None else None
        self.threshold = threshold
        self.candidates = candidates

    def score(self, answer: str, contexts: Sequence[str], question: str | None = None) -> FaithfulnessResult:
        """Score how well ``contexts`` support ``answer``.

        Args:
            answer: the text to check.
            contexts: the retrieved passages (their order gives ``source_index``).
            question: the question or dialogue history; restating it is not counted as a new claim.

        Returns:
            The content-weighted support of the answer's sentences, with per-sentence evidence.
            An answer without content (empty, or only stopwords) scores 1.0: it claims nothing.
        """
        try:
            ctx, sents, rows, best = self._analyse(answer, contexts, question)
            if not sents:
                return FaithfulnessResult(score=1.0, details={"version": self.version, "sentences": 0})
            weights = [float(max(1, len(tok.content))) for _, tok in sents]
            evidence = [
                self._evidence(sent, row, ctx, j) for (sent, _), row, j in zip(sents, rows, best, strict=True)
            ]
            features = answer_features(rows, weights)
            return FaithfulnessResult(
                score=combine(features),
                sentences=evidence,
                details={
                    "version": self.version,
                    "features": dict(zip(FEATURE_NAMES, features, strict=True)),
                },
            )
        except Exception as exc:  # noqa: BLE001 - a scorer failure is recorded, never raised into a turn
            log.warning("local faithfulness failed: %s", exc)
            return FaithfulnessResult.failed(f"{type(exc).__name__}: {exc}")

    def features(
        self, answer: str, contexts: Sequence[str], question: str | None = None
    ) -> list[float] | None:
        """The :data:`FEATURE_NAMES` vector of ``answer`` (None if it has no content), as ``--tune`` fits."""
        _, sents, rows, _ = self._analyse(answer, contexts, question)
        if not sents:
            return None
        return answer_features(rows, [float(max(1, len(tok.content))) for _, tok in sents])

    def _analyse(
        self, answer: str, contexts: Sequence[str], question: str | None
    ) -> tuple[ContextIndex, list, list[list[float]], list[int | None]]:
        """Context index, content sentences, their feature rows and best context sentences."""
        ctx = index_context(list(contexts), question)
        sents = answer_sentences(answer)
        if not sents:
            return ctx, [], [], []
        sims, best = self._similarities(sents, ctx)
        rows = [sentence_features(tok, ctx, sim) for (_, tok), sim in zip(sents, sims, strict=True)]
        return ctx, sents, rows, best

    def _similarities(self, sents: list, ctx: ContextIndex) -> tuple[list[float], list[int | None]]:
        """Max cosine similarity of each answer sentence to its lexical candidates, and the argmax."""
        cands = [best_sentences(tok, ctx, self.candidates) for _, tok in sents]
        if self.cache is None or not ctx.sentences:
            return [0.0] * len(sents), [c[0] if c else None for c in cands]
        pool = sorted({j for c in cands for j in c})
        texts = [s for s, _ in sents] + [ctx.sentences[j] for j in pool]
        vecs = self.cache.embed(texts, cache=[False] * len(sents) + [True] * len(pool))
        pos = {j: len(sents) + k for k, j in enumerate(pool)}
        sims: list[float] = []
        best: list[int | None] = []
        for i, c in enumerate(cands):
            scored = [(float(vecs[i] @ vecs[pos[j]]), j) for j in c]
            sim, j = max(scored) if scored else (0.0, None)
            sims.append(max(0.0, sim))
            best.append(j)
        return sims, best

    def _evidence(self, sent: str, row: list[float], ctx: ContextIndex, j: int | None) -> SentenceEvidence:
        # A sentence's own score uses the same combiner: for a one-sentence answer mean == min.
        s = combine(answer_features([row], [1.0]))
        return SentenceEvidence(
            sentence=sent,
            supported=s >= self.threshold,
            score=s,
            source_index=None if j is None else ctx.sentence_source[j],
            evidence=None if j is None else ctx.sentences[j],
        )
