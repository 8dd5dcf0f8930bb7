"""Drift results back into the system: metric tuples, a Prometheus textfile, OpenTelemetry gauges, a span.

:func:`drift_metrics` is pure (plain values in, ``(name, value, attributes)`` out); the writers are
thin shells around it. Telemetry never fails a drift run: errors are logged and swallowed.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monitoring import semconv

log = logging.getLogger(__name__)

Metric = tuple[str, float, dict[str, str]]


def drift_metrics(
    tests: Sequence[Mapping[str, Any]],
    clusters: Sequence[Mapping[str, Any]] = (),
    finished_at: float | None = None,
) -> list[Metric]:
    """Metric points for one drift run.

    Args:
        tests: ``DriftTest.as_dict()`` of each test (query, answer, features).
        clusters: ``Cluster.as_dict()`` of the query clusters, rank order.
        finished_at: unix time of the run (for the staleness gauge).

    Returns:
        ``(metric name, value, attributes)`` triples; names are :mod:`monitoring.semconv` constants.
    """
    out: list[Metric] = []
    for test in tests:
        target = {semconv.DRIFT_TARGET: str(test["name"])}
        out += [
            (semconv.M_DRIFT_P_VALUE, float(test["p_value"]), target),
            (semconv.M_DRIFT_STATISTIC, float(test["statistic"]), target),
            (semconv.M_DRIFT_THRESHOLD, float(test["threshold"]), target),
            (semconv.M_DRIFT_ALARM, float(bool(test["alarm"])), target),
        ]
        if test["name"] == "features":
            for feature, comp in test.get("components", {}).items():
                attrs = {semconv.DRIFT_TARGET: f"feature:{feature}"}
                out.append((semconv.M_DRIFT_P_VALUE, float(comp["adjusted_p_value"]), attrs))
                out.append((semconv.M_DRIFT_ALARM, float(comp["adjusted_p_value"] <= test["alpha"]), attrs))
    if tests:
        out.append(
            (semconv.M_DRIFT_WINDOW_ROWS, float(tests[0]["n_reference"]), {semconv.DRIFT_SIDE: "reference"})
        )
        out.append(
            (semconv.M_DRIFT_WINDOW_ROWS, float(tests[0]["n_current"]), {semconv.DRIFT_SIDE: "current"})
        )
        alarm = any(bool(t["alarm"]) for t in tests)
        out.append((semconv.M_DRIFT_ALARM, float(alarm), {semconv.DRIFT_TARGET: "any"}))
    if clusters:
        out.append((semconv.M_DRIFT_TOP_CLUSTER_EXCESS, float(clusters[0]["excess"]), {}))
    if finished_at is not None:
        out.append((semconv.M_DRIFT_LAST_RUN, float(finished_at), {}))
    return out


def prometheus_name(name: str) -> str:
    """The Prometheus spelling of an OpenTelemetry metric name (dots become underscores)."""
    return name.replace(".", "_")


def _labels(attrs: Mapping[str, str]) -> str:
    if not attrs:
        return ""
    body = ",".join(
        f'{prometheus_name(k)}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(attrs.items())
    )
    return "{" + body + "}"


def prometheus_text(metrics: Iterable[Metric]) -> str:
    """Render metric points in the Prometheus text exposition format (all gauges)."""
    by_name: dict[str, list[str]] = {}
    for name, value, attrs in metrics:
        shown = "NaN" if math.isnan(value) else repr(float(value))
        by_name.setdefault(prometheus_name(name), []).append(
            f"{prometheus_name(name)}{_labels(attrs)} {shown}"
        )
    lines = []
    for name, samples in by_name.items():
        lines += [f"# TYPE {name} gauge", *samples]
    return "\n".join(lines) + "\n"


def write_textfile(metrics: Iterable[Metric], path: Path) -> Path:
    """Write the points atomically to ``path`` (for node-exporter's textfile collector or a push)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(prometheus_text(metrics), encoding="utf-8")
    tmp.replace(path)
    return path


def record_otel(metrics: Iterable[Metric]) -> None:
    """Set OpenTelemetry gauges (a no-op unless a MeterProvider was configured)."""
    try:
        from opentelemetry import metrics as otel_metrics

        meter = otel_metrics.get_meter("ragloop.drift")
        gauges: dict[str, Any] = {}
        for name, value, attrs in metrics:
            if name not in gauges:
                gauges[name] = meter.create_gauge(name)
            gauges[name].set(value, attributes=attrs)
    except Exception:  # noqa: BLE001 - telemetry never fails a drift run
        log.exception("could not record drift metrics on OpenTelemetry")


def span_attributes(run_id: str, reference: str, tests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Span attributes describing a drift run (pure)."""
    attrs: dict[str, Any] = {semconv.DRIFT_RUN_ID: run_id, semconv.DRIFT_REFERENCE: reference}
    for test in tests:
        prefix = f"ragloop.drift.{test['name']}"
        for key in ("statistic", "threshold", "p_value", "alarm", "n_reference", "n_current"):
            attrs[f"{prefix}.{key}"] = test[key]
    return attrs


def record_span(
    run_id: str, reference: str, tests: Sequence[Mapping[str, Any]], tracer_provider: Any = None
) -> None:
    """Emit a ``drift.run`` span carrying the results (no-op without a TracerProvider)."""
    try:
        from opentelemetry import trace

        tracer = trace.get_tracer("ragloop.drift", tracer_provider=tracer_provider)
        with tracer.start_as_current_span(semconv.SPAN_DRIFT_RUN) as span:
            span.set_attributes(span_attributes(run_id, reference, tests))
    except Exception:  # noqa: BLE001 - telemetry never fails a drift run
        log.exception("could not record the drift span")
