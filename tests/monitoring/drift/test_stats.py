"""Known values of the pure drift statistics on tiny inputs, and their calibration on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.drift._stats import (
    column_p_values,
    embedding_drift_test,
    feature_drift_test,
    knn_indices,
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
    nbrs = knn_indices(z, 1)
    assert nbrs[:, 0].tolist() == [1, 0, 3, 2]
    labels = np.array([[False, False, True, True], [False, True, False, True]])
    share = nn_same_label_share(np.arange(4), nbrs, labels)
    assert share.tolist() == [1.0, 0.0]


def test_pca_recovers_the_main_axis():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(0, 10, 500), rng.normal(0, 1, 500)])
    mean, axes = pca_fit(x, 1)
    assert abs(axes[0, 0]) == pytest.approx(1.0, abs=1e-2)
    assert pca_transform(x, mean, axes).shape == (500, 1)


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
