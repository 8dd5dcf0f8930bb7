"""Reciprocal rank fusion (pure): merge the dense and the BM25 rankings into one.

RRF (Cormack, Clarke and Buettcher, SIGIR 2009) scores a document by the sum over rankings of
``weight / (k + rank)`` with 1-based ranks; documents absent from a ranking get nothing from it.
It needs no score normalisation, which is why it suits a cosine ranking beside a BM25 one whose
scores have no fixed scale. ``k = 60`` is the paper's constant (``RAGLOOP_RRF_K``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

#: The RRF constant of the original paper.
DEFAULT_RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[T]], k: int = DEFAULT_RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[T, float]]:
    """Fuse rankings (best first) into one list of ``(item, rrf score)``, best first.

    Args:
        rankings: Each a sequence of item ids, best first; an id repeated within one ranking counts
            at its first (best) rank only.
        k: The RRF constant (> 0); larger values flatten the advantage of top ranks.
        weights: One weight per ranking (default 1.0 each).

    Returns:
        Every item of any ranking with its score ``sum(w / (k + rank))``. Ties are broken by the
        best rank the item reached in any ranking, then by the order of the rankings.

    Raises:
        ValueError: ``k`` is not positive, or ``weights`` does not match ``rankings``.
    """
    if k <= 0:
        raise ValueError(f"the RRF constant k must be positive, got {k}")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[T, float] = {}
    best: dict[T, tuple[int, int]] = {}
    for which, (ranking, weight) in enumerate(zip(rankings, weights, strict=True)):
        seen: set[T] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            best[item] = min(best.get(item, (rank, which)), (rank, which))
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]]))


def repair_ranking(
    ranked: Sequence[tuple[T, float]], rescored: Mapping[T, float], depth: int
) -> list[tuple[T, float]]:
    """An approximate ranking with the items it missed put back where their exact score places them.

    Chroma's dense search is approximate (HNSW): it can miss a chunk whose cosine beats every hit it
    returned (a chunk just uploaded, or one in a sparse corner of the space such as a note about a
    product name the embedder never saw). When BM25 finds such a chunk, its exact cosine (from its
    stored embedding) is known, and the dense ranking it should have been part of can be repaired
    before fusion: otherwise RRF sees it in one ranking only and chunks that both rankings hold at
    middling ranks outvote it (issue 13: "How do I restart the Zorblax service?" fused three
    Logging Cookbook chunks at cosine 0.32-0.38 above the uploaded note at 0.63, and was refused).

    Args:
        ranked: ``(item, score)`` from the approximate search, best first.
        rescored: Exact scores of further items (items already in ``ranked`` are ignored).
        depth: Items kept (the depth the approximate search was asked for).

    Returns:
        ``ranked`` and ``rescored`` merged by score, best first, ``depth`` at most; ties keep
        ``ranked``'s items first. With an exact search the result is ``ranked[:depth]`` unchanged
        whenever ``rescored`` holds only items the search ranked below ``depth``.
    """
    seen = {item for item, _ in ranked}
    merged = list(ranked) + [(item, s) for item, s in rescored.items() if item not in seen]
    order = sorted(range(len(merged)), key=lambda i: (-merged[i][1], i))
    return [merged[i] for i in order[: max(depth, 0)]]
