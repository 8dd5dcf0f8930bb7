"""Explain a drift alarm (pure): cluster the current window and rank clusters against the reference.

Each current-window cluster is scored by how over-represented its region is in the current window
compared with the reference: reference rows are assigned to the nearest current centroid, and a
cluster's ``excess`` is its share of the current window minus its share of the reference. A new topic
makes a cluster with a large current share and a near-zero reference share, so it ranks first.

Rows with NaN or infinite values (a question with nothing to embed) are left out on both sides;
k-means and the 2-D projection are scikit-learn's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring.drift._stats import usable_rows


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
    """Spherical k-means (cosine): scikit-learn's k-means (k-means++ seeding) on unit-length rows.

    Args:
        x: ``(n, d)`` finite rows, ``n >= 1`` (normalised internally; zero rows stay zero).
        k: clusters (capped at the number of distinct rows).
        seed: random seed.
        iterations: Lloyd iterations at most.

    Returns:
        ``(centroids, assignment)``: ``(k, d)`` unit centroids and each row's cluster.
    """
    from sklearn.cluster import KMeans

    x = _normalise(x)
    k = max(1, min(k, len(np.unique(x, axis=0))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on near-duplicate rows: harmless here
        model = KMeans(n_clusters=k, n_init=1, max_iter=iterations, random_state=seed).fit(x)
    return _normalise(model.cluster_centers_), model.labels_.astype(np.int64)


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
        reference: ``(n_ref, D)`` reference embeddings (rows with NaN or inf are left out).
        current: ``(n_cur, D)`` current embeddings (likewise; ``members`` index the original rows).
        texts: the current rows' texts, for the examples (optional).
        k: clusters.
        representatives: members listed per cluster.
        seed: random seed.

    Returns:
        Clusters, most over-represented first (empty when the current window has no usable row).
    """
    rows = np.flatnonzero(usable_rows(current)) if len(current) else np.zeros(0, int)
    if len(rows) == 0:
        return []
    reference = np.asarray(reference)[usable_rows(reference)] if len(reference) else np.asarray(reference)
    cent, assign = kmeans(np.asarray(current)[rows], k, seed=seed)
    ref_assign = np.argmax(_normalise(reference) @ cent.T, axis=1) if len(reference) else np.array([], int)
    cur_unit = np.zeros((len(current), cent.shape[1]), np.float32)
    cur_unit[rows] = _normalise(np.asarray(current)[rows])
    clusters = []
    for c in range(len(cent)):
        members = rows[assign == c]
        if not len(members):
            continue
        cur_share = len(members) / len(rows)
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
    """2-D PCA coordinates of both windows (scikit-learn's PCA fitted on the pooled rows), for the plot.

    Rows with NaN or inf are dropped first; with fewer than 2 usable dimensions or rows the missing
    coordinates are 0.
    """
    from sklearn.decomposition import PCA

    reference = np.asarray(reference, np.float64)[usable_rows(reference)]
    current = np.asarray(current, np.float64)[usable_rows(current)]
    pooled = np.vstack([reference, current])
    coords = np.zeros((len(pooled), 2))
    dims = min(2, *pooled.shape)
    if dims:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # constant data: 0/0 variance ratios
            coords[:, :dims] = PCA(n_components=dims).fit_transform(pooled)
    return coords[: len(reference)], coords[len(reference) :]
