"""Cluster ranking on small synthetic embeddings (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.drift._explain import explain_drift, kmeans, projection_2d


def _blob(center: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    x = center + rng.normal(0, 0.05, size=(n, len(center)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_kmeans_separates_orthogonal_blobs():
    rng = np.random.default_rng(0)
    x = np.vstack([_blob(np.eye(8)[0], 30, rng), _blob(np.eye(8)[1], 30, rng)])
    _, assign = kmeans(x, 2)
    assert len(set(assign[:30])) == 1 and len(set(assign[30:])) == 1 and assign[0] != assign[30]


def test_new_topic_ranks_first_with_its_examples():
    rng = np.random.default_rng(1)
    axes = np.eye(8)
    reference = np.vstack([_blob(axes[0], 50, rng), _blob(axes[1], 50, rng)])
    current = np.vstack([_blob(axes[0], 40, rng), _blob(axes[1], 40, rng), _blob(axes[5], 20, rng)])
    texts = ["old a"] * 40 + ["old b"] * 40 + ["new topic"] * 20
    clusters = explain_drift(reference, current, texts=texts, k=3, representatives=3)
    top = clusters[0]
    assert top.rank == 1 and top.size == 20
    assert top.current_share == 0.2 and top.reference_share == 0.0 and top.excess == 0.2
    assert top.examples == ["new topic"] * 3
    assert sorted(top.members) == list(range(80, 100))
    assert [c.rank for c in clusters] == [1, 2, 3]


def test_projection_shapes_and_empty_window():
    rng = np.random.default_rng(2)
    ref, cur = projection_2d(rng.normal(size=(10, 5)), rng.normal(size=(7, 5)))
    assert ref.shape == (10, 2) and cur.shape == (7, 2)
    assert explain_drift(rng.normal(size=(5, 4)), np.zeros((0, 4))) == []


def test_rows_without_a_usable_embedding_are_left_out():
    rng = np.random.default_rng(3)
    axes = np.eye(8)
    reference = np.vstack([_blob(axes[0], 30, rng), np.full((2, 8), np.nan)])
    current = np.vstack([_blob(axes[0], 20, rng), np.full((1, 8), np.inf), _blob(axes[4], 10, rng)])
    current[5, 3] = np.nan
    texts = [f"t{i}" for i in range(len(current))]
    clusters = explain_drift(reference, current, texts=texts, k=2)
    members = sorted(m for c in clusters for m in c.members)
    assert members == [i for i in range(31) if i not in (5, 20)]  # original row numbers, bad rows out
    assert clusters[0].size == 10 and clusters[0].reference_share == 0.0
    assert clusters[0].current_share == pytest.approx(10 / 29)
    assert explain_drift(reference, np.full((3, 8), np.nan)) == []
    ref_xy, cur_xy = projection_2d(reference, current)
    assert ref_xy.shape == (30, 2) and cur_xy.shape == (29, 2) and np.isfinite(cur_xy).all()
    flat_ref, flat_cur = projection_2d(np.ones((4, 3)), np.ones((3, 3)))  # constant: no variance at all
    assert np.isfinite(flat_ref).all() and flat_cur.shape == (3, 2)
