"""Evidently adapter: the drift report, its snapshot in a local workspace, the HTML file, ``evidently ui``.

Evidently is imported only here, lazily; without it the drift run fails with the install command.
The report is what people browse; the alarm decision is the calibrated test of :mod:`._stats`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_INSTALL = "Evidently drift reports need: pip install 'ragloop[drift]'"


def _evidently() -> Any:
    try:
        import evidently
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(_INSTALL) from exc
    return evidently


def _frame(embeddings: Mapping[str, np.ndarray], features: Mapping[str, np.ndarray]) -> tuple[Any, dict]:
    import pandas as pd

    columns: dict[str, Any] = {}
    groups: dict[str, list[str]] = {}
    for name, matrix in embeddings.items():
        cols = [f"{name}_{i}" for i in range(matrix.shape[1])]
        groups[name] = cols
        columns.update(dict(zip(cols, np.asarray(matrix, dtype=np.float64).T, strict=True)))
    columns.update({name: np.asarray(values, dtype=np.float64) for name, values in features.items()})
    return pd.DataFrame(columns), groups


def build_snapshot(
    reference: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
    current: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
    *,
    name: str,
) -> Any:
    """Run an Evidently report: ``EmbeddingsDrift`` per embedding set, ``ValueDrift`` per scalar feature.

    Args:
        reference: ``(embeddings, features)`` of the reference window (name -> matrix / values).
        current: the same for the current window (same names).
        name: the run's name in the workspace.

    Returns:
        The Evidently snapshot.
    """
    _evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift, ValueDrift
    from evidently.metrics.embeddings import DistanceDriftMethod

    ref_df, groups = _frame(*reference)
    cur_df, _ = _frame(*current)
    # Features constant or empty in both windows make Evidently's column tests fail: leave them out.
    numeric = [f for f in reference[1] if ref_df[f].notna().any() and cur_df[f].notna().any()]
    definition = DataDefinition(
        numerical_columns=[c for cols in groups.values() for c in cols] + numeric, embeddings=groups
    )
    # Euclidean distance between means: the fastest of Evidently's methods; the alarm is decided elsewhere.
    metrics: list[Any] = [
        EmbeddingsDrift(embeddings_name=g, drift_method=DistanceDriftMethod()) for g in groups
    ]
    metrics += [ValueDrift(column=f) for f in numeric]
    snapshot = Report(metrics).run(
        Dataset.from_pandas(cur_df, data_definition=definition),
        Dataset.from_pandas(ref_df, data_definition=definition),
        name=name,
    )
    return snapshot


def save_snapshot(snapshot: Any, workspace: Path, project: str, html_path: Path | None = None) -> str:
    """Store ``snapshot`` in the local workspace (project created on first use); return the snapshot id."""
    _evidently()
    from evidently.ui.workspace import Workspace

    workspace.mkdir(parents=True, exist_ok=True)
    ws = Workspace(str(workspace))
    found = ws.search_project(project)
    proj = (
        found[0] if found else ws.create_project(project, description="ragloop drift of queries and answers")
    )
    ref = ws.add_run(proj.id, snapshot)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
    snapshot_id = str(getattr(ref, "id", getattr(ref, "snapshot_id", ref)))
    log.info("evidently snapshot %s stored in %s (project %s)", snapshot_id, workspace, project)
    return snapshot_id


def ui_argv(workspace: Path, host: str, port: int) -> list[str]:
    """The ``evidently ui`` command serving ``workspace``."""
    exe = Path(sys.executable).parent / "evidently"
    return [str(exe), "ui", "--host", host, "--port", str(port), "--workspace", str(workspace)]


def default_embedding_drift(reference: np.ndarray, current: np.ndarray, full_report: bool = False) -> bool:
    """Evidently's default ``EmbeddingsDrift`` decision (classifier ROC AUC; bootstrap below 1k rows).

    Args:
        reference: reference embeddings.
        current: current embeddings.
        full_report: run a whole ``Report`` (what users run, for timing) instead of the drift method
            alone (the same decision without the report's t-SNE plot); the report's value is the
            ROC AUC, compared here with the no-bootstrap threshold 0.55.

    Returns:
        Whether Evidently's default configuration flags drift.
    """
    _evidently()
    import pandas as pd

    if not full_report:
        from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

        method = model(bootstrap=reference.shape[0] < 1000)  # what EmbeddingsDriftMetric does by default
        cols = [f"e{i}" for i in range(reference.shape[1])]
        _, detected, _ = method(pd.DataFrame(current, columns=cols), pd.DataFrame(reference, columns=cols))
        return bool(detected)
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift

    cols = [f"e{i}" for i in range(reference.shape[1])]
    definition = DataDefinition(numerical_columns=cols, embeddings={"query": cols})
    snapshot = Report([EmbeddingsDrift(embeddings_name="query")]).run(
        Dataset.from_pandas(pd.DataFrame(current, columns=cols), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame(reference, columns=cols), data_definition=definition),
    )
    return float(snapshot.dict()["metrics"][0]["value"]) > 0.55
