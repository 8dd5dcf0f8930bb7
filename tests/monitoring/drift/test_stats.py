"""Known values of the pure drift statistics on tiny inputs, and their calibration on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.drift._stats import (
    column_p_values,
    embedding_drift_test,
    feature_drift_test,
    knn_weights,
    ks_statistics,
    min_p_combine,
    nn_same_label_share,
    pca_fit,
    pca_transform,
    permutation_labels,
)


def test_ks_statistic_matches_the_textbook_value():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    labels = np.array([[False, False, False, True, True, True]])  # reference {1,2,3}, current {4,5,6}
    assert ks_statistics(values, labels)[0, 0] == pytest.approx(1.0)
    interleaved = np.array([[False, True, False, True, False, True]])
    assert ks_statistics(values, interleaved)[0, 0] == pytest.approx(1 / 3)


def test_ks_handles_ties_and_nans():
    # reference {0, 0, 1}, current {0, 1, 1}: ECDFs at 0 are 2/3 and 1/3 -> D = 1/3 (not 2/3 from tie order).
    values = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    labels = np.array([[False, False, False, True, True, True]])
    assert ks_statistics(values, labels)[0, 0] == pytest.approx(1 / 3)
    with_nan = np.array([0.0, 0.0, np.nan, 1.0, 1.0, np.nan])
    assert ks_statistics(with_nan, labels)[0, 0] == pytest.approx(1.0)  # {0,0} vs {1,1}


def test_column_p_values_and_min_p():
    stats = np.array([[5.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])  # row 0 observed
    p = column_p_values(stats)
    assert p[0].tolist() == [0.25, 1.0]
    evidence, threshold, p_value, adjusted = min_p_combine(stats, alpha=0.05)
    assert evidence == pytest.approx(-np.log10(0.25))
    # Rows 0 and 3 both reach min-p 0.25 (row 3 via column 2): the combined p-value is 2/4.
    assert p_value == pytest.approx(0.5)
    assert adjusted.tolist() == [0.5, 1.0]
    assert threshold <= evidence + 1e-12


def test_permutation_labels_keep_the_split():
    labels = permutation_labels(3, 2, 5, np.random.default_rng(0))
    assert labels.shape == (6, 5)
    assert labels[0].tolist() == [False, False, False, True, True]
    assert (labels.sum(axis=1) == 2).all()


def test_knn_and_same_label_share():
    z = np.array([[0.0], [0.1], [10.0], [10.1]])
    graph = knn_weights(z, 1)
    assert graph.toarray().tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    labels = np.array([[False, False, True, True], [False, True, False, True]])
    share = nn_same_label_share(np.arange(4), graph, labels)
    assert share.tolist() == [1.0, 0.0]


def test_knn_ties_share_their_weight():
    # Point 0 has three duplicates at distance 0 and k = 2: each duplicate gets weight 2/3.
    z = np.array([[0.0], [0.0], [0.0], [0.0], [5.0]])
    graph = knn_weights(z, 2, anchors=np.array([0, 4]))
    assert graph.toarray()[0].tolist() == pytest.approx([0, 2 / 3, 2 / 3, 2 / 3, 0])
    assert graph.toarray()[1].tolist() == pytest.approx([2 / 4] * 4 + [0])  # four tied at distance 5
    # More duplicates than the neighbours fetched (2k + 1): the whole tied ball is used.
    many = knn_weights(np.zeros((30, 2)), 3, anchors=np.array([7]))
    assert many.toarray()[0].sum() == pytest.approx(3.0) and many.toarray()[0, 7] == 0.0
    assert np.count_nonzero(many.toarray()[0]) == 29


def test_pca_recovers_the_main_axis():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(0, 10, 500), rng.normal(0, 1, 500)])
    pca = pca_fit(x, 1)
    assert abs(pca.components_[0, 0]) == pytest.approx(1.0, abs=1e-2)
    assert pca_transform(x, pca).shape == (500, 1)


def test_embedding_test_is_calibrated_and_powerful_on_synthetic_data():
    rng = np.random.default_rng(1)
    alarms = [
        embedding_drift_test(rng.normal(size=(100, 16)), rng.normal(size=(100, 16)), n_perm=99, seed=i).alarm
        for i in range(60)
    ]
    assert sum(alarms) <= 8  # 5% nominal: 3 expected, P(>8) < 1%
    shifted = rng.normal(size=(100, 16))
    shifted[:15] += 4.0  # a new "topic" in 15% of the window
    result = embedding_drift_test(rng.normal(size=(100, 16)), shifted, n_perm=99)
    assert result.alarm and result.p_value == pytest.approx(0.01)
    assert set(result.components) == {"ks_max", "nn"}


def test_feature_test_reports_the_drifted_feature():
    rng = np.random.default_rng(2)
    ref = {"length": rng.normal(50, 5, 300), "refusal": rng.binomial(1, 0.1, 300).astype(float)}
    cur = {"length": rng.normal(50, 5, 300), "refusal": rng.binomial(1, 0.4, 300).astype(float)}
    result = feature_drift_test(ref, cur, n_perm=99)
    assert result.alarm
    assert result.components["refusal"]["adjusted_p_value"] <= 0.05
    assert result.components["length"]["adjusted_p_value"] > 0.05
    constant = feature_drift_test({"x": np.ones(10)}, {"x": np.ones(10)})
    assert not constant.alarm and constant.components == {}


# --- fault 2: NaN-safe, identical windows, conversations, run-level alpha; library cross-checks ------


def test_vectorised_ks_matches_scipy_ks_2samp():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(5)
    for trial in range(20):
        n_ref, n_cur = rng.integers(2, 60, size=2)
        values = np.round(rng.normal(size=(n_ref + n_cur, 3)), 1)  # rounding makes ties
        values[rng.random(values.shape) < 0.1] = np.nan
        labels = np.concatenate([np.zeros(n_ref, bool), np.ones(n_cur, bool)])[None, :]
        ours = ks_statistics(values, labels)[0]
        for j in range(values.shape[1]):
            ref, cur = values[~labels[0], j], values[labels[0], j]
            ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
            expected = ks_2samp(ref, cur).statistic if len(ref) and len(cur) else 0.0
            assert ours[j] == pytest.approx(expected, abs=1e-12), (trial, j)


@pytest.mark.parametrize("bad", ["nan_rows", "inf_rows", "zero_rows", "constant_columns", "all_equal"])
def test_embedding_test_is_nan_safe(bad):
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    if bad == "nan_rows":
        ref[[1, 5]] = np.nan
        cur[3, 2] = np.nan
    elif bad == "inf_rows":
        ref[2] = np.inf
        cur[7, 1] = -np.inf
    elif bad == "zero_rows":
        ref[:5] = 0.0
        cur[:5] = 0.0
    elif bad == "constant_columns":
        ref[:, :4] = 1.0
        cur[:, :4] = 1.0
    else:
        ref[:], cur[:] = 0.5, 0.5
    result = embedding_drift_test(ref, cur, n_perm=99)
    assert np.isfinite([result.statistic, result.threshold, result.p_value]).all(), result
    assert 0.0 < result.p_value <= 1.0
    dropped = {"nan_rows": (2, 1), "inf_rows": (1, 1)}.get(bad, (0, 0))
    assert (result.n_reference, result.n_current) == (40 - dropped[0], 40 - dropped[1])
    if bad == "all_equal":
        assert not result.alarm and result.p_value == 1.0


def test_embedding_test_needs_two_usable_rows_a_side():
    rng = np.random.default_rng(0)
    cur = rng.normal(size=(10, 4))
    ref = np.full((5, 4), np.nan)
    ref[0] = 1.0
    with pytest.raises(ValueError, match="at least 2 usable rows"):
        embedding_drift_test(ref, cur)


def test_feature_test_ignores_non_finite_values():
    rng = np.random.default_rng(4)
    ref = {"x": rng.normal(size=50), "y": np.full(50, np.inf)}
    cur = {"x": rng.normal(size=50), "y": np.full(50, -np.inf)}
    ref["x"][:5] = np.inf
    result = feature_drift_test(ref, cur, n_perm=99)
    assert set(result.components) == {"x"}  # y holds no finite value
    assert np.isfinite([result.statistic, result.threshold, result.p_value]).all()
    empty = feature_drift_test({"x": np.full(5, np.nan)}, {"x": np.full(5, np.nan)})
    assert empty.components == {} and np.isfinite(empty.threshold) and not empty.alarm


@pytest.mark.parametrize("n", [2, 3, 10, 50])
def test_identical_windows_never_alarm(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 16))
    feats = {"a": rng.normal(size=n), "b": rng.integers(0, 2, n).astype(float)}
    for seed in range(5):
        emb = embedding_drift_test(x, x.copy(), n_perm=199, seed=seed)
        assert not emb.alarm and emb.p_value >= 0.5, emb
        fea = feature_drift_test(feats, {k: v.copy() for k, v in feats.items()}, n_perm=199, seed=seed)
        assert not fea.alarm and fea.p_value == 1.0


def test_group_permutations_move_conversations_together():
    rng = np.random.default_rng(0)
    groups = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])
    observed = np.array([False] * 5 + [True] * 6)  # groups 0, 1 reference; 2, 3, 4 current
    labels = permutation_labels(5, 6, 200, rng, groups=groups)
    assert labels[0].tolist() == observed.tolist()
    for row in labels:
        for g in np.unique(groups):
            assert len(set(row[groups == g])) == 1  # a conversation is never split
    current_groups = {tuple(np.unique(groups[row])) for row in labels}
    assert len(current_groups) > 5 and all(len(g) == 3 for g in current_groups)  # 3 of 5 groups each time


def _conversations(
    rng: np.random.Generator, n_conv: int, per: int, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(n_conv, dim))
    x = np.repeat(centres, per, axis=0) + rng.normal(0, 0.05, size=(n_conv * per, dim))
    return x, np.repeat(np.arange(n_conv), per)


def test_embedding_test_is_calibrated_when_follow_ups_cluster():
    """Null windows of 25 conversations x 4 near-duplicate follow-ups: row shuffles alarm ~always."""
    rng = np.random.default_rng(9)
    alarms = []
    for seed in range(40):
        ref, g_ref = _conversations(rng, 25, 4, 8)
        cur, g_cur = _conversations(rng, 25, 4, 8)
        groups = np.concatenate([g_ref, g_cur + 1000])
        result = embedding_drift_test(ref, cur, n_perm=99, seed=seed, groups=groups)
        alarms.append(result.alarm)
    assert sum(alarms) <= 7, sum(alarms)  # 5% nominal: 2 expected, P(> 7) < 0.1%


def test_holm_correction_across_the_tests_of_a_run():
    from monitoring.drift._stats import DriftTest, correct_for_run

    def t(name, p):
        return DriftTest(name, 1.0, 1.0, p, p <= 0.05, 0.05, 30, 30, {"c": {"adjusted_p_value": p}})

    tests = correct_for_run([t("q", 0.04), t("a", 0.5), t("f", 0.6)], alpha=0.05)
    assert [x.alarm for x in tests] == [False, False, False]
    assert [x.run_p_value for x in tests] == pytest.approx([0.12, 1.0, 1.0])
    tests = correct_for_run([t("q", 0.01), t("a", 0.02), t("f", 0.6)], alpha=0.05)
    # Holm: 0.01 * 3 = 0.03 <= 0.05, then 0.02 * 2 = 0.04 <= 0.05, then 0.6 > 0.05
    assert [x.alarm for x in tests] == [True, True, False]
    assert [x.run_p_value for x in tests] == pytest.approx([0.03, 0.04, 0.6])
    assert tests[0].components["c"]["run_adjusted_p_value"] == pytest.approx(0.03)
    assert all(x.alpha == 0.05 for x in tests)


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from monitoring.drift._stats import holm

    rng = np.random.default_rng(8)
    for m in (1, 3, 7):  # few calls: statsmodels runs a full gc.collect() in each
        for _ in range(2):
            p = rng.uniform(0, 0.2, size=m).round(2)  # rounding makes ties
            assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    assert holm([]).size == 0
