"""Explain a drift alarm (pure): cluster the current window and rank clusters against the reference.

Each current-window cluster is scored by how over-represented its region is in the current window
compared with the reference: reference rows are assigned to the nearest current centroid, and a
cluster's ``excess`` is its share of the current window minus its share of the reference. A new topic
makes a cluster with a large current share and a near-zero reference share, so it ranks first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Cluster:
    """One cluster of the current window.

    Attributes:
        rank: 1 = most over-represented against the reference.
        size: current rows in the cluster.
        current_share: ``size / n_current``.
        reference_share: share of reference rows nearest to this cluster's centroid.
        excess: ``current_share - reference_share`` (the ranking score).
        members: row indices into the current window.
        representatives: indices of the members closest to the centroid, closest first.
        examples: representative texts, when texts were given.
    """

    rank: int
    size: int
    current_share: float
    reference_share: float
    excess: float
    members: list[int]
    representatives: list[int]
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "rank": self.rank,
            "size": self.size,
            "current_share": self.current_share,
            "reference_share": self.reference_share,
            "excess": self.excess,
            "members": self.members,
            "representatives": self.representatives,
            "examples": self.examples,
        }


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (cosine) with k-means++ seeding.

    Args:
        x: ``(n, d)`` rows (normalised internally).
        k: clusters (capped at ``n``).
        seed: random seed.
        iterations: Lloyd iterations at most.

    Returns:
        ``(centroids, assignment)``: ``(k, d)`` unit centroids and each row's cluster.
    """
    x = _normalise(x)
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(x)))
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        dist = np.clip(1.0 - np.max(x @ np.array(centroids).T, axis=1), 0.0, None)
        probs = dist / dist.sum() if dist.sum() > 0 else None
        centroids.append(x[rng.choice(len(x), p=probs)])
    cent = np.array(centroids)
    assign = np.zeros(len(x), dtype=np.int64)
    for step in range(iterations):
        new_assign = np.argmax(x @ cent.T, axis=1)
        if step > 0 and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        for c in range(k):
            members = x[assign == c]
            if len(members):
                cent[c] = members.mean(axis=0)
        cent = _normalise(cent)
    return cent, assign


def explain_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    texts: Sequence[str] | None = None,
    k: int = 8,
    representatives: int = 5,
    seed: int = 0,
) -> list[Cluster]:
    """Cluster ``current`` and rank clusters by how far they are from ``reference``.

    Args:
        reference: ``(n_ref, D)`` reference embeddings.
        current: ``(n_cur, D)`` current embeddings.
        texts: the current rows' texts, for the examples (optional).
        k: clusters.
        representatives: members listed per cluster.
        seed: random seed.

    Returns:
        Clusters, most over-represented first (empty when the current window is empty).
    """
    if len(current) == 0:
        return []
    cent, assign = kmeans(current, k, seed=seed)
    ref_assign = np.argmax(_normalise(reference) @ cent.T, axis=1) if len(reference) else np.array([], int)
    cur_unit = _normalise(current)
    clusters = []
    for c in range(len(cent)):
        members = np.flatnonzero(assign == c)
        if not len(members):
            continue
        cur_share = len(members) / len(current)
        ref_share = float(np.mean(ref_assign == c)) if len(ref_assign) else 0.0
        closest = members[np.argsort(-(cur_unit[members] @ cent[c]))[:representatives]]
        clusters.append((cur_share - ref_share, cur_share, ref_share, members, closest))
    clusters.sort(key=lambda item: -item[0])
    return [
        Cluster(
            rank=i + 1,
            size=len(members),
            current_share=cur_share,
            reference_share=ref_share,
            excess=excess,
            members=members.tolist(),
            representatives=closest.tolist(),
            examples=[texts[j] for j in closest] if texts is not None else [],
        )
        for i, (excess, cur_share, ref_share, members, closest) in enumerate(clusters)
    ]


def projection_2d(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA coordinates of both windows (axes fitted on the pooled rows), for the plot."""
    pooled = np.vstack([reference, current]).astype(np.float64)
    mean = pooled.mean(axis=0)
    _, _, vt = np.linalg.svd(pooled - mean, full_matrices=False)
    coords = (pooled - mean) @ vt[:2].T
    return coords[: len(reference)], coords[len(reference) :]
