"""A drift run, step by step: extract windows -> embeddings -> report -> explanation (-> store, metrics).

The Dagster assets (:mod:`monitoring.drift.pipeline`) and ``ragloop drift run`` call the same steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from chatlog import ChatLog, new_id, now
from monitoring.drift import _metrics, _store
from monitoring.drift._explain import Cluster, explain_drift
from monitoring.drift._stats import DriftTest, embedding_drift_test, feature_drift_test
from monitoring.drift._windows import (
    WindowData,
    drift_dir,
    fill_embeddings,
    load_reference,
    load_window,
    parse_window,
    reference_spec,
)
from ragloop.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DriftReport:
    """The calibrated decisions of one run and where its Evidently snapshot went."""

    run_id: str
    reference_label: str
    current_label: str
    tests: list[DriftTest]
    snapshot_id: str | None = None
    report_path: Path | None = None

    @property
    def alarm(self) -> bool:
        """True when any decision raised an alarm."""
        return any(t.alarm for t in self.tests)

    def test(self, name: str) -> DriftTest | None:
        """The decision named ``name`` (query_embedding, answer_embedding, features), if it ran."""
        return next((t for t in self.tests if t.name == name), None)


@dataclass
class DriftExplanation:
    """Ranked clusters of the current window's queries, the plot, and the metrics written."""

    clusters: list[Cluster]
    plot_path: Path | None
    metrics: list[_metrics.Metric] = field(default_factory=list)
    metrics_path: Path | None = None


def extract_windows(
    settings: Settings, window: str | None = None, reference: str | None = None, at: datetime | None = None
) -> tuple[WindowData, WindowData]:
    """Step 1: the reference and current windows from the chat log (embeddings may still be missing)."""
    chatlog = ChatLog(settings.chatlog_url)
    try:
        cur_span = parse_window(window or settings.drift_window, at or now())
        ref = reference_spec(reference or settings.drift_reference, cur_span)
        current, _ = load_window(
            chatlog, *cur_span, settings, label=f"current:{window or settings.drift_window}"
        )
        if isinstance(ref, str):
            reference_data = load_reference(ref, settings)
        else:
            reference_data, _ = load_window(
                chatlog, *ref, settings, label=f"reference:{ref[0]:%Y-%m-%dT%H:%M}"
            )
    finally:
        chatlog.close()
    return reference_data, current


def embed_windows(
    settings: Settings, reference: WindowData, current: WindowData
) -> tuple[WindowData, WindowData]:
    """Step 2: compute missing query and answer embeddings (written back to the chat log)."""
    chatlog = ChatLog(settings.chatlog_url)
    try:
        return fill_embeddings(reference, settings, chatlog), fill_embeddings(current, settings, chatlog)
    finally:
        chatlog.close()


def _tests(settings: Settings, reference: WindowData, current: WindowData) -> list[DriftTest]:
    common: dict[str, Any] = {
        "alpha": settings.drift_alpha,
        "n_perm": settings.drift_permutations,
        "max_rows": settings.drift_max_rows,
        "seed": settings.drift_seed,
    }
    tests = []
    pairs = (
        ("query_embedding", reference.query, current.query),
        ("answer_embedding", reference.answered, current.answered),
    )
    for name, ref, cur in pairs:
        if min(len(ref), len(cur)) >= settings.drift_min_rows:
            tests.append(embedding_drift_test(ref, cur, name=name, dims=settings.drift_dims, **common))
        else:
            log.warning("%s: too few rows to decide (%d reference, %d current)", name, len(ref), len(cur))
    if reference.features and min(len(reference), len(current)) >= settings.drift_min_rows:
        tests.append(feature_drift_test(reference.features, current.features, name="features", **common))
    return tests


def drift_report(
    settings: Settings, reference: WindowData, current: WindowData, evidently: bool = True
) -> DriftReport:
    """Step 3: the calibrated tests, plus the Evidently report saved as a snapshot and an HTML file."""
    run_id = new_id()
    tests = _tests(settings, reference, current)
    report = DriftReport(run_id, reference.label, current.label, tests)
    for t in tests:
        log.info(
            "%s: statistic %.3f threshold %.3f p %.4f -> %s",
            t.name,
            t.statistic,
            t.threshold,
            t.p_value,
            "ALARM" if t.alarm else "ok",
        )
    if evidently and tests:
        report.snapshot_id, report.report_path = _evidently_snapshot(settings, reference, current, run_id)
    return report


def _evidently_snapshot(
    settings: Settings, reference: WindowData, current: WindowData, run_id: str
) -> tuple[str, Path]:
    from monitoring.drift import _evidently

    rng = np.random.default_rng(settings.drift_seed)

    # The report is for browsing; a few thousand rows show the same picture and keep it fast.
    def side(w: WindowData) -> tuple[dict, dict]:
        idx = np.sort(rng.choice(len(w), size=min(len(w), 2000), replace=False))
        emb = {"query": w.query[idx]}
        return emb, {k: v[idx] for k, v in w.features.items()}

    ref, cur = side(reference), side(current)
    if not reference.features:  # a saved set: embeddings only
        cur = (cur[0], {})
    snapshot = _evidently.build_snapshot(ref, cur, name=f"drift {current.label} vs {reference.label}")
    html = drift_dir(settings) / "reports" / f"drift-{run_id}.html"
    workspace = settings.drift_workspace or settings.data_dir / "evidently"
    return _evidently.save_snapshot(snapshot, workspace, settings.drift_project, html), html


def explain(
    settings: Settings, reference: WindowData, current: WindowData, report: DriftReport
) -> DriftExplanation:
    """Step 4: cluster and rank the current queries, plot, store the run, write metrics and the span."""
    clusters = (
        explain_drift(
            reference.query,
            current.query,
            texts=current.questions,
            k=settings.drift_clusters,
            seed=settings.drift_seed,
        )
        if len(current) and len(reference)
        else []
    )
    plot = _plot(settings, reference, current, report.run_id)
    tests = [t.as_dict() for t in report.tests]
    cluster_rows = [
        {
            "rank": c.rank,
            "size": c.size,
            "current_share": c.current_share,
            "reference_share": c.reference_share,
            "excess": c.excess,
            "examples": c.examples,
            "turn_ids": [current.turn_ids[i] for i in c.members],
        }
        for c in clusters
    ]
    chatlog = ChatLog(settings.chatlog_url)
    try:
        _store.save_run(chatlog.engine, _run_row(report, reference, current, plot), cluster_rows)
    finally:
        chatlog.close()
    metrics = _metrics.drift_metrics(tests, [c.as_dict() for c in clusters], finished_at=time.time())
    path = _metrics.write_textfile(metrics, metrics_textfile(settings))
    _metrics.record_otel(metrics)
    _metrics.record_span(report.run_id, reference.label, tests)
    return DriftExplanation(clusters, plot, metrics, path)


def metrics_textfile(settings: Settings) -> Path:
    """Where the last run's metrics are written (Prometheus text format)."""
    return drift_dir(settings) / "metrics" / "drift.prom"


def read_metrics_textfile(settings: Settings) -> bytes:
    """The last run's metrics as Prometheus text, to append to the app's ``/metrics`` (b"" before a run).

    Prometheus scrapes the app; the drift job is a separate, short-lived process, so its gauges
    reach Prometheus through this file rather than through the job's own meter.
    """
    try:
        return metrics_textfile(settings).read_bytes()
    except OSError:
        return b""


def _run_row(
    report: DriftReport, reference: WindowData, current: WindowData, plot: Path | None
) -> dict[str, Any]:
    def p(name: str) -> float | None:
        test = report.test(name)
        return test.p_value if test else None

    return {
        "run_id": report.run_id,
        "created_at": now(),
        "window_start": current.start,
        "window_end": current.end,
        "reference": reference.label,
        "n_reference": len(reference),
        "n_current": len(current),
        "alarm": report.alarm,
        "query_p_value": p("query_embedding"),
        "answer_p_value": p("answer_embedding"),
        "features_p_value": p("features"),
        "tests": [t.as_dict() for t in report.tests],
        "snapshot_id": report.snapshot_id,
        "report_path": str(report.report_path or "") or None,
        "plot_path": str(plot) if plot else None,
    }


def _plot(settings: Settings, reference: WindowData, current: WindowData, run_id: str) -> Path | None:
    if min(len(reference), len(current)) < 3:
        return None
    from monitoring.drift._plot import plot_projection

    return plot_projection(
        reference.query,
        current.query,
        drift_dir(settings) / "plots" / f"drift-{run_id}.png",
        title=f"{current.label} vs {reference.label}",
        seed=settings.drift_seed,
    )


def run_drift(
    settings: Settings,
    window: str | None = None,
    reference: str | None = None,
    at: datetime | None = None,
    evidently: bool = True,
) -> tuple[DriftReport, DriftExplanation]:
    """All four steps, as ``ragloop drift run`` does them without Dagster."""
    ref, cur = extract_windows(settings, window, reference, at)
    ref, cur = embed_windows(settings, ref, cur)
    report = drift_report(settings, ref, cur, evidently=evidently)
    return report, explain(settings, ref, cur, report)
