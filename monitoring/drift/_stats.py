"""Calibrated two-sample drift tests on plain arrays (no I/O).

Why not Evidently's decision: its defaults compare a statistic to a fixed threshold, so the false-alarm
rate grows or shrinks with the window size. Here every decision is a permutation test: the reference
and current rows are pooled, the labels are shuffled ``n_perm`` times, and the observed statistic is
ranked among the shuffled ones. Under "no drift" the rows are exchangeable, so ``P(p <= alpha) <= alpha``
at any window size (exactly ``alpha`` when ``(n_perm + 1) * alpha`` is an integer and there are no ties).

Embeddings: PCA fitted on the *pooled* rows (a symmetric function of the pool, so the permutation
null stays exact), then two statistics that "Failing Loudly" (Rabanser et al., 2019) and the
nearest-neighbour literature (Schilling, 1986) found strong and cheap:

* ``ks_max``: the largest Kolmogorov-Smirnov distance over the PCA components (moves in the bulk);
* ``nn``: the share of k-nearest-neighbour pairs whose two ends carry the same label (a new or vanished
  topic makes tight single-label neighbourhoods).

The two are combined by min-p over the same permutations (Westfall & Young), which keeps the
family-wise level at ``alpha``. Large windows are subsampled to ``max_rows`` per side first.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

#: Rows of the label matrix processed at once (bounds memory to ~chunk * N * 8 bytes).
_PERM_CHUNK = 64


def _single_threaded_blas(fn: F) -> F:
    """Run ``fn`` with one BLAS thread.

    Its matrices are small, and on a busy machine OpenBLAS threads spin-wait for each other
    (a 400 x 30 QR took 40 ms with two threads, 1 ms with one).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            from threadpoolctl import threadpool_limits

            limits: contextlib.AbstractContextManager = threadpool_limits(1, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (the drift extra)
            limits = contextlib.nullcontext()
        with limits:
            return fn(*args, **kwargs)

    return cast(F, wrapper)


@dataclass(frozen=True)
class DriftTest:
    """One calibrated drift decision.

    Attributes:
        name: what was compared ("query_embedding", "answer_embedding", "features").
        statistic: evidence of drift, ``-log10`` of the smallest component p-value.
        threshold: the statistic's ``1 - alpha`` quantile under the permutation null.
        p_value: permutation p-value of the combined statistic.
        alarm: ``p_value <= alpha``.
        alpha: the configured false-alarm rate.
        n_reference: reference rows used (after subsampling).
        n_current: current rows used (after subsampling).
        components: per-component statistic, threshold, p-value and adjusted p-value.
    """

    name: str
    statistic: float
    threshold: float
    p_value: float
    alarm: bool
    alpha: float
    n_reference: int
    n_current: int
    components: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "name": self.name,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "alarm": self.alarm,
            "alpha": self.alpha,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "components": self.components,
        }


def subsample_rows(x: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_rows`` rows of ``x`` drawn without replacement (all rows, in order, if fewer)."""
    if len(x) <= max_rows:
        return x
    return x[np.sort(rng.choice(len(x), size=max_rows, replace=False))]


def pca_fit(
    x: np.ndarray, dims: int, seed: int = 0, power_iterations: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the top ``dims`` principal axes (as columns) of ``x``, by randomized subspace iteration.

    Only the top few axes are needed, so a randomized range finder (Halko et al., 2011) on ``x`` costs
    ``O(n * D * dims)`` instead of a full ``D x D`` eigendecomposition, which was the slowest step.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    dims = min(dims, *centred.shape)
    width = min(dims + 10, *centred.shape)
    basis = centred @ np.random.default_rng(seed).normal(size=(centred.shape[1], width))
    for _ in range(power_iterations):  # sharpen the spectrum: q = 4 is plenty for the top axes
        basis, _ = np.linalg.qr(basis)
        basis = centred @ (centred.T @ basis)
    basis, _ = np.linalg.qr(basis)
    _, _, vt = np.linalg.svd(basis.T @ centred, full_matrices=False)
    axes = vt[:dims].T
    # Fix each axis' sign so results do not flip between runs on the same data.
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(dims)])
    return mean, axes * np.where(signs == 0, 1.0, signs)


def pca_transform(x: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Project ``x`` on the axes of :func:`pca_fit`."""
    return (np.asarray(x, dtype=np.float64) - mean) @ axes


def permutation_labels(n_ref: int, n_cur: int, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(n_perm + 1, n_ref + n_cur)`` boolean matrix: True marks "current"; row 0 is the observed split."""
    observed = np.concatenate([np.zeros(n_ref, bool), np.ones(n_cur, bool)])
    rows = [observed] + [rng.permutation(observed) for _ in range(n_perm)]
    return np.stack(rows)


def ks_statistics(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Two-sample KS distance of every column of ``values`` for every label row.

    Ties are handled exactly (the empirical CDFs are compared only where the pooled value changes) and
    NaNs are left out of both samples, so features with missing values share one label matrix.

    Args:
        values: ``(N, d)`` pooled values (NaN = missing).
        labels: ``(R, N)`` booleans, True for "current".

    Returns:
        ``(R, d)`` KS distances (0 where a side has no value).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    out = np.zeros((labels.shape[0], values.shape[1]))
    for j in range(values.shape[1]):
        order = np.argsort(values[:, j], kind="stable")  # NaNs sort last
        n_valid = int(np.count_nonzero(~np.isnan(values[:, j])))
        if n_valid < 2:
            continue
        order = order[:n_valid]
        sorted_vals = values[order, j]
        boundary = np.append(sorted_vals[1:] != sorted_vals[:-1], True)
        seen = np.arange(1, n_valid + 1)
        for start in range(0, labels.shape[0], _PERM_CHUNK):
            cur_cum = np.cumsum(labels[start : start + _PERM_CHUNK][:, order], axis=1, dtype=np.int64)
            n_cur = cur_cum[:, -1:].astype(np.float64)
            n_ref = n_valid - n_cur
            with np.errstate(divide="ignore", invalid="ignore"):
                diff = np.abs((seen - cur_cum) / n_ref - cur_cum / n_cur)
            diff = np.where((n_cur > 0) & (n_ref > 0), diff, 0.0)
            out[start : start + _PERM_CHUNK, j] = np.max(diff * boundary, axis=1)
    return out


def knn_indices(z: np.ndarray, k: int, anchors: np.ndarray | None = None, chunk: int = 1024) -> np.ndarray:
    """Indices of the ``k`` nearest other rows of ``z`` (Euclidean) for each anchor row.

    Args:
        z: ``(N, d)`` points.
        k: neighbours per anchor.
        anchors: row indices whose neighbours are wanted (all rows when None).
        chunk: anchors per distance block.

    Returns:
        ``(len(anchors), k)`` neighbour indices into ``z``.
    """
    z = np.asarray(z, dtype=np.float32)
    anchors = np.arange(len(z)) if anchors is None else np.asarray(anchors)
    k = min(k, len(z) - 1)
    sq = np.einsum("ij,ij->i", z, z)
    out = np.empty((len(anchors), k), dtype=np.int64)
    for start in range(0, len(anchors), chunk):
        idx = anchors[start : start + chunk]
        dist = sq[idx, None] - 2.0 * z[idx] @ z.T + sq[None, :]
        dist[np.arange(len(idx)), idx] = np.inf  # a point is not its own neighbour
        out[start : start + chunk] = np.argpartition(dist, k - 1, axis=1)[:, :k]
    return out


def nn_same_label_share(anchors: np.ndarray, neighbours: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of (anchor, neighbour) pairs with equal labels, for every label row: shape ``(R,)``."""
    out = np.empty(labels.shape[0])
    for start in range(0, labels.shape[0], _PERM_CHUNK):
        lab = labels[start : start + _PERM_CHUNK]
        out[start : start + _PERM_CHUNK] = (lab[:, neighbours] == lab[:, anchors, None]).mean(axis=(1, 2))
    return out


def column_p_values(stats: np.ndarray) -> np.ndarray:
    """For every row r and column j, the share of rows whose statistic is >= ``stats[r, j]``.

    Row 0 is the observed statistic, so ``column_p_values(stats)[0]`` are the permutation p-values.
    """
    n_rows = stats.shape[0]
    out = np.empty_like(stats, dtype=np.float64)
    for j in range(stats.shape[1]):
        ordered = np.sort(stats[:, j])
        out[:, j] = (n_rows - np.searchsorted(ordered, stats[:, j], side="left")) / n_rows
    return out


def min_p_combine(stats: np.ndarray, alpha: float) -> tuple[float, float, float, np.ndarray]:
    """Combine columns of permutation statistics by min-p (larger statistic = more drift).

    Args:
        stats: ``(R, m)`` statistics; row 0 observed, the rest under the permutation null.
        alpha: false-alarm rate used for the reported threshold.

    Returns:
        ``(statistic, threshold, p_value, adjusted)``: ``-log10`` of the observed min-p, its ``1 - alpha``
        null quantile, the combined p-value, and each column's single-step adjusted p-value.
    """
    pvals = column_p_values(stats)
    min_p = pvals.min(axis=1)
    n_rows = stats.shape[0]
    p_value = float(np.count_nonzero(min_p <= min_p[0]) / n_rows)
    adjusted = np.array([np.count_nonzero(min_p <= p) / n_rows for p in pvals[0]])
    evidence = -np.log10(min_p)
    threshold = float(np.quantile(evidence[1:], 1.0 - alpha)) if n_rows > 1 else float("inf")
    return float(evidence[0]), threshold, p_value, adjusted


def _components(names: list[str], stats: np.ndarray, alpha: float, adjusted: np.ndarray) -> dict:
    pvals = column_p_values(stats)[0]
    return {
        name: {
            "statistic": float(stats[0, j]),
            "threshold": float(np.quantile(stats[1:, j], 1.0 - alpha)),
            "p_value": float(pvals[j]),
            "adjusted_p_value": float(adjusted[j]),
        }
        for j, name in enumerate(names)
    }


@_single_threaded_blas
def _decide(
    name: str, columns: list[str], stats: np.ndarray, alpha: float, sizes: tuple[int, int]
) -> DriftTest:
    """Combine per-component permutation statistics (row 0 observed) into one calibrated decision."""
    statistic, threshold, p_value, adjusted = min_p_combine(stats, alpha)
    return DriftTest(
        name=name,
        statistic=statistic,
        threshold=threshold,
        p_value=p_value,
        alarm=p_value <= alpha,
        alpha=alpha,
        n_reference=sizes[0],
        n_current=sizes[1],
        components=_components(columns, stats, alpha, adjusted),
    )


def embedding_drift_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    name: str = "embedding",
    alpha: float = 0.05,
    n_perm: int = 199,
    dims: int = 20,
    k: int = 10,
    max_rows: int = 5_000,
    nn_anchors: int = 2_000,
    pca_rows: int = 4_000,
    seed: int = 0,
) -> DriftTest:
    """Calibrated drift test between two embedding windows (rows are vectors).

    Args:
        reference: ``(n_ref, D)`` reference embeddings.
        current: ``(n_cur, D)`` current embeddings.
        name: label of the result.
        alpha: false-alarm rate.
        n_perm: label permutations (199 gives p-values in steps of 0.005, exact at alpha 0.05).
        dims: PCA components kept.
        k: neighbours per point for the nearest-neighbour statistic.
        max_rows: rows kept per side (subsampled at random above it).
        nn_anchors: points whose neighbourhoods enter the nearest-neighbour statistic.
        pca_rows: pooled rows the PCA is fitted on.
        seed: random seed (subsampling and permutations).

    Returns:
        The decision with the ``ks_max`` and ``nn`` components.
    """
    rng = np.random.default_rng(seed)
    # Subsample before converting: a 100k-row float64 copy costs more than the test itself.
    ref = subsample_rows(np.asarray(reference), max_rows, rng).astype(np.float64)
    cur = subsample_rows(np.asarray(current), max_rows, rng).astype(np.float64)
    if len(ref) < 2 or len(cur) < 2:
        raise ValueError(f"need at least 2 rows per window, got {len(ref)} reference, {len(cur)} current")
    pooled = np.vstack([ref, cur])
    # PCA on a label-blind subsample of the pool: symmetric in the labels, so the null stays exact.
    mean, axes = pca_fit(subsample_rows(pooled, pca_rows, rng), dims, seed=seed)
    z = pca_transform(pooled, mean, axes)
    labels = permutation_labels(len(ref), len(cur), n_perm, rng)
    ks = ks_statistics(z, labels).max(axis=1)
    # Neighbours of a label-blind random subset of anchors: same validity, bounded cost.
    anchors = np.sort(rng.choice(len(z), size=min(len(z), nn_anchors), replace=False))
    nn = nn_same_label_share(anchors, knn_indices(z, k, anchors), labels)
    return _decide(name, ["ks_max", "nn"], np.column_stack([ks, nn]), alpha, (len(ref), len(cur)))


def _varies(a: np.ndarray, b: np.ndarray) -> bool:
    both = np.concatenate([np.asarray(a, float), np.asarray(b, float)])
    both = both[~np.isnan(both)]
    return both.size > 1 and bool(np.ptp(both) > 0)


@_single_threaded_blas
def feature_drift_test(
    reference: Mapping[str, np.ndarray],
    current: Mapping[str, np.ndarray],
    *,
    name: str = "features",
    alpha: float = 0.05,
    n_perm: int = 199,
    max_rows: int = 5_000,
    seed: int = 0,
) -> DriftTest:
    """Calibrated drift test over scalar features, one KS component per feature (NaN = missing).

    A feature is reported drifted when its adjusted p-value is at most ``alpha``; the family-wise
    false-alarm rate over all features stays at ``alpha``. Features missing or constant in both
    windows are skipped (constant features carry no evidence).

    Args:
        reference: feature name -> reference values.
        current: feature name -> current values.
        name: label of the result.
        alpha: false-alarm rate.
        n_perm: label permutations.
        max_rows: rows kept per side.
        seed: random seed.

    Returns:
        The decision; ``components`` holds one entry per tested feature.
    """
    rng = np.random.default_rng(seed)
    names = [f for f in sorted(set(reference) & set(current)) if _varies(reference[f], current[f])]
    if not names:
        return DriftTest(name, 0.0, float("inf"), 1.0, False, alpha, 0, 0, {})
    ref = subsample_rows(np.column_stack([np.asarray(reference[f], float) for f in names]), max_rows, rng)
    cur = subsample_rows(np.column_stack([np.asarray(current[f], float) for f in names]), max_rows, rng)
    # One permutation per row for all features: the min-p null keeps the features' dependence.
    labels = permutation_labels(len(ref), len(cur), n_perm, rng)
    matrix = ks_statistics(np.vstack([ref, cur]), labels)
    return _decide(name, names, matrix, alpha, (len(ref), len(cur)))
