"""Drift metric points, the Prometheus text and the span (pure + the OpenTelemetry SDK in memory)."""

from __future__ import annotations

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
    assert text == '# TYPE ragloop_drift_alarm gauge\nragloop_drift_alarm{ragloop_drift_target="a\\"b"} 1.0\n'
    path = write_textfile(drift_metrics(TESTS), tmp_path / "m" / "drift.prom")
    assert "ragloop_drift_p_value" in path.read_text()


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
