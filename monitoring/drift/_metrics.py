"""Drift results back into the system: metric tuples, a Prometheus textfile, OpenTelemetry gauges, a span.

:func:`drift_metrics` is pure (plain values in, ``(name, value, attributes)`` out); the writers are
thin shells around it, and the Prometheus text comes from prometheus-client (its exposition format,
its label escaping, its atomic ``write_to_textfile``). No point is ever NaN or infinite: a decision
that could not be made is left out and flagged by :data:`monitoring.semconv.M_DRIFT_INSUFFICIENT_DATA`.
Telemetry never fails a drift run: errors are logged and swallowed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from monitoring import semconv

log = logging.getLogger(__name__)

Metric = tuple[str, float, dict[str, str]]

#: Help text of each drift gauge in the Prometheus exposition.
_HELP = {
    semconv.M_DRIFT_P_VALUE: "Drift p-value of the last run, corrected across its tests (small = drift).",
    semconv.M_DRIFT_STATISTIC: "Drift evidence (-log10 min-p) of the last run.",
    semconv.M_DRIFT_THRESHOLD: "Evidence above which the last run alarms.",
    semconv.M_DRIFT_ALARM: "1 when the last drift run raised an alarm, else 0.",
    semconv.M_DRIFT_INSUFFICIENT_DATA: "1 when the last run had too few turns to decide, else 0.",
    semconv.M_DRIFT_WINDOW_ROWS: "Turns in the compared windows.",
    semconv.M_DRIFT_TOP_CLUSTER_EXCESS: "Excess share of the most over-represented query cluster.",
    semconv.M_DRIFT_LAST_RUN: "Unix time of the last drift run.",
}

#: The decisions a run can make (a run that skips one reports it as insufficient data).
_TARGETS = ("query_embedding", "answer_embedding", "features")


def drift_metrics(
    tests: Sequence[Mapping[str, Any]],
    clusters: Sequence[Mapping[str, Any]] = (),
    finished_at: float | None = None,
    insufficient: Mapping[str, str] | None = None,
    window_rows: tuple[int, int] | None = None,
) -> list[Metric]:
    """Metric points for one drift run (never NaN or infinite: such values are left out).

    Args:
        tests: ``DriftTest.as_dict()`` of each decision that ran (query, answer, features).
        clusters: ``Cluster.as_dict()`` of the query clusters, rank order.
        finished_at: unix time of the run (for the staleness gauge).
        insufficient: decision name -> reason, for the decisions that had too few rows.
        window_rows: ``(reference, current)`` turns in the windows (default: the first test's rows).

    Returns:
        ``(metric name, value, attributes)`` triples; names are :mod:`monitoring.semconv` constants.
    """
    out: list[Metric] = []
    for test in tests:
        target = {semconv.DRIFT_TARGET: str(test["name"])}
        p_value = test.get("run_p_value", test["p_value"])
        out += [
            (semconv.M_DRIFT_P_VALUE, float(p_value), target),
            (semconv.M_DRIFT_STATISTIC, float(test["statistic"]), target),
            (semconv.M_DRIFT_THRESHOLD, float(test["threshold"]), target),
            (semconv.M_DRIFT_ALARM, float(bool(test["alarm"])), target),
            (semconv.M_DRIFT_INSUFFICIENT_DATA, 0.0, target),
        ]
        if test["name"] == "features":
            for feature, comp in test.get("components", {}).items():
                attrs = {semconv.DRIFT_TARGET: f"feature:{feature}"}
                adjusted = float(comp.get("run_adjusted_p_value", comp["adjusted_p_value"]))
                out.append((semconv.M_DRIFT_P_VALUE, adjusted, attrs))
                out.append((semconv.M_DRIFT_ALARM, float(adjusted <= test["alpha"]), attrs))
    for name in insufficient or {}:
        target = {semconv.DRIFT_TARGET: name}
        out += [(semconv.M_DRIFT_INSUFFICIENT_DATA, 1.0, target), (semconv.M_DRIFT_ALARM, 0.0, target)]
    if window_rows is None and tests:
        window_rows = (int(tests[0]["n_reference"]), int(tests[0]["n_current"]))
    if window_rows is not None:
        for side, rows in zip(("reference", "current"), window_rows, strict=True):
            out.append((semconv.M_DRIFT_WINDOW_ROWS, float(rows), {semconv.DRIFT_SIDE: side}))
    if tests or insufficient:
        alarm = any(bool(t["alarm"]) for t in tests)
        out.append((semconv.M_DRIFT_ALARM, float(alarm), {semconv.DRIFT_TARGET: "any"}))
    if clusters:
        out.append((semconv.M_DRIFT_TOP_CLUSTER_EXCESS, float(clusters[0]["excess"]), {}))
    if finished_at is not None:
        out.append((semconv.M_DRIFT_LAST_RUN, float(finished_at), {}))
    finite = [m for m in out if math.isfinite(m[1])]
    if len(finite) < len(out):
        log.warning("left out %d non-finite drift metric points", len(out) - len(finite))
    return finite


def prometheus_name(name: str) -> str:
    """The Prometheus spelling of an OpenTelemetry metric name (dots become underscores)."""
    return name.replace(".", "_")


class _Points:
    """A prometheus-client collector serving fixed metric points as gauges."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.by_name: dict[str, list[tuple[float, dict[str, str]]]] = {}
        for name, value, attrs in metrics:
            if math.isfinite(value):
                self.by_name.setdefault(name, []).append((float(value), dict(attrs)))

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        for name, points in self.by_name.items():
            keys = sorted({k for _, attrs in points for k in attrs})
            family = GaugeMetricFamily(
                prometheus_name(name), _HELP.get(name, name), labels=[prometheus_name(k) for k in keys]
            )
            for value, attrs in points:
                family.add_metric([str(attrs.get(k, "")) for k in keys], value)
            yield family


def _registry(metrics: Iterable[Metric]) -> Any:
    try:
        from prometheus_client import CollectorRegistry
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("drift metrics need prometheus-client: pip install 'ragloop[tracing]'") from exc
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Points(metrics))
    return registry


def prometheus_text(metrics: Iterable[Metric]) -> str:
    """Render metric points in the Prometheus text exposition format (all gauges), by prometheus-client."""
    from prometheus_client import generate_latest

    return generate_latest(_registry(metrics)).decode("utf-8")


def write_textfile(metrics: Iterable[Metric], path: Path) -> Path:
    """Write the points atomically to ``path`` (prometheus-client's ``write_to_textfile``)."""
    from prometheus_client import write_to_textfile

    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), _registry(metrics))
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
