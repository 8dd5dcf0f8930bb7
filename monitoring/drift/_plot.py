"""The 2-D projection plot of reference vs current queries (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monitoring.drift._explain import projection_2d


def plot_projection(
    reference: np.ndarray,
    current: np.ndarray,
    path: Path,
    title: str = "",
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """Scatter the first two principal components of both windows into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)

    def cap(x: np.ndarray) -> np.ndarray:
        return x if len(x) <= max_points else x[rng.choice(len(x), max_points, replace=False)]

    ref_xy, cur_xy = projection_2d(cap(reference), cap(current))
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(ref_xy[:, 0], ref_xy[:, 1], s=6, alpha=0.4, label=f"reference ({len(reference)})")
    ax.scatter(cur_xy[:, 0], cur_xy[:, 1], s=6, alpha=0.4, label=f"current ({len(current)})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "queries: reference vs current")
    ax.legend(loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
