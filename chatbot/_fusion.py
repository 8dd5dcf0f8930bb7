"""Retrieval for a follow-up whose rewrite was rejected: search with each query, fuse the rankings.

When the condensed question fails its checks (``chatbot._rewrite``), no single query is safe: the
previous question plus the message ("How do I convert a string to a number? and the other way
round?") carries an elliptical follow-up's topic, but drags the old topic into one that changes
it ("Why doesn't list.sort() return the sorted list? so how do I sort one list by the values of
another?"), where the message alone does better. Searching with both and fusing the two rankings
with reciprocal rank fusion keeps what each finds. Measured on the 68 follow-up conversations of
``eval/data/faq_followups.jsonl`` against the FAQ index (hybrid, top 3, no LLM): the message alone
0.78, previous question plus message 0.76, both fused 0.87 (``bench/bench_answers_language.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

#: Hits taken from each query's ranking before fusing (the fused top k comes from these).
FUSION_DEPTH = 10


def search_queries(retriever: Any, queries: Sequence[str], k: int) -> tuple[Any, list[Any], float]:
    """The top ``k`` chunks for ``queries``: one search, or several fused by reciprocal rank.

    Args:
        retriever: anything with ``search(query, k=...)`` returning ``query_embedding``, ``chunks``
            (each with ``chunk_id`` and ``score``, best first) and ``retrieval_ms``.
        queries: one or more queries, the first the turn's question (its embedding is the turn's).
        k: chunks wanted.

    Returns:
        (the first query's embedding, the chunks best first, the milliseconds all searches took).
        A fused chunk's ``score`` is its best dense score over the queries, so the relevance
        threshold keeps any chunk one query found relevant.

    Raises:
        ValueError: no query.
    """
    from retrieval import reciprocal_rank_fusion

    if not queries:
        raise ValueError("no query to search")
    if len(queries) == 1:
        one = retriever.search(queries[0], k=k)
        return one.query_embedding, list(one.chunks), one.retrieval_ms
    started = time.perf_counter()
    results = [retriever.search(q, k=max(k, FUSION_DEPTH)) for q in queries]
    best: dict[str, Any] = {}
    for result in results:
        for chunk in result.chunks:
            seen = best.get(chunk.chunk_id)
            if seen is None or chunk.score > seen.score:
                best[chunk.chunk_id] = chunk
    fused = reciprocal_rank_fusion([[c.chunk_id for c in r.chunks] for r in results])[:k]
    chunks = [_with_fused_score(best[cid], score) for cid, score in fused]
    return results[0].query_embedding, chunks, (time.perf_counter() - started) * 1000.0


def _with_fused_score(chunk: Any, score: float) -> Any:
    if dataclasses.is_dataclass(chunk) and hasattr(chunk, "rrf_score"):
        return dataclasses.replace(chunk, rrf_score=score)  # type: ignore[type-var]
    return chunk
