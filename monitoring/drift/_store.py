"""Drift runs and their clusters, stored next to the chat log (tables on ``chatlog.metadata``).

The tables are created by the chat log's migrations (``ChatLog(url)`` or ``ragloop db upgrade``).

The clusters are what labeling and corpus-gap work consume: each row names the turns it holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Integer, String, Table, Text, insert, select
from sqlalchemy.engine import Engine

from chatlog import metadata

drift_runs = Table(
    "drift_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("window_start", DateTime(timezone=True)),
    Column("window_end", DateTime(timezone=True)),
    Column("reference", Text),  # how the reference was chosen, e.g. "previous:2026-11-25T00..2026-11-26T00"
    Column("n_reference", Integer),
    Column("n_current", Integer),
    Column("alarm", Boolean, nullable=False),
    Column("query_p_value", Float),
    Column("answer_p_value", Float),
    Column("features_p_value", Float),
    Column("tests", JSON),  # [DriftTest.as_dict(), ...]
    Column("snapshot_id", String(64)),
    Column("report_path", Text),
    Column("plot_path", Text),
)

drift_clusters = Table(
    "drift_clusters",
    metadata,
    Column("cluster_id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("rank", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    Column("current_share", Float),
    Column("reference_share", Float),
    Column("excess", Float),
    Column("examples", JSON),  # representative standalone questions, closest to the centroid first
    Column("turn_ids", JSON),  # every member turn
)


def save_run(engine: Engine, run: Mapping[str, Any], clusters: Sequence[Mapping[str, Any]]) -> None:
    """Insert one drift run and its clusters in one transaction."""
    with engine.begin() as conn:
        conn.execute(insert(drift_runs).values(**run))
        if clusters:
            conn.execute(insert(drift_clusters), [{"run_id": run["run_id"], **c} for c in clusters])


def latest_runs(engine: Engine, limit: int = 10) -> list[dict[str, Any]]:
    """The most recent drift runs, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(drift_runs).order_by(drift_runs.c.created_at.desc()).limit(limit)
        ).mappings()
        return [dict(r) for r in rows]


def clusters_of(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The clusters of one run, rank order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(drift_clusters).where(drift_clusters.c.run_id == run_id).order_by(drift_clusters.c.rank)
        ).mappings()
        return [dict(r) for r in rows]


def last_run_time(engine: Engine) -> datetime | None:
    """When the newest drift run was made (None before the first)."""
    runs = latest_runs(engine, limit=1)
    return runs[0]["created_at"] if runs else None
