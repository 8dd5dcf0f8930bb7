"""End to end without Dagster: real chat log, real embeddings, real Evidently workspace."""

from __future__ import annotations

import json
import urllib.request

import numpy as np

from chatlog import ChatLog
from monitoring.drift import clusters_of, latest_runs, read_metrics_textfile, run_drift, start_evidently_ui
from ragloop.process import free_port

from .conftest import day


def test_same_source_windows_raise_no_alarm(drift_settings):
    report, explanation = run_drift(drift_settings, window=day(1), reference="previous", evidently=False)
    assert {t.name for t in report.tests} == {"query_embedding", "answer_embedding", "features"}
    for test in report.tests:
        assert not test.alarm, test
        assert test.n_reference == test.n_current == 150 or test.name == "answer_embedding"
        assert 0.0 < test.p_value <= 1.0
    assert explanation.clusters, "clusters are stored even without an alarm"


def test_shifted_window_alarms_and_names_the_injected_topic(drift_settings, logs_dir):
    report, explanation = run_drift(drift_settings, window=day(2), reference=day(0))
    query = report.test("query_embedding")
    assert query is not None and query.alarm and query.p_value <= 0.05
    assert query.statistic >= query.threshold
    top = explanation.clusters[0]
    faq_share = np.mean([tid.endswith("-faq") for tid in clusters_of_top(drift_settings, report.run_id)])
    assert faq_share >= 0.7, (faq_share, top.examples)
    assert top.excess == max(c.excess for c in explanation.clusters)

    # Stored: the run, its clusters, the metrics file, the Evidently snapshot and HTML, the plot.
    runs = latest_runs(ChatLog(drift_settings.chatlog_url).engine)
    assert runs[0]["run_id"] == report.run_id and runs[0]["alarm"] is True
    text = explanation.metrics_path.read_text()
    assert read_metrics_textfile(drift_settings).decode() == text
    assert 'ragloop_drift_alarm{ragloop_drift_target="query_embedding"} 1.0' in text
    assert "ragloop_drift_p_value" in text and "ragloop_drift_top_cluster_excess" in text
    assert report.report_path.exists() and report.report_path.stat().st_size > 10_000
    assert report.snapshot_id
    assert explanation.plot_path.exists()
    assert_snapshot_served(drift_settings, report.snapshot_id, logs_dir)


def test_missing_answer_embeddings_are_computed_and_written_back(drift_settings):
    log = ChatLog(drift_settings.chatlog_url)
    missing = [t for t in log.iter_turns() if t["answer_embedding"] is None]
    assert missing
    run_drift(drift_settings, window=day(1), reference="previous", evidently=False)
    refreshed = log.get_turn(missing[0]["turn_id"])
    assert refreshed["answer_embedding"] is not None and refreshed["answer_embedding"].shape == (384,)


def clusters_of_top(settings, run_id):
    clusters = clusters_of(ChatLog(settings.chatlog_url).engine, run_id)
    assert clusters[0]["rank"] == 1
    return clusters[0]["turn_ids"]


def _get_json(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def assert_snapshot_served(settings, snapshot_id, logs_dir):
    """`evidently ui` (started as `ragloop drift ui` and `ragloop run` start it) lists the snapshot over HTTP."""
    proc = start_evidently_ui(settings, port=free_port())
    try:
        base = f"{proc.url}/api/projects"
        projects = [p for p in _get_json(base) if p["name"] == settings.drift_project]
        assert len(projects) == 1
        snapshots = _get_json(f"{base}/{projects[0]['id']}/snapshots")
        assert snapshot_id in {s["id"] for s in snapshots}, snapshots
    finally:
        proc.stop()
    assert not proc.alive
