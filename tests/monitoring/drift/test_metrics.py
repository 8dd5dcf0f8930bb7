"""Drift metric points, the Prometheus text and the span (pure + the OpenTelemetry SDK in memory)."""

from __future__ import annotations

import math

from monitoring import semconv
from monitoring.drift._metrics import drift_metrics, prometheus_text, span_attributes, write_textfile

TESTS = [
    {
        "name": "query_embedding",
        "statistic": 2.3,
        "threshold": 1.3,
        "p_value": 0.005,
        "alarm": True,
        "alpha": 0.05,
        "n_reference": 150,
        "n_current": 120,
        "components": {},
    },
    {
        "name": "features",
        "statistic": 0.5,
        "threshold": 1.3,
        "p_value": 0.4,
        "alarm": False,
        "alpha": 0.05,
        "n_reference": 150,
        "n_current": 120,
        "components": {
            "refusal": {"statistic": 0.1, "threshold": 0.2, "p_value": 0.3, "adjusted_p_value": 0.6}
        },
    },
]


def test_metric_points():
    points = drift_metrics(TESTS, [{"excess": 0.12}], finished_at=1000.0)
    by = {(n, tuple(sorted(a.items()))): v for n, v, a in points}
    assert by[(semconv.M_DRIFT_ALARM, ((semconv.DRIFT_TARGET, "query_embedding"),))] == 1.0
    assert by[(semconv.M_DRIFT_ALARM, ((semconv.DRIFT_TARGET, "any"),))] == 1.0
    assert by[(semconv.M_DRIFT_P_VALUE, ((semconv.DRIFT_TARGET, "feature:refusal"),))] == 0.6
    assert by[(semconv.M_DRIFT_WINDOW_ROWS, ((semconv.DRIFT_SIDE, "current"),))] == 120.0
    assert by[(semconv.M_DRIFT_TOP_CLUSTER_EXCESS, ())] == 0.12
    assert by[(semconv.M_DRIFT_LAST_RUN, ())] == 1000.0


def test_prometheus_text_and_file(tmp_path):
    text = prometheus_text([("ragloop.drift.alarm", 1.0, {"ragloop.drift.target": 'a"b'})])
    assert '# TYPE ragloop_drift_alarm gauge\nragloop_drift_alarm{ragloop_drift_target="a\\"b"} 1.0\n' in text
    path = write_textfile(drift_metrics(TESTS), tmp_path / "m" / "drift.prom")
    assert "ragloop_drift_p_value" in path.read_text()


def test_label_values_survive_the_round_trip(tmp_path):
    """Quotes, backslashes and newlines in label values are escaped (prometheus-client's writer)."""
    from prometheus_client.parser import text_string_to_metric_families

    odd = 'feature:a"b\\c\nd'
    path = write_textfile([(semconv.M_DRIFT_P_VALUE, 0.5, {semconv.DRIFT_TARGET: odd})], tmp_path / "d.prom")
    (family,) = text_string_to_metric_families(path.read_text())
    (sample,) = family.samples
    assert sample.labels == {"ragloop_drift_target": odd} and sample.value == 0.5


def test_no_point_is_ever_nan_or_infinite():
    broken = {**TESTS[1], "statistic": float("nan"), "threshold": float("inf"), "p_value": float("nan")}
    points = drift_metrics([TESTS[0], broken], finished_at=1.0)
    assert all(math.isfinite(v) for _, v, _ in points)
    names = {(n, a.get(semconv.DRIFT_TARGET)) for n, _, a in points}
    assert (semconv.M_DRIFT_STATISTIC, "features") not in names  # left out, not NaN
    assert (semconv.M_DRIFT_ALARM, "features") in names
    text = prometheus_text([("x", float("nan"), {}), ("y", 1.0, {})])
    assert "NaN" not in text and "y 1.0" in text


def test_insufficient_data_is_explicit():
    points = drift_metrics(
        [], insufficient={"query_embedding": "insufficient data: 3 rows"}, window_rows=(3, 0), finished_at=2.0
    )
    by = {(n, tuple(sorted(a.items()))): v for n, v, a in points}
    target = ((semconv.DRIFT_TARGET, "query_embedding"),)
    assert by[(semconv.M_DRIFT_INSUFFICIENT_DATA, target)] == 1.0
    assert by[(semconv.M_DRIFT_ALARM, target)] == 0.0
    assert by[(semconv.M_DRIFT_ALARM, ((semconv.DRIFT_TARGET, "any"),))] == 0.0
    assert by[(semconv.M_DRIFT_WINDOW_ROWS, ((semconv.DRIFT_SIDE, "current"),))] == 0.0
    assert (semconv.M_DRIFT_P_VALUE, target) not in by


def test_span_carries_the_decisions():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from monitoring.drift._metrics import record_span

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    attrs = span_attributes("run1", "previous", TESTS)
    assert attrs["ragloop.drift.query_embedding.p_value"] == 0.005
    record_span("run1", "previous", TESTS, tracer_provider=provider)
    (span,) = exporter.get_finished_spans()
    assert span.name == semconv.SPAN_DRIFT_RUN
    assert span.attributes[semconv.DRIFT_RUN_ID] == "run1"
    assert span.attributes["ragloop.drift.query_embedding.alarm"] is True
