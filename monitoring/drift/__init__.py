"""Drift of queries and answers: calibrated alarms that explain themselves.

Public API::

    from monitoring.drift import run_drift
    report, explanation = run_drift(settings, window="day", reference="previous")
    report.alarm, report.test("query_embedding").p_value, explanation.clusters[0].examples

The statistics (:func:`embedding_drift_test`, :func:`feature_drift_test`, :func:`explain_drift`) are
pure functions on arrays; the steps (:func:`extract_windows` -> :func:`embed_windows` ->
:func:`drift_report` -> :func:`explain`) read the chat log, write Evidently snapshots, the
``drift_runs``/``drift_clusters`` tables, metrics and a span. Dagster definitions live in
:mod:`monitoring.drift.pipeline`.
"""

from monitoring.drift._explain import Cluster, explain_drift, kmeans
from monitoring.drift._features import INPUT_FEATURES, OUTPUT_FEATURES, turn_features
from monitoring.drift._metrics import drift_metrics, prometheus_text, write_textfile
from monitoring.drift._run import (
    DriftExplanation,
    DriftReport,
    drift_report,
    embed_windows,
    explain,
    extract_windows,
    metrics_textfile,
    read_metrics_textfile,
    run_drift,
)
from monitoring.drift._stats import DriftTest, embedding_drift_test, feature_drift_test
from monitoring.drift._store import clusters_of, drift_clusters, drift_runs, latest_runs
from monitoring.drift._ui import start_evidently_ui
from monitoring.drift._windows import WindowData, load_reference, parse_window, save_reference

__all__ = [
    "INPUT_FEATURES",
    "OUTPUT_FEATURES",
    "Cluster",
    "DriftExplanation",
    "DriftReport",
    "DriftTest",
    "WindowData",
    "clusters_of",
    "drift_clusters",
    "drift_metrics",
    "drift_report",
    "drift_runs",
    "embed_windows",
    "embedding_drift_test",
    "explain",
    "explain_drift",
    "extract_windows",
    "feature_drift_test",
    "kmeans",
    "latest_runs",
    "load_reference",
    "parse_window",
    "metrics_textfile",
    "prometheus_text",
    "read_metrics_textfile",
    "run_drift",
    "save_reference",
    "start_evidently_ui",
    "turn_features",
    "write_textfile",
]
