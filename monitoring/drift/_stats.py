"""Calibrated two-sample drift tests on plain arrays (no I/O).

Why not Evidently's decision: its defaults compare a statistic to a fixed threshold, so the false-alarm
rate grows or shrinks with the window size. Here every decision is a permutation test: the reference
and current rows are pooled, the labels are shuffled ``n_perm`` times, and the observed statistic is
ranked among the shuffled ones. Under "no drift" the rows are exchangeable, so ``P(p <= alpha) <= alpha``
at any window size (exactly ``alpha`` when ``(n_perm + 1) * alpha`` is an integer and there are no ties).

Rows are exchangeable only between conversations: the follow-ups of one conversation are about one
topic, so shuffling them one by one makes any window look drifted. Given ``groups`` (the conversation
of each row), the shuffles move whole conversations (a block permutation), which keeps the null exact.

Embeddings: PCA fitted on the *pooled* rows (a symmetric function of the pool, so the permutation
null stays exact), then two statistics that "Failing Loudly" (Rabanser et al., 2019) and the
nearest-neighbour literature (Schilling, 1986) found strong and cheap:

* ``ks_max``: the largest Kolmogorov-Smirnov distance over the PCA components (moves in the bulk);
* ``nn``: the share of k-nearest-neighbour pairs whose two ends carry the same label (a new or vanished
  topic makes tight single-label neighbourhoods). Neighbours tied at the k-th distance (duplicate
  questions are common in chat logs) share the remaining weight evenly, so ties carry no label order.

The two are combined by min-p over the same permutations (Westfall & Young), which keeps the
family-wise level of one test at ``alpha``; :func:`correct_for_run` then applies Holm's step-down
correction across the tests of one run, so the run as a whole raises a false alarm with probability
at most ``alpha``. Rows holding NaN or infinite values are left out (an empty message has no
embedding); large windows are subsampled to ``max_rows`` per side first. PCA and the neighbour search
are scikit-learn's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

#: Rows of the label matrix processed at once (bounds memory to ~chunk * N * 8 bytes).
_PERM_CHUNK = 64
#: Neighbour distances closer than this (absolute, in PCA units) count as tied.
_TIE_TOL = 1e-6


@functools.cache
def _threadpools() -> Any:
    """One threadpoolctl controller (scanning the loaded libraries costs ~15 ms, so it is done once)."""
    try:
        import sklearn.neighbors  # noqa: F401 - load its OpenMP runtime first, so the controller sees it
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    return ThreadpoolController()


def _single_threaded(fn: F) -> F:
    """Run ``fn`` with one BLAS and one OpenMP thread.

    Its matrices are small, and on a busy machine OpenBLAS and OpenMP threads spin-wait for each
    other (a 400 x 30 QR took 40 ms with two threads, 1 ms with one; a 60-point neighbour search
    took 150 ms).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        controller = _threadpools()
        limits: contextlib.AbstractContextManager = (
            controller.limit(limits=1) if controller is not None else contextlib.nullcontext()
        )
        with limits:
            return fn(*args, **kwargs)

    return cast(F, wrapper)


@dataclass(frozen=True)
class DriftTest:
    """One calibrated drift decision.

    Attributes:
        name: what was compared ("query_embedding", "answer_embedding", "features").
        statistic: evidence of drift, ``-log10`` of the smallest component p-value.
        threshold: the statistic's null quantile at the level this test is decided at.
        p_value: permutation p-value of the combined statistic (this test alone).
        alarm: ``run_p_value <= alpha`` (``p_value <= alpha`` until :func:`correct_for_run`).
        alpha: the configured false-alarm rate (of the whole run once corrected).
        n_reference: reference rows used (after dropping unusable rows and subsampling).
        n_current: current rows used.
        components: per-component statistic, threshold, p-value and adjusted p-value(s).
        run_p_value: Holm-adjusted p-value across the tests of the run (``p_value`` before).
        null: the combined statistic under each permutation (not serialised).
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
    run_p_value: float | None = None
    null: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "name": self.name,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "run_p_value": self.p_value if self.run_p_value is None else self.run_p_value,
            "alarm": self.alarm,
            "alpha": self.alpha,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "components": self.components,
        }


def usable_rows(x: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``x`` whose values are all finite (no NaN, no inf)."""
    x = np.asarray(x)
    if x.ndim == 1:
        return np.isfinite(x)
    return np.isfinite(x).all(axis=1) if x.shape[1] else np.ones(len(x), bool)


def _subsample_index(n: int, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= max_rows else np.sort(rng.choice(n, size=max_rows, replace=False))


def subsample_rows(x: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_rows`` rows of ``x`` drawn without replacement (all rows, in order, if fewer)."""
    return x if len(x) <= max_rows else x[_subsample_index(len(x), max_rows, rng)]


def pca_fit(x: np.ndarray, dims: int, seed: int = 0) -> Any:
    """scikit-learn's PCA with at most ``dims`` components, fitted on ``x`` (finite rows).

    Constant data (every row equal) is fine: its projection is all zeros.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    dims = max(1, min(dims, *x.shape))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: the ratio is 0/0, unused here
        return PCA(n_components=dims, random_state=seed).fit(x)


def pca_transform(x: np.ndarray, pca: Any) -> np.ndarray:
    """Project ``x`` on the components of :func:`pca_fit`."""
    return np.asarray(pca.transform(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def permutation_labels(
    n_ref: int,
    n_cur: int,
    n_perm: int,
    rng: np.random.Generator,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> np.ndarray:
    """A ``(n_perm + 1, n_ref + n_cur)`` boolean matrix: True marks "current"; row 0 is the observed split.

    Args:
        n_ref: reference rows (first in the pool).
        n_cur: current rows.
        n_perm: shuffles.
        rng: random generator.
        groups: the conversation of each pooled row; rows of one conversation on one side move
            together, so the number of current rows may differ between shuffles. None: rows move alone.
    """
    observed = np.concatenate([np.zeros(n_ref, bool), np.ones(n_cur, bool)])
    if groups is None:
        return np.stack([observed] + [rng.permutation(observed) for _ in range(n_perm)])
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    # A unit is (conversation, side): a conversation crossing the window boundary is two units.
    _, unit = np.unique(np.stack([codes.ravel(), observed.astype(np.int64)]), axis=1, return_inverse=True)
    unit = unit.ravel()
    unit_label = np.zeros(unit.max() + 1 if len(unit) else 0, bool)
    unit_label[unit] = observed
    return np.stack([observed] + [rng.permutation(unit_label)[unit] for _ in range(n_perm)])


def ks_statistics(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Two-sample KS distance of every column of ``values`` for every label row.

    Ties are handled exactly (the empirical CDFs are compared only where the pooled value changes) and
    non-finite values are left out of both samples, so features with missing values share one label
    matrix. Cross-checked against ``scipy.stats.ks_2samp`` in the tests.

    Args:
        values: ``(N, d)`` pooled values (NaN or inf = missing).
        labels: ``(R, N)`` booleans, True for "current".

    Returns:
        ``(R, d)`` KS distances (0 where a side has no value).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    values = np.where(np.isfinite(values), values, np.nan)
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


def _tie_weights(dist: np.ndarray, k: int) -> np.ndarray:
    """Weights of sorted neighbour distances: 1 below the k-th, the rest shared by those tied with it."""
    kth = dist[:, k - 1 : k]
    less = dist < kth - _TIE_TOL
    tied = np.abs(dist - kth) <= _TIE_TOL
    share = (k - less.sum(axis=1)) / np.maximum(tied.sum(axis=1), 1)
    return less + tied * share[:, None]


def knn_weights(z: np.ndarray, k: int, anchors: np.ndarray | None = None) -> Any:
    """The k-nearest-neighbour graph of ``anchors`` in ``z`` as a sparse ``(len(anchors), N)`` matrix.

    Each anchor's row sums to ``k``: weight 1 per neighbour closer than the k-th distance, and the
    neighbours tied at the k-th distance (duplicates) share the remaining weight evenly. A point is
    never its own neighbour. Built on scikit-learn's ``NearestNeighbors``.

    Args:
        z: ``(N, d)`` finite points.
        k: neighbours per anchor (capped at ``N - 1``).
        anchors: row indices whose neighbours are wanted (all rows when None).

    Returns:
        A ``scipy.sparse.csr_matrix`` of weights.
    """
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import NearestNeighbors

    z = np.asarray(z, dtype=np.float64)
    n = len(z)
    anchors = np.arange(n) if anchors is None else np.asarray(anchors)
    k = min(k, n - 1)
    if k < 1 or not len(anchors):
        return csr_matrix((len(anchors), n))
    fetch = min(2 * k + 1, n)  # room to see ties at the k-th distance
    index = NearestNeighbors(n_neighbors=fetch, algorithm="brute").fit(z)
    dist, idx = index.kneighbors(z[anchors])
    is_self = idx == anchors[:, None]
    is_self[~is_self.any(axis=1), -1] = True  # self not returned (many duplicates): drop the farthest
    dist = dist[~is_self].reshape(len(anchors), fetch - 1)
    idx = idx[~is_self].reshape(len(anchors), fetch - 1)
    weights = _tie_weights(dist, k)
    rows = np.repeat(np.arange(len(anchors)), fetch - 1)
    # Ties reaching past what was fetched (a big group of duplicates): fetch the whole tied ball.
    cut = np.flatnonzero(np.abs(dist[:, -1] - dist[:, k - 1]) <= _TIE_TOL) if fetch < n else np.zeros(0, int)
    keep = ~np.isin(rows, cut)
    r_parts, c_parts, w_parts = [rows[keep]], [idx.ravel()[keep]], [weights.ravel()[keep]]
    if len(cut):
        for row in cut:
            radius = dist[row, k - 1] + 2 * _TIE_TOL
            (ball_d,), (ball_i,) = index.radius_neighbors(z[anchors[row]][None, :], radius=radius)
            mine = ball_i != anchors[row]
            order = np.argsort(ball_d[mine], kind="stable")
            r_parts.append(np.full(order.size, row))
            c_parts.append(ball_i[mine][order])
            w_parts.append(_tie_weights(ball_d[mine][order][None, :], k)[0])
    graph = csr_matrix(
        (np.concatenate(w_parts), (np.concatenate(r_parts), np.concatenate(c_parts))),
        shape=(len(anchors), n),
    )
    return graph


def nn_same_label_share(anchors: np.ndarray, graph: Any, labels: np.ndarray) -> np.ndarray:
    """Weighted share of (anchor, neighbour) pairs with equal labels, for every label row: shape ``(R,)``.

    Args:
        anchors: the anchors' row indices (the rows of ``graph``).
        graph: neighbour weights from :func:`knn_weights`.
        labels: ``(R, N)`` booleans.
    """
    total = float(graph.sum())
    out = np.empty(labels.shape[0])
    if total == 0:
        out[:] = 0.0
        return out
    for start in range(0, labels.shape[0], _PERM_CHUNK):
        lab = labels[start : start + _PERM_CHUNK].astype(np.float64)
        cur_weight = np.asarray(graph @ lab.T)  # (A, r): weight of "current" neighbours per anchor
        row_weight = np.asarray(graph.sum(axis=1))  # (A, 1)
        anchor_cur = lab[:, anchors].T
        same = anchor_cur * cur_weight + (1 - anchor_cur) * (row_weight - cur_weight)
        out[start : start + _PERM_CHUNK] = same.sum(axis=0) / total
    # Equal shares must compare equal: summation order differs between label rows.
    return np.round(out, 12)


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
    evidence, adjusted = _min_p_evidence(stats)
    n_rows = stats.shape[0]
    p_value = float(np.count_nonzero(evidence >= evidence[0]) / n_rows)
    return float(evidence[0]), _threshold(evidence[1:], alpha), p_value, adjusted


def _min_p_evidence(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pvals = column_p_values(stats)
    min_p = pvals.min(axis=1)
    n_rows = stats.shape[0]
    adjusted = np.array([np.count_nonzero(min_p <= p) / n_rows for p in pvals[0]])
    return -np.log10(min_p), adjusted


def _threshold(null: np.ndarray, level: float) -> float:
    """The ``1 - level`` quantile of the null statistics (0 when there is none)."""
    return float(np.quantile(null, 1.0 - level)) if len(null) else 0.0


def _components(names: list[str], stats: np.ndarray, alpha: float, adjusted: np.ndarray) -> dict:
    pvals = column_p_values(stats)[0]
    return {
        name: {
            "statistic": float(stats[0, j]),
            "threshold": _threshold(stats[1:, j], alpha),
            "p_value": float(pvals[j]),
            "adjusted_p_value": float(adjusted[j]),
        }
        for j, name in enumerate(names)
    }


def _decide(
    name: str, columns: list[str], stats: np.ndarray, alpha: float, sizes: tuple[int, int]
) -> DriftTest:
    """Combine per-component permutation statistics (row 0 observed) into one calibrated decision."""
    statistic, threshold, p_value, adjusted = min_p_combine(stats, alpha)
    evidence, _ = _min_p_evidence(stats)
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
        null=evidence[1:],
    )


def _usable(
    reference: np.ndarray, current: np.ndarray, groups: Sequence[Any] | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    ok_ref, ok_cur = usable_rows(reference), usable_rows(current)
    if groups is None:
        return reference[ok_ref], current[ok_cur], None
    groups = np.asarray(groups)
    if len(groups) != len(reference) + len(current):
        raise ValueError(f"groups has {len(groups)} entries for {len(reference) + len(current)} rows")
    return reference[ok_ref], current[ok_cur], groups[np.concatenate([ok_ref, ok_cur])]


def _subsample_pair(
    ref: np.ndarray, cur: np.ndarray, groups: np.ndarray | None, max_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    i_ref = _subsample_index(len(ref), max_rows, rng)
    i_cur = _subsample_index(len(cur), max_rows, rng)
    if groups is not None:
        groups = np.concatenate([groups[: len(ref)][i_ref], groups[len(ref) :][i_cur]])
    return ref[i_ref], cur[i_cur], groups


@_single_threaded
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
    groups: Sequence[Any] | np.ndarray | None = None,
) -> DriftTest:
    """Calibrated drift test between two embedding windows (rows are vectors).

    Args:
        reference: ``(n_ref, D)`` reference embeddings; rows with NaN or inf are left out.
        current: ``(n_cur, D)`` current embeddings; likewise.
        name: label of the result.
        alpha: false-alarm rate.
        n_perm: label permutations (199 gives p-values in steps of 0.005, exact at alpha 0.05).
        dims: PCA components kept.
        k: neighbours per point for the nearest-neighbour statistic.
        max_rows: rows kept per side (subsampled at random above it).
        nn_anchors: points whose neighbourhoods enter the nearest-neighbour statistic.
        pca_rows: pooled rows the PCA is fitted on.
        seed: random seed (subsampling and permutations).
        groups: ``(n_ref + n_cur,)`` conversation of each row, reference rows first; rows of one
            conversation move together in the permutations. None: every row is its own conversation.

    Returns:
        The decision with the ``ks_max`` and ``nn`` components.

    Raises:
        ValueError: fewer than 2 usable rows on a side, or ``groups`` of the wrong length.
    """
    rng = np.random.default_rng(seed)
    ref, cur, groups = _usable(np.asarray(reference), np.asarray(current), groups)
    if len(ref) < 2 or len(cur) < 2:
        raise ValueError(
            f"need at least 2 usable rows per window, got {len(ref)} reference, {len(cur)} current"
        )
    # Subsample before converting: a 100k-row float64 copy costs more than the test itself.
    ref, cur, groups = _subsample_pair(ref, cur, groups, max_rows, rng)
    pooled = np.vstack([ref, cur]).astype(np.float64)
    # PCA on a label-blind subsample of the pool: symmetric in the labels, so the null stays exact.
    z = pca_transform(pooled, pca_fit(subsample_rows(pooled, pca_rows, rng), dims, seed=seed))
    labels = permutation_labels(len(ref), len(cur), n_perm, rng, groups=groups)
    ks = ks_statistics(z, labels).max(axis=1)
    # Neighbours of a label-blind random subset of anchors: same validity, bounded cost.
    anchors = np.sort(rng.choice(len(z), size=min(len(z), nn_anchors), replace=False))
    nn = nn_same_label_share(anchors, knn_weights(z, k, anchors), labels)
    return _decide(name, ["ks_max", "nn"], np.column_stack([ks, nn]), alpha, (len(ref), len(cur)))


def _finite(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def _varies(a: np.ndarray, b: np.ndarray) -> bool:
    both = np.concatenate([a, b])
    both = both[~np.isnan(both)]
    return both.size > 1 and bool(np.ptp(both) > 0)


@_single_threaded
def feature_drift_test(
    reference: Mapping[str, np.ndarray],
    current: Mapping[str, np.ndarray],
    *,
    name: str = "features",
    alpha: float = 0.05,
    n_perm: int = 199,
    max_rows: int = 5_000,
    seed: int = 0,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> DriftTest:
    """Calibrated drift test over scalar features, one KS component per feature (NaN/inf = missing).

    A feature is reported drifted when its adjusted p-value is at most ``alpha``; the family-wise
    false-alarm rate over all features stays at ``alpha``. Features missing or constant in both
    windows are skipped (they carry no evidence); with none left the result has no components and
    ``p_value`` 1.

    Args:
        reference: feature name -> reference values (one per row).
        current: feature name -> current values.
        name: label of the result.
        alpha: false-alarm rate.
        n_perm: label permutations.
        max_rows: rows kept per side.
        seed: random seed.
        groups: conversation of each pooled row (reference first), as in :func:`embedding_drift_test`.

    Returns:
        The decision; ``components`` holds one entry per tested feature.
    """
    rng = np.random.default_rng(seed)
    ref_f = {f: _finite(reference[f]) for f in sorted(set(reference) & set(current))}
    cur_f = {f: _finite(current[f]) for f in ref_f}
    names = [f for f in ref_f if _varies(ref_f[f], cur_f[f])]
    n_ref = len(next(iter(ref_f.values()))) if ref_f else 0
    n_cur = len(next(iter(cur_f.values()))) if cur_f else 0
    if not names:
        return DriftTest(name, 0.0, 0.0, 1.0, False, alpha, n_ref, n_cur, {})
    ref = np.column_stack([ref_f[f] for f in names])
    cur = np.column_stack([cur_f[f] for f in names])
    ref, cur, groups = _subsample_pair(
        ref, cur, None if groups is None else np.asarray(groups), max_rows, rng
    )
    # One permutation per row for all features: the min-p null keeps the features' dependence.
    labels = permutation_labels(len(ref), len(cur), n_perm, rng, groups=groups)
    matrix = ks_statistics(np.vstack([ref, cur]), labels)
    return _decide(name, names, matrix, alpha, (len(ref), len(cur)))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order (cross-checked against statsmodels).

    The i-th smallest p-value is multiplied by ``m - i`` (0-based), made non-decreasing, capped at 1.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if not p.size:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(stepped, 1.0)
    return out


def correct_for_run(tests: Sequence[DriftTest], alpha: float) -> list[DriftTest]:
    """Decide the tests of one run together, so the run's false-alarm rate is ``alpha`` (Holm).

    Each test's ``run_p_value`` is its Holm-adjusted p-value over the run's tests and ``alarm`` is
    ``run_p_value <= alpha``. A component (a feature) gets ``run_adjusted_p_value``: its adjusted
    p-value times its test's Holm multiplier, never below its test's own, so a flagged component
    always sits in an alarmed test. The threshold is re-quantiled at the level the test is decided at.

    Args:
        tests: the decisions of one run, each computed at level ``alpha`` on its own.
        alpha: the run's false-alarm rate.

    Returns:
        The tests, in the same order, corrected.
    """
    adjusted = holm([t.p_value for t in tests])
    order = np.argsort([t.p_value for t in tests], kind="stable")
    multiplier = np.empty(len(tests))
    multiplier[order] = len(tests) - np.arange(len(tests))
    out = []
    for t, run_p, mult in zip(tests, adjusted, multiplier, strict=True):
        run_p = float(min(1.0, run_p))
        components = {
            c: {**v, "run_adjusted_p_value": max(run_p, min(1.0, float(v["adjusted_p_value"]) * mult))}
            for c, v in t.components.items()
        }
        threshold = _threshold(t.null, alpha / mult) if t.null is not None else t.threshold
        out.append(
            dataclasses.replace(
                t,
                run_p_value=run_p,
                alarm=run_p <= alpha,
                alpha=alpha,
                components=components,
                threshold=threshold,
            )
        )
    return out
